"""GDA and LP++ against their upstream code, on the features this project produced.

Trains GDA and LP++ through train.py on a tiny random-weight CLIP (4-wide embedding) and the
synthetic ``TinyImages`` data (10 classes; CPU, fp32, seed 1, 16 shots unless --shots says
otherwise), reads the features those runs used from the feature store (the train views, val and
test, and the text classifier), then calls upstream's own functions on them in a separate process
whose imports resolve to the upstream checkout:

- GDA: ``run`` of mrflogs/ICLR24 ``main_few_shots.py`` (its loader yields our 10 train views);
- LP++: ``LinearProbe_P2.forward`` of ``methods/linear_probe_p2.py`` (300 epochs).

Upstream runs unchanged except for in-process patches: ``.cuda()`` is a no-op; ``gdown`` (imported,
never called) is a stub; GDA's ``cls_acc`` ends in ``.item()`` (NumPy 2 refuses its ``float()`` of
a one-element array); the one-hot matrix of ``methods/utils.py`` takes the features' dtype (it is
fp16, for upstream's fp16 features on CUDA: its values are 0 and 1 either way); nn.Linear's random
bias in LP++ is the one our run drew; the encoder is the identity on our features; recorders
keep upstream's GDA classifier (its einsums) and LP++'s final weights. Prints, per method, the
largest difference of the learned weights (relative to their largest entry), the chosen alpha and
the test accuracies, then the time of one cell with the store holding the features: ours
(a whole train.py run) against upstream's function on the same features.

Usage: python benchmarks/gda_lpp_parity.py --gda PATH/TO/ICLR24 \
    --lpp PATH/TO/FewShot-CLIP-Strong-Baseline [--shots K]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import train  # noqa: E402
from clip.synthetic import TINY_INPUT_SIZE, write_synthetic_checkpoint  # noqa: E402
from dassl.engine import build_trainer  # noqa: E402
from dassl.utils import set_random_seed  # noqa: E402
from datasets.synthetic import write_tiny_image_dataset  # noqa: E402

EPOCHS, NUM_CLASSES, PER_CLASS = 300, 10, (16, 8, 20)
# A 4-wide embedding keeps the 10 tiny classes confusable, so that the accuracies say something.
EMBED_DIM = 4
METHODS = {
    "GDA": ["TRAINER.GDA.PREC", "fp32", "OPTIM.MAX_EPOCH", "1"],
    "LPPlusPlus": [
        "TRAINER.LP_PLUS_PLUS.PREC", "fp32", "OPTIM.MAX_EPOCH", str(EPOCHS),
        "TEST.FINAL_MODEL", "best_val",
    ],
}  # fmt: skip
COMMON = [
    "DATASET.NAME", "TinyImages",
    "INPUT.SIZE", f"({TINY_INPUT_SIZE}, {TINY_INPUT_SIZE})",
    "INPUT.TRANSFORMS", "['random_resized_crop', 'random_flip', 'normalize']",
    "INPUT.RRCROP_SCALE", "(0.5, 1.0)", "DATALOADER.NUM_WORKERS", "0", "USE_CUDA", "False",
]  # fmt: skip

# Runs in the upstream checkout (cwd), reading our features from argv[2], writing its results to
# argv[3]; argv[1] names the method.
UPSTREAM = r"""
import contextlib, importlib.util, io, re, sys, time, types
import torch
from torch import nn

torch.Tensor.cuda = lambda self, *a, **k: self
nn.Module.cuda = lambda self, *a, **k: self
sys.modules["gdown"] = types.ModuleType("gdown")
method, inputs, outputs = sys.argv[1:4]
data = torch.load(inputs)


class Encoder:  # the identity on our features, as upstream's clip_model.encode_image
    dtype = torch.float32

    def encode_image(self, features):
        return features.clone()


def normalised(x):
    return x / x.norm(dim=-1, keepdim=True)


def run_gda():
    sys.path.insert(0, ".")
    import main_few_shots as gda

    views, labels = data["train_views"], data["train_labels"]

    class Views:  # pass i of upstream's augment loop yields view i
        def __init__(self):
            self.passes = 0

        def __iter__(self):
            view = views[self.passes]
            self.passes += 1
            return iter([(view, labels)])

        def __len__(self):
            return 1

    def cls_acc(output, target, topk=1):  # upstream's, with .item(): NumPy 2 refuses float([x])
        pred = output.topk(topk, 1, True, True)[1].t()
        correct = pred.eq(target.view(1, -1).expand_as(pred))
        return 100 * correct[:topk].reshape(-1).float().sum().item() / target.shape[0]

    gda.cls_acc = cls_acc
    gda.val_features, gda.val_labels = normalised(data["val"]), data["val_labels"]
    gda.test_features, gda.test_labels = normalised(data["test"]), data["test_labels"]
    einsums, einsum = [], torch.einsum
    torch.einsum = lambda *a: einsums.append(einsum(*a)) or einsums[-1]
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        accuracy = gda.run({"augment_epoch": len(views)}, Views(), data["text"].t(), Encoder())
    seconds = time.perf_counter() - start
    torch.einsum = einsum
    alpha = float(re.search(r"best_val_alpha: (\S+)", out.getvalue()).group(1))
    weight, quadratic = einsums  # W [D, K]; mu P mu [K]
    bias = torch.full_like(quadratic, 1.0 / len(quadratic)).log() - quadratic / 2
    return {"weight": weight.t(), "bias": bias, "alpha": alpha, "accuracy": accuracy,
            "seconds": seconds}


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run_lpp():
    package = types.ModuleType("methods")
    package.__path__ = ["methods"]
    sys.modules["methods"] = package
    utils = load("methods.utils", "methods/utils.py")
    load("methods.method", "methods/method.py")
    lpp = load("methods.linear_probe_p2", "methods/linear_probe_p2.py")
    one_hot = utils.get_one_hot
    utils.get_one_hot = lambda y, num_classes: one_hot(y, num_classes).float()
    built = {}

    class Linear(nn.Linear):  # upstream's classifier, with the random bias our run drew
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.bias.data.copy_(data["initial_bias"])
            built["classifier"] = self

    def variable(tensor, requires_grad):
        built["alpha"] = tensor.requires_grad_(requires_grad)
        return built["alpha"]

    lpp.nn = types.SimpleNamespace(Linear=Linear)
    lpp.Variable = variable
    settings = {"train_epoch": data["epochs"], "shots": data["shots"], "output_dir": "."}
    method = lpp.LinearProbe_P2({**settings, "dataset": "tiny"})
    (view,) = data["train_views"]
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        _, accuracy = method(
            train_loader=[(view, data["train_labels"])],
            val_loader=[(data["val"], data["val_labels"])],
            test_features=normalised(data["test"]),
            test_labels=data["test_labels"],
            text_weights=data["text"].t(),
            model=Encoder(),
            classnames=None,
        )
    seconds = time.perf_counter() - start
    classifier = built["classifier"]
    return {"weight": classifier.weight.detach(), "bias": classifier.bias.detach(),
            "alpha": built["alpha"].detach().flatten(), "accuracy": float(accuracy),
            "seconds": seconds}


torch.save(run_gda() if method == "GDA" else run_lpp(), outputs)
"""


def train_argv(method: str, work: Path, backbone: Path, output_dir: Path, shots: int) -> list[str]:
    return [
        "--root", str(work / "data"), "--seed", "1", "--trainer", method,
        "--output-dir", str(output_dir), "MODEL.BACKBONE.NAME", str(backbone),
        "DATASET.NUM_SHOTS", str(shots),
        "TRAINER.FEATURE_STORE.DIR", str(work / "store"), *COMMON, *METHODS[method],
    ]  # fmt: skip


def run_ours(argv: list[str]) -> float:
    """One train.py run in a subprocess; its wall time in seconds."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "train.py", *argv], cwd=REPO, capture_output=True, text=True
    )
    if proc.returncode != 0:
        sys.exit(f"train.py failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def features_of(argv: list[str], shots: int) -> tuple[dict, object]:
    """The features the run used, from the store it filled, and its trainer (built as train.py
    builds it, so the head holds the same random initialisation)."""
    args = train.build_parser().parse_args(argv)
    cfg = train.setup_cfg(args)
    set_random_seed(cfg.SEED)
    trainer = build_trainer(cfg)
    dataset = trainer.dm.dataset
    views = trainer.train_view_features(trainer.protocol)
    val, val_labels = trainer.encode_data_source(dataset.val, "val")
    test, test_labels = trainer.encode_data_source(dataset.test, "test")
    data = {
        "train_views": views.float(), "train_labels": trainer.train_set.labels,
        "val": val.float(), "val_labels": val_labels, "test": test.float(),
        "test_labels": test_labels, "text": trainer.head.text_features.float(),
        "shots": shots, "epochs": EPOCHS,
    }  # fmt: skip
    return data, trainer


def relative_difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max())


def compare(method: str, upstream_dir: Path, work: Path, backbone: Path, shots: int) -> None:
    run_dir = work / "runs" / method
    run_ours(train_argv(method, work, backbone, run_dir, shots))
    scratch = train_argv(method, work, backbone, work / "scratch" / method, shots)
    with contextlib.redirect_stdout(io.StringIO()):
        data, trainer = features_of(scratch, shots)
    if method == "LPPlusPlus":
        data["initial_bias"] = trainer.head.prototypes.bias.detach().clone()
    inputs, outputs = work / f"{method}-inputs.pt", work / f"{method}-upstream.pt"
    torch.save(data, inputs)
    proc = subprocess.run(
        [sys.executable, "-c", UPSTREAM, method, str(inputs), str(outputs)],
        cwd=upstream_dir, capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        sys.exit(f"upstream {method} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    theirs = torch.load(outputs)
    record = json.loads((run_dir / "result.json").read_text())
    if method == "GDA":
        state = torch.load(run_dir / "gda" / "model.pth.tar-1")["state_dict"]
        ours = {"weight": state["weight"], "bias": state["bias"]}
        alphas = (
            f"alpha ours {record['hyperparameters']['winner']['alpha']}, upstream {theirs['alpha']}"
        )
    else:
        state = torch.load(run_dir / "lp_plus_plus" / f"model.pth.tar-{EPOCHS}")["state_dict"]
        ours = {"weight": state["prototypes.weight"], "bias": state["prototypes.bias"]}
        ours["alpha"] = state["alpha"]
        alphas = f"after {EPOCHS} epochs"
    diffs = ", ".join(f"{k} {relative_difference(v, theirs[k]):.2e}" for k, v in ours.items())
    print(f"{method}: max rel. diff of learned weights: {diffs}; {alphas}")
    print(
        f"{method}: test accuracy ours {record['accuracy']:.2f}%, upstream "
        f"{theirs['accuracy']:.2f}% ({len(data['test_labels'])} test images)"
    )
    timed = work / "timed" / method
    again = run_ours(train_argv(method, work, backbone, timed, shots))
    elapsed = re.findall(r"Elapsed: (\S+)", (timed / "log.txt").read_text())[-1]
    print(
        f"{method}: one {shots}-shot cell, features in the store: ours {again:.2f} s (whole "
        f"train.py run; {elapsed} from training start to the test's end), upstream "
        f"{theirs['seconds']:.3f} s (its function on the features)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gda", type=Path, required=True, help="checkout of mrflogs/ICLR24")
    parser.add_argument(
        "--lpp",
        type=Path,
        required=True,
        help="checkout of FereshteShakeri/FewShot-CLIP-Strong-Baseline",
    )
    parser.add_argument("--shots", type=int, default=16, help="train images per class (1-16)")
    parser.add_argument("--keep", type=Path, help="work in DIR and keep it (default: a temp dir)")
    args = parser.parse_args()
    for path, name in ((args.gda, "main_few_shots.py"), (args.lpp, "methods/linear_probe_p2.py")):
        if not (path / name).is_file():
            sys.exit(f"{path} holds no {name}: pass the upstream checkout's folder")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        write_tiny_image_dataset(work / "data", num_classes=NUM_CLASSES, per_class=PER_CLASS)
        backbone = write_synthetic_checkpoint(work / "tiny-clip.pt", embed_dim=EMBED_DIM)
        for method, upstream in (("GDA", args.gda), ("LPPlusPlus", args.lpp)):
            compare(method, upstream.resolve(), work, backbone, args.shots)


if __name__ == "__main__":
    main()
