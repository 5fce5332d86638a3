"""Our CLAP against upstream's plugin (jusiro/CLAP, unmodified) on the same tiny CLIP, data,
seed and augmented views: the learned prototypes (max |diff|), the multipliers, both test
accuracies, and the wall time of one cell.

Both runs use a random-weight tiny CLIP (fp32, CPU) and synthetic images in Caltech101's layout
(so upstream's own Caltech101 reader runs), each on its own copy of the data.

- **Ours**: ``train.py --trainer CLAP`` with configs/trainers/CLAP/SGD_lr1e-1_B256_ep300.yaml,
  in this process. It runs twice: the first run fills the feature store with the views; the
  second is "one cell once the store holds the views" (the time printed).
- **Upstream**: the plugin's ``train.py`` config assembly (``setup_cfg``) and ``main``'s steps,
  in a subprocess whose ``dassl`` is ours, or upstream Dassl.pytorch's with ``--dassl``. Patches,
  all in that process: ``.cuda()`` is a no-op; the plugin's CLIP download returns the tiny
  checkpoint; with upstream Dassl, its scheduler's ``verbose`` argument is dropped (torch 2.2+
  has none) and ``gdown``/``wilds``/``pandas`` (imported by Dassl modules the plugin never
  uses) are stubs when absent. And one data patch: the plugin's train loader is replaced by one
  that serves, on the plugin's r-th pass over the train set (its 20 feature-extraction
  passes), view r of each image under our seeding rule (trainers/views.py), in the train set's
  order (a SequentialSampler).

Why the data patch, precisely. Upstream draws its augmentations from torch's global generator,
interleaved with its RandomSampler's permutation, on every run; our views are drawn once per
image from seeds of their own and shared through the store, so no run of ours can draw upstream's
crops. Given the same views, the two pools differ only in row order (upstream: its sampler's
order on each pass; ours: view-major in train-set order), and each epoch draws a uniform
permutation of the whole pool (``np.random.rand(M).argsort()``, the same call and the same
numpy stream in both), so the order changes which rows meet in a batch, not their
distribution. With the order made the same, the two compute the same thing, and the script
shows it: the learned prototypes agree to float rounding (features are encoded one image per
forward pass here and in batches there, which rounds differently in the last bits).

Usage: python benchmarks/clap_parity.py --clap UPSTREAM_CLAP [--dassl UPSTREAM_DASSL]
       [--classes 10] [--shots 16] [--epochs 300] [--constraints l2 none l2-adaptative]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
VIEWS = 20  # upstream's epochs_aumentation
IMAGE_SIZE = 40  # synthetic images, cropped to the tiny CLIP's 32 px
# What is compared: shown name -> key in both results.
DIFFS = {
    "prototypes": "prototypes",
    "zero-shot base": "base_text_features",
    "multipliers": "alpha_constraint",
}
# Modules upstream Dassl imports for engines and datasets the plugin never uses.
OPTIONAL_MODULES = ("gdown", "wilds", "pandas")


# ---- the plugin's side (a subprocess: its clip/, datasets/ and trainers/ shadow ours) ------


def stub_absent_modules(names: tuple[str, ...]) -> None:
    import importlib.machinery
    import importlib.util
    import types

    class Stub(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            if name.startswith("__"):
                raise AttributeError(name)
            return None

    for name in names:
        if importlib.util.find_spec(name) is None:
            module = Stub(name)
            module.__spec__ = importlib.machinery.ModuleSpec(name, None)
            sys.modules[name] = module


def drop_scheduler_verbose() -> None:
    """Upstream Dassl passes ``verbose`` to torch's LRScheduler, which no longer takes it."""
    from torch.optim import lr_scheduler

    init = lr_scheduler.LRScheduler.__init__

    def without_verbose(self, optimizer, last_epoch=-1, verbose=None):
        init(self, optimizer, last_epoch)

    lr_scheduler.LRScheduler.__init__ = without_verbose


def view_loader(image_loader: Any, root: str, views: int) -> Any:
    """The plugin's train loader, serving view r of each image on its r-th pass (see above)."""
    import importlib.util

    from torch.utils.data import DataLoader, Dataset, SequentialSampler

    spec = importlib.util.spec_from_file_location("our_views", REPO / "trainers" / "views.py")
    our_views = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(our_views)
    from dassl.utils.tools import read_image

    wrapper = image_loader.dataset

    class ViewPerPass(Dataset):
        def __init__(self) -> None:
            self.items = wrapper.data_source
            self.keys = [our_views.stable_key(item.impath, root) for item in self.items]
            self.passes = [0] * len(self.items)

        def __len__(self) -> int:
            return len(self.items)

        def __getitem__(self, index: int) -> dict[str, Any]:
            view, item = self.passes[index], self.items[index]
            if view >= views:
                raise RuntimeError(f"the plugin asked for a view beyond the {views} made")
            self.passes[index] += 1
            with our_views.seeded_rng(our_views.view_seed(self.keys[index], view)):
                image = wrapper.transform(read_image(item.impath))
            return {"img": image, "label": item.label, "domain": item.domain, "index": index}

    dataset = ViewPerPass()
    return DataLoader(
        dataset,
        batch_size=image_loader.batch_size,
        sampler=SequentialSampler(dataset),
        drop_last=image_loader.drop_last,
        num_workers=0,
    )


def feed_our_features(trainer: Any, ours: dict[str, torch.Tensor]) -> None:
    """Start the plugin from our zero-shot classifier, and have its ``extract_features`` return
    our features (train: every view, view-major; test) with logits from its own forward."""
    adapter = trainer.model.adapter
    with torch.no_grad():
        adapter.base_text_features.copy_(ours["base_text_features"])
        adapter.prototypes.copy_(ours["base_text_features"])
    views = ours["train_features"]  # [V, N, D]
    splits = {
        "train": (ours["train_labels"].repeat(len(views)), views.reshape(-1, views.shape[-1])),
        "test": (ours["test_labels"], ours["test_features"]),
    }

    def extract_features(partition: str, reps: int = 1, transforms: bool = False) -> tuple:
        labels, features = splits[partition]
        with torch.no_grad():
            logits = trainer.model.forward_features(features)
        return labels, logits, features

    trainer.extract_features = extract_features


def plugin_run(spec: dict[str, Any]) -> None:
    sys.path[:0] = [spec["clap"], spec["dassl_parent"]]
    stub_absent_modules(OPTIONAL_MODULES)
    if spec["upstream_dassl"]:
        drop_scheduler_verbose()
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self

    from clip import clip as plugin_clip  # the plugin's own CLIP package

    plugin_clip._download = lambda url, root=None: spec["checkpoint"]
    import train as plugin_train  # the plugin's train.py
    from dassl.engine import build_trainer
    from dassl.metrics import compute_accuracy
    from dassl.utils import set_random_seed, setup_logger

    clap = Path(spec["clap"])
    opts = [
        "DATASET.NUM_SHOTS", str(spec["shots"]),
        "TRAINER.ADAPTER.INIT", "ZS",
        "TRAINER.ADAPTER.CONSTRAINT", spec["constraint"],
        "TRAINER.ADAPTER.PREC", "fp32",
        "OPTIM.MAX_EPOCH", str(spec["epochs"]),
        "INPUT.SIZE", f"({spec['input_size']}, {spec['input_size']})",
        "DATALOADER.NUM_WORKERS", "0",
        "USE_CUDA", "False",
    ]  # fmt: skip
    args = argparse.Namespace(
        root=spec["root"], output_dir=spec["output"], resume="", seed=spec["seed"],
        source_domains=None, target_domains=None, transforms=None, trainer="ADAPTER",
        backbone="ViT-B/16", head="",
        config_file=str(clap / "configs" / "trainers" / "SGD_lr1e-1_B256_ep300.yaml"),
        dataset_config_file=str(clap / "configs" / "datasets" / "caltech101.yaml"),
        opts=opts,
    )  # fmt: skip
    cfg = plugin_train.setup_cfg(args)
    set_random_seed(cfg.SEED)  # main()'s steps, up to trainer.train()
    setup_logger(cfg.OUTPUT_DIR)
    start = time.perf_counter()
    trainer = build_trainer(cfg)
    trainer.train_loader_x = view_loader(trainer.train_loader_x, spec["root"], spec["views"])
    if spec.get("features"):
        feed_our_features(trainer, torch.load(spec["features"], weights_only=True))
    trainer.train()
    seconds = time.perf_counter() - start
    adapter = trainer.model.adapter
    with torch.no_grad():
        logits = trainer.model.forward_features(trainer.features_test)
    result = {
        "prototypes": adapter.prototypes.detach().cpu(),
        "base_text_features": adapter.base_text_features.cpu(),
        "alpha_constraint": torch.as_tensor(adapter.alpha_constraint).cpu(),
        "accuracy": compute_accuracy(logits, trainer.labels_test)[0].item(),
        "seconds": seconds,
    }
    torch.save(result, spec["result"])


# ---- our side and the comparison ---------------------------------------------------------


def write_inputs(work: Path, classes: int, shots: int) -> tuple[Path, Path]:
    from clip.synthetic import write_synthetic_checkpoint
    from datasets.synthetic import CALTECH101, stripe_classes, write_synthetic_dataset

    # Weights stored in fp16 where OpenAI's are: upstream's build_model rounds them to fp16.
    checkpoint = write_synthetic_checkpoint(work / "tiny-vit.pt", arch="ViT", seed=0, fp16=True)
    data = work / "data"
    write_synthetic_dataset(
        data, stripe_classes(classes), CALTECH101, (shots, 4, 10), IMAGE_SIZE, seed=0
    )
    return checkpoint, data


def fresh_copy(data: Path, target: Path) -> Path:
    """A copy of the data (its few-shot cache is the reader's own: pickles of its Datum)."""
    shutil.copytree(data, target, copy_function=shutil.copy2)
    return target


def run_ours(
    checkpoint: Path,
    root: Path,
    output: Path,
    store: Path,
    args: argparse.Namespace,
    constraint: str,
) -> dict[str, Any]:
    import train
    from clip.synthetic import TINY_INPUT_SIZE
    from dassl.utils.logger import close_logger

    argv = [
        "--root", str(root), "--seed", str(args.seed), "--trainer", "CLAP",
        "--config-file", str(REPO / "configs/trainers/CLAP/SGD_lr1e-1_B256_ep300.yaml"),
        "--dataset-config-file", str(REPO / "configs/datasets/caltech101.yaml"),
        "--output-dir", str(output),
        "MODEL.BACKBONE.NAME", str(checkpoint),
        "INPUT.SIZE", f"({TINY_INPUT_SIZE}, {TINY_INPUT_SIZE})",
        "DATALOADER.NUM_WORKERS", "0", "USE_CUDA", "False",
        "DATASET.NUM_SHOTS", str(args.shots), "OPTIM.MAX_EPOCH", str(args.epochs),
        "TRAINER.PROTOCOL", f"views:{VIEWS}", "TRAINER.CLAP.PREC", "fp32",
        "TRAINER.CLAP.CONSTRAINT", constraint, "TRAINER.FEATURE_STORE.DIR", str(store),
    ]  # fmt: skip
    built = []
    build_trainer = train.build_trainer
    train.build_trainer = lambda cfg: built.append(build_trainer(cfg)) or built[-1]
    start = time.perf_counter()
    # Its console output goes beside its folder (its log is OUTPUT_DIR/log.txt as always).
    with open(f"{output}.console.txt", "w") as console:
        with contextlib.redirect_stdout(console), contextlib.redirect_stderr(console):
            try:
                train.main(train.build_parser().parse_args(argv), argv)
            finally:
                train.build_trainer = build_trainer
                close_logger()
    seconds = time.perf_counter() - start
    trainer = built[0]
    with open(f"{output}.console.txt", "a") as console, contextlib.redirect_stdout(console):
        test_features, test_labels = trainer.encode_data_source(trainer.dm.dataset.test, "test")
    features = {
        "train_features": trainer.train_set.features.float(),
        "train_labels": trainer.train_set.labels,
        "test_features": test_features.float(),
        "test_labels": test_labels,
        "base_text_features": trainer.head.base_text_features.cpu(),
    }
    torch.save(features, output / "features.pt")
    saved = torch.load(output / "adapter" / f"model.pth.tar-{args.epochs}", weights_only=False)
    record = json.loads((output / "result.json").read_text())
    return {
        **saved["state_dict"],
        "accuracy": record["accuracy"],
        "seconds": seconds,
        "features": str(output / "features.pt"),
    }


def run_plugin(spec: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as shim:
        # A folder holding only `dassl`: the repository root would shadow the plugin's packages.
        (Path(shim) / "dassl").symlink_to(Path(spec["dassl"]) / "dassl")
        spec = {**spec, "dassl_parent": shim}
        proc = subprocess.run(
            [sys.executable, __file__, "--plugin-run", json.dumps(spec)],
            capture_output=True,
            text=True,
            cwd=spec["clap"],
        )
    if proc.returncode != 0:
        sys.exit(f"The plugin's run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return torch.load(spec["result"], weights_only=False)


def plugin_runs(engines: dict[str, Path], ours: dict[str, Any]) -> list[tuple[str, Path, str]]:
    """(label, Dassl checkout, features file or "") of each plugin run: on its own features
    (encoded by its CLIP), then on ours (the training computation alone)."""
    return [
        (f"{label}{', our features' if features else ''}", dassl, features)
        for features in ("", ours["features"])
        for label, dassl in engines.items()
    ]


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clap", type=Path, help="a jusiro/CLAP checkout")
    parser.add_argument("--dassl", type=Path, help="a KaiyangZhou/Dassl.pytorch checkout")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--constraints", nargs="+", default=["l2", "none", "l2-adaptative"])
    parser.add_argument("--plugin-run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plugin_run:
        plugin_run(json.loads(args.plugin_run))
        return 0
    if args.clap is None or not (args.clap / "trainers" / "adapters.py").is_file():
        parser.error("--clap must name a jusiro/CLAP checkout (holding trainers/adapters.py)")
    if args.dassl is not None and not (args.dassl / "dassl" / "engine").is_dir():
        parser.error("--dassl must name a Dassl.pytorch checkout (holding dassl/engine/)")

    sys.path.insert(0, str(REPO))
    from clip.synthetic import TINY_INPUT_SIZE

    engines = {"our dassl/": REPO}
    if args.dassl is not None:
        engines["upstream Dassl"] = args.dassl.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        checkpoint, data = write_inputs(work, args.classes, args.shots)
        store = work / "store"
        print(
            f"Tiny ViT CLIP (fp32, CPU), {args.classes} classes x {args.shots} shots, seed "
            f"{args.seed}, {args.epochs} epochs, {VIEWS} views\n"
        )
        for constraint in args.constraints:
            # The same files twice: the store keys each image by its file version.
            root = fresh_copy(data, work / f"ours-{constraint}")
            runs = [run_ours(checkpoint, root, work / f"out-{constraint}-{i}", store, args,
                             constraint) for i in range(2)]  # fmt: skip
            ours = runs[1]  # the store holds the views
            print(f"CONSTRAINT {constraint}:")
            print(f"  ours: accuracy {ours['accuracy']:.2f}%, {ours['seconds']:.1f} s "
                  f"(first run, encoding the views: {runs[0]['seconds']:.1f} s)")  # fmt: skip
            for tag, (name, dassl, features) in enumerate(plugin_runs(engines, ours)):
                spec = {
                    "clap": str(args.clap.resolve()), "dassl": str(dassl),
                    "upstream_dassl": dassl != REPO, "checkpoint": str(checkpoint),
                    "root": str(fresh_copy(data, work / f"plugin-{constraint}-{tag}")),
                    "output": str(work / f"plugin-out-{constraint}-{tag}"),
                    "result": str(work / f"plugin-{constraint}-{tag}.pt"),
                    "seed": args.seed, "shots": args.shots, "epochs": args.epochs,
                    "constraint": constraint, "views": VIEWS, "input_size": TINY_INPUT_SIZE,
                    "features": features,
                }  # fmt: skip
                plugin = run_plugin(spec)
                diffs = ", ".join(
                    f"{shown} {max_diff(ours[key], plugin[key]):.2e}"
                    for shown, key in DIFFS.items()
                )
                print(
                    f"  plugin on {name}: accuracy {plugin['accuracy']:.2f}%, "
                    f"{plugin['seconds']:.1f} s; max |diff| {diffs}"
                )
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
