"""Tip-Adapter(-F) here against upstream gaopengcuhk/Tip-Adapter's own functions, on one set of
features, then the wall time of one 16-shot cell once the feature store holds its views.

    python benchmarks/tip_adapter_parity.py PATH/TO/Tip-Adapter [--output DIR] [--epochs N]

Our TipAdapter and TipAdapterF run through train.py's steps on the demo's tiny random CLIP and
synthetic dataset (Caltech101's layout, 16 shots, a few-shot val split), under the shipped RN50
configs (views:10, upstream's search grid) with a smaller batch, so that an epoch has several
batches and an incomplete last one. Upstream's functions are then called on the features ours
produced (in-process patches only: `.cuda()` is a no-op, upstream's dataset package is replaced
by a stub its functions never call, `cls_acc`'s float() of a 1-element array made to work under
NumPy 2, and the fp16 one-hot values cast to fp32, since CPU matmuls do not mix dtypes):

- `build_cache_model` on our 10 views (the "images" are the features, encode_image the identity)
  -> cache keys and values;
- `clip_classifier` on our tiny CLIP and the dataset's template -> the zero-shot classifier;
- `search_hp` on our val features -> beta and alpha (training-free, and with -F's keys);
- `run_tip_adapter_F` fed the batches our run trained on, in its order -> its keys after every
  epoch (read off its adapter), compared with ours after the same batches;
- upstream's logits formula (as `run_tip_adapter` writes it) with the searched values on our
  test features -> accuracy, compared with our run's result.json.

Then each method runs again as a fresh cell into a new folder, the store already holding the
views and the eval splits: its wall time is the cost of one cell of the grid (tiny CLIP, CPU).
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import train  # noqa: E402
from dassl.engine import build_trainer  # noqa: E402
from dassl.utils import set_random_seed  # noqa: E402
from dassl.utils.logger import close_logger  # noqa: E402
from tools.demo import write_demo_checkpoint, write_demo_dataset  # noqa: E402
from trainers.feature_store import ENV_VAR as STORE_ENV_VAR  # noqa: E402
from trainers.templates import custom_template  # noqa: E402

SHOTS, BATCH = 16, 32
TOLERANCE = 1e-5


@contextlib.contextmanager
def upstream_modules(checkout: Path) -> Iterator[types.ModuleType]:
    """Upstream's main.py (with its utils.py), imported from ``checkout``: its `datasets`
    package is a stub (main.py imports it; the functions called here never use it), `clip` is
    ours (same tokenizer), `.cuda()` is a no-op while the block runs, and `float` in utils.py
    takes NumPy 2's 1-element arrays."""
    saved = {name: sys.modules.get(name) for name in ("datasets", "datasets.utils", "utils")}
    stub = types.ModuleType("datasets")
    stub.build_dataset = None
    stub_utils = types.ModuleType("datasets.utils")
    stub_utils.build_data_loader = None
    sys.modules.update({"datasets": stub, "datasets.utils": stub_utils})
    tensor_cuda, module_cuda = torch.Tensor.cuda, nn.Module.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    nn.Module.cuda = lambda self, *args, **kwargs: self
    try:
        modules = {}
        for name in ("utils", "main"):
            spec = importlib.util.spec_from_file_location(name, checkout / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            modules[name] = module
            if name == "utils":
                # cls_acc calls float() on a 1-element array, which NumPy 2 refuses.
                module.float = lambda value: builtins.float(value.reshape(()))
        yield modules["main"]
    finally:
        torch.Tensor.cuda, nn.Module.cuda = tensor_cuda, module_cuda
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        sys.modules.pop("main", None)


def cell_argv(trainer_name: str, root: Path, weights: Path, out: Path, epochs: int) -> list[str]:
    """train.py's arguments for one cell: the shipped RN50 config on the demo data."""
    config = "TipAdapterF" if trainer_name == "TipAdapterF" else "TipAdapter"
    argv = [
        "--root", str(root), "--seed", "1", "--trainer", trainer_name,
        "--dataset-config-file", str(REPO / "configs/datasets/caltech101.yaml"),
        "--config-file", str(REPO / f"configs/trainers/{config}/rn50.yaml"),
        "--output-dir", str(out),
        "MODEL.BACKBONE.NAME", str(weights), "USE_CUDA", "False",
        "DATASET.NUM_SHOTS", str(SHOTS), "DATALOADER.NUM_WORKERS", "0",
        "DATALOADER.TRAIN_X.BATCH_SIZE", str(BATCH), "TRAINER.TIP_ADAPTER.PREC", "fp32",
    ]  # fmt: skip
    if trainer_name == "TipAdapterF":
        argv += ["OPTIM.MAX_EPOCH", str(epochs)]
    return argv


def run_ours(trainer_name: str, root: Path, weights: Path, out: Path, epochs: int):
    """Train one of our methods as train.py does; returns the trainer, the feature batches it
    trained on (per epoch) and its result record."""
    argv = cell_argv(trainer_name, root, weights, out, epochs)
    args = train.build_parser().parse_args(argv)
    cfg = train.setup_cfg(args, [])
    set_random_seed(cfg.SEED)
    trainer = build_trainer(cfg)
    batches: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
    parse = trainer.parse_batch_train

    def recorded(batch):
        features, labels = parse(batch)
        if trainer.batch_idx == 0:
            batches.append([])
        batches[-1].append((features.detach().clone(), labels.clone()))
        return features, labels

    trainer.parse_batch_train = recorded
    trainer.train()
    close_logger()
    return trainer, batches, json.loads((out / "result.json").read_text())


class FeatureLoader:
    """A loader whose 'images' are features: one list of (features, labels) batches per pass,
    the next list on each pass (upstream iterates its loaders once per epoch)."""

    def __init__(self, passes: list[list[tuple[torch.Tensor, torch.Tensor]]]) -> None:
        self.passes, self.count = passes, 0

    def __len__(self) -> int:
        return len(self.passes[0])

    def __iter__(self):
        batches = self.passes[self.count]
        self.count += 1
        return iter(batches)


class Identity(nn.Module):
    """Upstream's clip_model for features already encoded."""

    dtype = torch.float32

    def encode_image(self, features: torch.Tensor) -> torch.Tensor:
        return features.clone()


def largest_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest difference relative to the largest value (logits are ~100 in size)."""
    return largest_difference(a, b) / b.float().abs().max().item()


def compare(checkout: Path, work: Path, epochs: int) -> list[tuple[str, str, bool]]:
    root, weights = work / "data", work / "clip.pt"
    write_demo_dataset(root, per_class=(SHOTS, 4, 12))
    write_demo_checkpoint(weights)
    tip, _, tip_record = run_ours("TipAdapter", root, weights, work / "tip", epochs)
    tip_f, batches, f_record = run_ours("TipAdapterF", root, weights, work / "tip_f", epochs)

    views, labels = tip.train_set.features.float(), tip.train_set.labels  # [10, N, D], [N]
    val_features, val_labels = tip.val_features()
    test_features, test_labels = tip.encode_data_source(tip.dm.dataset.test)
    node = tip.method_cfg()
    cfg = {
        "load_cache": False, "load_pre_feat": False, "search_hp": True,
        "search_scale": list(node.SEARCH_SCALE), "search_step": list(node.SEARCH_STEP),
        "init_beta": node.INIT_BETA, "init_alpha": node.INIT_ALPHA, "augment_epoch": 10,
        "train_epoch": epochs, "lr": tip_f.cfg.OPTIM.LR, "shots": SHOTS,
        "cache_dir": str(work / "upstream_cache"),
    }  # fmt: skip
    Path(cfg["cache_dir"]).mkdir()
    rows = []

    def check(what: str, difference: float, ok: bool | None = None) -> None:
        ok = difference <= TOLERANCE if ok is None else ok
        rows.append((what, f"{difference:.2e}", ok))

    with upstream_modules(checkout) as upstream:
        model = Identity()
        cache_passes = [[(views[v], labels)] for v in range(views.shape[0])]
        keys, values = upstream.build_cache_model(cfg, model, FeatureLoader(cache_passes))
        values = values.float()  # upstream's fp16 one-hot; CPU matmuls need one dtype
        check("cache keys [D, M]", largest_difference(keys.t(), tip.head.cache_keys.weight))
        check("cache values [M, K]", largest_difference(values, tip.head.cache_values))

        classnames = tip.dm.dataset.classnames
        template = [custom_template(tip.cfg.DATASET.NAME)]
        clip_weights = upstream.clip_classifier(classnames, template, tip.clip_model).float()
        check("zero-shot classifier", largest_difference(clip_weights.t(), tip.head.text_features))

        def features_of(split, features, labels):
            loader = FeatureLoader([[(features, labels)]])
            return upstream.pre_load_features(cfg, split, model, loader)  # normalised

        val = features_of("val", val_features, val_labels)
        test = features_of("test", test_features, test_labels)

        beta, alpha = upstream.search_hp(cfg, keys, values, *val, clip_weights)
        ours = tip_record["hyperparameters"]["winner"]
        check(
            f"Tip-Adapter searched beta, alpha: upstream ({beta:.4f}, {alpha:.4f}), ours "
            f"({ours['beta']:.4f}, {ours['alpha']:.4f})",
            max(abs(beta - ours["beta"]), abs(alpha - ours["alpha"])),
        )
        with torch.no_grad():
            logits = tip.model(test_features)
            affinity = test[0] @ keys
            upstream_logits = (
                100.0 * test[0] @ clip_weights
                + alpha * ((-1) * (beta - beta * affinity)).exp() @ values
            )
        check("Tip-Adapter test logits (relative)", relative_difference(logits, upstream_logits))
        accuracy = upstream.cls_acc(upstream_logits, test[1])
        check(
            f"Tip-Adapter test accuracy: upstream {accuracy:.2f}%, ours "
            f"{tip_record['accuracy']:.2f}%",
            abs(accuracy - tip_record["accuracy"]),
            ok=abs(accuracy - tip_record["accuracy"]) < 1e-9,
        )

        # -F: upstream's loop on the batches ours trained on; its keys after every epoch.
        after_epoch: list[torch.Tensor] = []
        linear = nn.Linear

        class WatchedLinear(linear):
            """Upstream's adapter, its weights noted when an epoch's evaluation starts."""

            def forward(self, x):
                if not self.training and (not after_epoch or self.was_training):
                    after_epoch.append(self.weight.detach().clone())
                self.was_training = self.training
                return super().forward(x)

        upstream.nn.Linear = WatchedLinear
        try:
            upstream.run_tip_adapter_F(
                cfg, keys.clone(), values, *val, *test, clip_weights, model, FeatureLoader(batches)
            )
        finally:
            upstream.nn.Linear = linear
        learned = tip_f.head.cache_keys.weight.detach()
        check(
            f"Tip-Adapter-F keys after {epochs} epochs ({len(batches[0])} batches each)",
            largest_difference(after_epoch[epochs - 1], learned),
        )
        adapter = nn.Linear(*keys.shape, bias=False)
        adapter.weight = nn.Parameter(learned.clone())
        beta, alpha = upstream.search_hp(cfg, keys, values, *val, clip_weights, adapter=adapter)
        ours = f_record["hyperparameters"]["winner"]
        check(
            f"Tip-Adapter-F searched beta, alpha: upstream ({beta:.4f}, {alpha:.4f}), ours "
            f"({ours['beta']:.4f}, {ours['alpha']:.4f})",
            max(abs(beta - ours["beta"]), abs(alpha - ours["alpha"])),
        )
        with torch.no_grad():
            affinity = adapter(test[0])
            upstream_logits = (
                100.0 * test[0] @ clip_weights
                + alpha * ((-1) * (beta - beta * affinity)).exp() @ values
            )
        accuracy = upstream.cls_acc(upstream_logits, test[1])
        check(
            f"Tip-Adapter-F test accuracy (last epoch, searched): upstream {accuracy:.2f}%, "
            f"ours {f_record['accuracy']:.2f}%",
            abs(accuracy - f_record["accuracy"]),
            ok=abs(accuracy - f_record["accuracy"]) < 1e-9,
        )
    return rows


def cell_times(work: Path, epochs: int) -> list[tuple[str, float, float]]:
    """Seconds of one fresh 16-shot cell per method, the store already holding its views and
    eval splits: a whole train.py command (start-up and imports included), and the trainer's
    build and run in this process (what the method itself costs)."""
    times = []
    for name in ("TipAdapter", "TipAdapterF"):
        data, weights = work / "data", work / "clip.pt"
        argv = cell_argv(name, data, weights, work / f"cell_{name}", epochs)
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, str(REPO / "train.py"), *argv], capture_output=True, text=True
        )
        command = time.perf_counter() - start
        print(done.stdout)
        if done.returncode != 0:
            raise RuntimeError(f"{name}'s cell failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        start = time.perf_counter()
        run_ours(name, data, weights, work / f"cell_{name}_in_process", epochs)
        times.append((name, command, time.perf_counter() - start))
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("upstream", type=Path, help="a gaopengcuhk/Tip-Adapter checkout")
    parser.add_argument("--output", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--epochs", type=int, default=20, help="Tip-Adapter-F's epochs")
    args = parser.parse_args(argv)
    if not (args.upstream / "main.py").is_file() or not (args.upstream / "utils.py").is_file():
        parser.error(f"{args.upstream} holds no main.py and utils.py: not a Tip-Adapter checkout")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.output or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        os.environ[STORE_ENV_VAR] = str(work / "feature_store")
        log = work / "parity_log.txt"
        with open(log, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            rows = compare(args.upstream.resolve(), work, args.epochs)
            times = cell_times(work, args.epochs)
        print(f"Logs of both sides' runs: {log}" if args.output else "")
    print(f"\nTip-Adapter(-F) vs upstream's functions (tolerance {TOLERANCE:g}):")
    for what, difference, ok in rows:
        print(f"  {'ok  ' if ok else 'FAIL'} {what}: largest difference {difference}")
    print(f"\nOne {SHOTS}-shot cell (train.py), the store holding its views (tiny CLIP, CPU):")
    for name, command, in_process in times:
        print(f"  {name}: {command:.2f} s (train.py command), {in_process:.2f} s (in process)")
    return 0 if all(ok for _, _, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
