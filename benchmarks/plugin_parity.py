"""Unmodified third-party Dassl plugins on upstream Dassl and on our ``dassl/``: same learning?

Each plugin's own ``train.py`` runs twice, in its own subprocess (both engines are the package
``dassl``): once on the upstream engine it was written for (Dassl.pytorch, or the fork the plugin
ships: ProGrad's Dassl.ProGrad.pytorch), once on our ``dassl/``. Both runs see the same tiny
random-weight CLIP (clip/synthetic.py), the same synthetic Caltech101-layout data
(datasets/synthetic.py, read by the plugin's own Caltech101 reader), the same config and seed.
Per plugin it prints the largest difference between the learned weights of the last checkpoints
and both test accuracies. With ``--native``, this project's own implementation of the method
(train.py) is compared with the plugin on its upstream engine in the same way.

The subprocesses patch only what cannot run here, in-process: ``.cuda()`` is a no-op, the CLIP
weight download returns the tiny checkpoint, and the ``verbose`` argument upstream Dassl's
schedulers pass to torch (which no longer takes it) is dropped.

Usage:
  python benchmarks/plugin_parity.py --dassl PATH/Dassl.pytorch \\
      --plugin CoOp=PATH/CoOp --plugin CoCoOp=PATH/CoOp --plugin KgCoOp=PATH/KgCoOp \\
      --plugin ProGrad=PATH/Prompt-align [--native] [--deps DIR]

``--deps DIR``: a folder of packages that upstream Dassl imports and this environment lacks
(gdown, wilds, pandas; e.g. ``pip install --target DIR``); default ``.oracle`` when present.
"""

from __future__ import annotations

import argparse
import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BACKBONE = "ViT-B/16"  # a name the plugins' clip._MODELS knows; its download is the tiny file
SHOTS, BATCH, EPOCHS, SEED = 2, 4, 3, 1


@dataclass(frozen=True)
class Plugin:
    """Where a plugin lives in its repository checkout and how its runs are configured."""

    trainer: str
    plugin_dir: str  # the folder holding its train.py, relative to the checkout
    config: str  # its method config, relative to plugin_dir
    opts: tuple[str, ...]  # keys set on top of the config (precision, context length)
    fork_dassl: str | None = None  # the Dassl fork it ships, relative to the checkout
    native: tuple[str, ...] = field(default=())  # our train.py: config and keys of the same run


PLUGINS = {
    "CoOp": Plugin(
        "CoOp",
        ".",
        "configs/trainers/CoOp/rn50.yaml",
        ("TRAINER.COOP.PREC", "fp32", "TRAINER.COOP.N_CTX", "4"),
        native=(
            "configs/trainers/CoOp/rn50.yaml",
            "TRAINER.COOP.PREC",
            "fp32",
            "TRAINER.COOP.N_CTX",
            "4",
        ),
    ),
    "CoCoOp": Plugin(
        "CoCoOp",
        ".",
        "configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml",
        ("TRAINER.COCOOP.PREC", "fp32"),
    ),
    "KgCoOp": Plugin(
        "KgCoOp",
        "KgCoOp",
        "configs/trainers/KgCoOp/vit_b16_ep100_ctxv1.yaml",
        ("TRAINER.COOP.PREC", "fp32", "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.W", "8.0"),
        native=(
            "configs/trainers/KgCoOp/vit_b16_ep100_ctxv1.yaml",
            "TRAINER.KGCOOP.PREC",
            "fp32",
            "TRAINER.KGCOOP.W",
            "8.0",
        ),
    ),
    "ProGrad": Plugin(
        "ProGrad",
        "ProGrad.public",
        "configs/trainers/ProGrad/rn50.yaml",
        ("TRAINER.COOP.PREC", "fp32", "LOSS.LAMBDA", "1.0"),
        fork_dassl="Dassl.ProGrad.pytorch",
        native=("configs/trainers/ProGrad/rn50.yaml", "TRAINER.PROGRAD.PREC", "fp32"),
    ),
}
# Every image of the run in one batch, no random augmentation: upstream draws from the global RNG
# where ours does not (KgCoOp's unused bias vectors, meta-net and adapter; the second CLIP that
# KgCoOp and ProGrad build), which moves the data order and crops of later draws; a full,
# deterministic batch makes the comparison of the losses and updates independent of it.
NATIVE_DATA = (
    "DATALOADER.TRAIN_X.BATCH_SIZE",
    str(5 * SHOTS),
    "INPUT.TRANSFORMS",
    "['normalize']",
)


def common_opts(weights_name: str) -> list[str]:
    return [
        "MODEL.BACKBONE.NAME",
        weights_name,
        "DATASET.NUM_SHOTS",
        str(SHOTS),
        "INPUT.SIZE",
        "(32, 32)",
        "DATALOADER.NUM_WORKERS",
        "0",
        "DATALOADER.TRAIN_X.BATCH_SIZE",
        str(BATCH),
        "DATALOADER.TEST.BATCH_SIZE",
        "100",
        "OPTIM.MAX_EPOCH",
        str(EPOCHS),
        "USE_CUDA",
        "False",
        "TRAIN.CHECKPOINT_FREQ",
        "1",
    ]


# ---------------------------------------------------------------- the subprocess side


def patch_upstream_for_cpu(dassl_root: str, plugin_dir: str, weights: str, deps: str) -> None:
    """Put the plugin and the engine under ``dassl_root`` first on the path and apply the three
    in-process patches: ``.cuda()`` a no-op, Dassl's scheduler ``verbose`` argument dropped, the
    plugin's own clip download pointed at the tiny ``weights`` file."""
    sys.path[:0] = [plugin_dir, dassl_root]
    if deps:
        sys.path.append(deps)
    import torch
    from torch.optim import lr_scheduler

    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self
    scheduler_init = lr_scheduler.LRScheduler.__init__

    def init_without_verbose(self, optimizer, last_epoch=-1, verbose=None):
        scheduler_init(self, optimizer, last_epoch)

    lr_scheduler.LRScheduler.__init__ = init_without_verbose

    from clip import clip as plugin_clip  # the plugin's own clip package

    plugin_clip._MODELS[BACKBONE] = weights
    plugin_clip._download = lambda url, *args, **kwargs: weights


def run_plugin_in_this_process(
    dassl_root: str, plugin_dir: str, weights: str, deps: str, argv: list[str]
) -> None:
    """The plugin's train.py as __main__ on the engine under ``dassl_root``, with the three
    patches and nothing else."""
    patch_upstream_for_cpu(dassl_root, plugin_dir, weights, deps)
    os.chdir(plugin_dir)
    sys.argv = [str(Path(plugin_dir) / "train.py"), *argv]
    runpy.run_path(sys.argv[0], run_name="__main__")


# ---------------------------------------------------------------- the comparing side


def run(argv: list[str], label: str) -> str:
    log = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"},
    )
    if log.returncode != 0:
        sys.exit(f"{label} failed:\n{log.stdout[-3000:]}\n{log.stderr[-4000:]}")
    return log.stdout + log.stderr


def accuracy(log: str) -> str:
    found = re.findall(r"\* accuracy: ([\d.]+)%", log)
    return f"{found[-1]}%" if found else "?"


def checkpoints(output_dir: Path) -> tuple[dict, dict]:
    """The state dicts of the first and the last epoch's checkpoints."""
    import torch

    paths = sorted(
        output_dir.glob("*/model.pth.tar-*"), key=lambda p: int(p.name.rsplit("-", 1)[1])
    )
    if not paths:
        sys.exit(f"no checkpoint under {output_dir}")
    first, last = (
        torch.load(p, map_location="cpu", weights_only=False)["state_dict"]
        for p in (paths[0], paths[-1])
    )
    return first, last


def moved(first: dict, last: dict) -> float:
    """How far the context moved from the first epoch's end to the last's: the scale that the
    differences between runs are to be read against."""
    return (last["ctx"].double() - first["ctx"].double()).abs().max().item()


def weight_difference(a: dict, b: dict) -> str:
    """Max |a - b| over the tensors both hold; names the keys only one side has."""
    common = sorted(set(a) & set(b))
    diff = max((a[k].double() - b[k].double()).abs().max().item() for k in common)
    only = sorted(set(a) ^ set(b))
    return f"{diff:.3e} over {', '.join(common)}" + (
        f" (one side only: {', '.join(only)})" if only else ""
    )


def plugin_run(
    name: str,
    checkout: Path,
    dassl_root: Path,
    work: Path,
    tag: str,
    weights: Path,
    deps: str,
    extra: tuple[str, ...] = (),
) -> tuple[str, dict, dict]:
    plugin = PLUGINS[name]
    plugin_dir = (checkout / plugin.plugin_dir).resolve()
    out = work / f"{name}-{tag}"
    shutil.rmtree(out, ignore_errors=True)  # a fresh run, never a resumed one
    argv = [
        "--root",
        str(work / "data"),
        "--seed",
        str(SEED),
        "--trainer",
        plugin.trainer,
        "--dataset-config-file",
        str(plugin_dir / "configs/datasets/caltech101.yaml"),
        "--config-file",
        str(plugin_dir / plugin.config),
        "--output-dir",
        str(out),
        *common_opts(BACKBONE),
        *plugin.opts,
        *extra,
    ]
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        str(dassl_root),
        str(plugin_dir),
        str(weights),
        deps,
        "--",
        *argv,
    ]
    log = run(cmd, f"{name} on {tag}")
    return accuracy(log), *checkpoints(out)


def native_run(name: str, work: Path, weights: Path) -> tuple[str, dict, dict]:
    plugin = PLUGINS[name]
    out = work / f"{name}-native"
    shutil.rmtree(out, ignore_errors=True)
    argv = [
        sys.executable,
        str(REPO / "train.py"),
        "--root",
        str(work / "data"),
        "--seed",
        str(SEED),
        "--trainer",
        plugin.trainer,
        "--output-dir",
        str(out),
        "--dataset-config-file",
        str(REPO / "configs/datasets/caltech101.yaml"),
        "--config-file",
        str(REPO / plugin.native[0]),
        *common_opts(str(weights)),
        *plugin.native[1:],
        *NATIVE_DATA,
        "TRAINER.FEATURE_STORE.ENABLED",  # nothing written outside the work folder
        "False",
    ]
    return accuracy(run(argv, f"native {name}")), *checkpoints(out)


def parse_plugins(values: list[str]) -> dict[str, Path]:
    plugins = {}
    for value in values:
        name, _, path = value.partition("=")
        if name not in PLUGINS or not path:
            sys.exit(f"--plugin {value!r}: use NAME=CHECKOUT with NAME one of {', '.join(PLUGINS)}")
        plugins[name] = Path(path).resolve()
        if not (plugins[name] / PLUGINS[name].plugin_dir / "train.py").is_file():
            sys.exit(
                f"--plugin {value!r}: no {PLUGINS[name].plugin_dir}/train.py in {path}; "
                "pass the plugin's repository checkout"
            )
    return plugins


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        dassl_root, plugin_dir, weights, deps, sep, *argv = sys.argv[2:]
        run_plugin_in_this_process(dassl_root, plugin_dir, weights, deps, argv)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dassl", type=Path, required=True, help="a Dassl.pytorch checkout")
    parser.add_argument("--plugin", action="append", default=[], help="NAME=CHECKOUT")
    parser.add_argument(
        "--native",
        action="store_true",
        help="also compare our own implementation with the plugin upstream",
    )
    parser.add_argument("--deps", type=Path, default=REPO / ".oracle")
    parser.add_argument("--keep", type=Path, help="work in DIR and keep it")
    args = parser.parse_args()
    if not (args.dassl / "dassl" / "engine" / "trainer.py").is_file():
        sys.exit(f"--dassl {args.dassl}: not a Dassl.pytorch checkout (no dassl/engine/trainer.py)")
    plugins = parse_plugins(args.plugin)
    if not plugins:
        sys.exit("name at least one --plugin NAME=CHECKOUT")
    deps = str(args.deps.resolve()) if args.deps.is_dir() else ""

    sys.path.insert(0, str(REPO))
    from clip.synthetic import write_synthetic_checkpoint
    from datasets.synthetic import CALTECH101, SHAPE_CLASSES, write_synthetic_dataset

    with tempfile.TemporaryDirectory() as tmp:
        work = (args.keep or Path(tmp)).resolve()
        write_synthetic_dataset(work / "data", SHAPE_CLASSES, CALTECH101, (4, 2, 6), 32)
        # fp16 where OpenAI stores fp16, as the published files: upstream's build_model rounds to it
        weights = write_synthetic_checkpoint(work / "tiny-clip.pt", fp16=True)
        for name, checkout in plugins.items():
            plugin = PLUGINS[name]
            upstream = (checkout / plugin.fork_dassl).resolve() if plugin.fork_dassl else args.dassl
            engine = plugin.fork_dassl or "upstream Dassl"
            acc_up, first, w_up = plugin_run(
                name, checkout, upstream, work, "upstream", weights, deps
            )
            acc_ours, _, w_ours = plugin_run(name, checkout, REPO, work, "ours", weights, deps)
            print(
                f"{name} plugin, {engine} vs our dassl: max |weights diff| "
                f"{weight_difference(w_up, w_ours)}; accuracy {acc_up} vs {acc_ours}; "
                f"ctx moved {moved(first, w_up):.3e} after epoch 1",
                flush=True,
            )
            if args.native and plugin.native:
                acc_up, first, w_up = plugin_run(
                    name,
                    checkout,
                    upstream,
                    work,
                    "upstream-full-batch",
                    weights,
                    deps,
                    NATIVE_DATA,
                )
                acc_native, _, w_native = native_run(name, work, weights)
                print(
                    f"{name} native vs plugin on {engine} (full batch, no augmentation): "
                    f"max |weights diff| {weight_difference(w_up, w_native)}; "
                    f"accuracy {acc_up} vs {acc_native}; "
                    f"ctx moved {moved(first, w_up):.3e} after epoch 1",
                    flush=True,
                )


if __name__ == "__main__":
    main()
