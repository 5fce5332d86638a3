"""Our native CoCoOp against upstream's unmodified plugin (KaiyangZhou/CoOp trainers/cocoop.py):
same learning, checkpoints that load both ways, and where an epoch's time goes.

Every run sees the same tiny random-weight CLIP (clip/synthetic.py, stored in fp16 as OpenAI's
files), the same synthetic Caltech101-layout data (datasets/synthetic.py; each run reads its own
copy of the same files, so no run sees another's few-shot split cache), upstream's config
``vit_b16_c4_ep10_batch1_ctxv1`` (4 context tokens from "a photo of a", SGD 0.002, 10 epochs,
cosine with a constant warmup epoch, random crops and flips) in fp32 on the CPU, and one seed,
with batch 1 (upstream's) and batch 4 (ours batches the B x K prompts, upstream loops over images):

- upstream's plugin (its own train.py) on our ``dassl/`` and, with ``--dassl``, on upstream
  Dassl.pytorch (both are the package ``dassl``, so each runs in its own subprocess);
- our train.py with ``--trainer CoCoOp``.

Per batch size it prints the largest difference of the learned weights (``ctx``, ``meta_net.*``,
last epoch) between our run and each upstream run, how far those weights moved after the first
epoch (the scale to read the differences against), the test accuracies, the accuracy of each
side's checkpoint evaluated by the other side (``--eval-only``), the seconds per epoch, and the
seconds and calls of the text encoder's forward passes (upstream encodes each image's K prompts
in its own call; ours encodes a batch's B x K prompts in one).

The subprocesses patch only what cannot run here, in-process: ``.cuda()`` is a no-op, the CLIP
weight download returns the tiny checkpoint, and the ``verbose`` argument upstream Dassl's
schedulers pass to torch (which no longer takes it) is dropped. The timings wrap the engine's
``TrainerX.run_epoch`` and each side's ``TextEncoder.forward`` with a clock, nothing else.

Usage:
  python benchmarks/cocoop_parity.py --cocoop PATH/CoOp [--dassl PATH/Dassl.pytorch]
      [--deps DIR] [--keep DIR]

``--deps DIR``: packages upstream Dassl imports that this environment lacks (gdown, wilds,
pandas; e.g. ``pip install --target DIR``); default ``.oracle`` when present.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BACKBONE = "ViT-B/16"  # a name upstream's clip._MODELS knows; its download is the tiny file
CONFIG = "configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml"
NUM_CLASSES, PER_CLASS, SHOTS, SEED, EPOCHS = 8, (4, 2, 4), 4, 1, 10
BATCHES = (1, 4)
LEARNED = ("ctx", "meta_net.linear1.weight", "meta_net.linear1.bias")
LEARNED += ("meta_net.linear2.weight", "meta_net.linear2.bias")
TIMING = "COCOOP_PARITY_TIMING "


# ---------------------------------------------------------------- the subprocess side


def clock(owner: type, name: str, totals: dict[str, float]) -> None:
    """Wrap ``owner.name`` to add its seconds to totals[name] and count its calls."""
    method = getattr(owner, name)

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            totals[name] = totals.get(name, 0.0) + time.perf_counter() - start
            totals[name + "_calls"] = totals.get(name + "_calls", 0) + 1

    setattr(owner, name, timed)


def report_timing(totals: dict[str, float]) -> None:
    import atexit

    atexit.register(lambda: print(TIMING + json.dumps(totals), flush=True))


def run_upstream_plugin(dassl_root: str, plugin_dir: str, weights: str, deps: str) -> None:
    """Upstream's train.py as __main__ on the engine under ``dassl_root``, with the three patches
    and the clocks."""
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

    from clip import clip as plugin_clip  # upstream's own clip package

    plugin_clip._MODELS[BACKBONE] = weights
    plugin_clip._download = lambda url, *args, **kwargs: weights

    from dassl.engine.trainer import TrainerX
    from trainers import cocoop  # the module train.py imports: the same object

    totals: dict[str, float] = {}
    clock(TrainerX, "run_epoch", totals)
    clock(cocoop.TextEncoder, "forward", totals)
    report_timing(totals)
    os.chdir(plugin_dir)
    sys.argv = [str(Path(plugin_dir) / "train.py"), *sys.argv]
    runpy.run_path(sys.argv[0], run_name="__main__")


def run_native() -> None:
    """Our train.py as __main__, with the clocks."""
    sys.path.insert(0, str(REPO))
    from dassl.engine.trainer import TrainerX
    from trainers.text import TextEncoder

    totals: dict[str, float] = {}
    clock(TrainerX, "run_epoch", totals)
    clock(TextEncoder, "forward", totals)
    report_timing(totals)
    sys.argv = [str(REPO / "train.py"), *sys.argv]
    runpy.run_path(sys.argv[0], run_name="__main__")


# ---------------------------------------------------------------- the comparing side


class Run:
    """One train.py run's log, accuracy, timings and last learned weights."""

    def __init__(self, label: str, worker: list[str], argv: list[str], out: Path) -> None:
        cmd = [sys.executable, str(Path(__file__).resolve()), *worker, "--", *argv]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        log = done.stdout + done.stderr
        if done.returncode != 0:
            sys.exit(f"{label} failed:\n{done.stdout[-3000:]}\n{done.stderr[-4000:]}")
        self.label = label
        found = re.findall(r"\* accuracy: ([\d.]+)%", log)
        self.accuracy = f"{found[-1]}%" if found else "?"
        timing = [line for line in log.splitlines() if line.startswith(TIMING)]
        self.timing = json.loads(timing[-1][len(TIMING) :]) if timing else {}
        self.out = out

    def weights(self, epoch: int) -> dict:
        import torch

        path = self.out / "prompt_learner" / f"model.pth.tar-{epoch}"
        return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]

    def per_epoch(self) -> str:
        t = self.timing
        if not t.get("run_epoch_calls"):
            return "no epoch"
        epochs = t["run_epoch_calls"]
        return (
            f"{t['run_epoch'] / epochs:.3f} s/epoch, text encoder forward "
            f"{t.get('forward', 0.0) / epochs:.3f} s/epoch in "
            f"{t.get('forward_calls', 0) // epochs} calls/epoch"
        )


def max_difference(a: dict, b: dict) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in LEARNED)


def common_opts(weights_name: str, batch: int) -> list[str]:
    return [
        "MODEL.BACKBONE.NAME", weights_name,
        "DATASET.NUM_SHOTS", str(SHOTS),
        "INPUT.SIZE", "(32, 32)",
        "DATALOADER.NUM_WORKERS", "0",
        "DATALOADER.TRAIN_X.BATCH_SIZE", str(batch),
        "OPTIM.MAX_EPOCH", str(EPOCHS),
        "TRAIN.CHECKPOINT_FREQ", "1",
        "USE_CUDA", "False",
        "TRAINER.COCOOP.PREC", "fp32",
    ]  # fmt: skip


def data_copy(work: Path, name: str) -> Path:
    """A fresh copy of the dataset for one run (the same files every time)."""
    from datasets.synthetic import CALTECH101, stripe_classes, write_synthetic_dataset

    root = work / "data" / name
    shutil.rmtree(root, ignore_errors=True)
    write_synthetic_dataset(root, stripe_classes(NUM_CLASSES), CALTECH101, PER_CLASS, 32)
    return root


def upstream_run(
    label: str, engine: Path, plugin: Path, work: Path, weights: Path, deps: str, extra: list[str]
) -> Run:
    out = work / label
    shutil.rmtree(out, ignore_errors=True)
    argv = [
        "--root", str(data_copy(work, label)),
        "--seed", str(SEED),
        "--trainer", "CoCoOp",
        "--dataset-config-file", str(plugin / "configs/datasets/caltech101.yaml"),
        "--config-file", str(plugin / CONFIG),
        "--output-dir", str(out),
        *extra,
    ]  # fmt: skip
    worker = ["--upstream-worker", str(engine), str(plugin), str(weights), deps]
    return Run(label, worker, argv, out)


def native_run(label: str, work: Path, extra: list[str]) -> Run:
    out = work / label
    shutil.rmtree(out, ignore_errors=True)
    argv = [
        "--root", str(data_copy(work, label)),
        "--seed", str(SEED),
        "--trainer", "CoCoOp",
        "--dataset-config-file", str(REPO / "configs/datasets/caltech101.yaml"),
        "--config-file", str(REPO / CONFIG),
        "--output-dir", str(out),
        *extra,
        "TRAINER.FEATURE_STORE.ENABLED", "False",  # nothing written outside the work folder
    ]  # fmt: skip
    return Run(label, ["--native-worker"], argv, out)


def compare(batch: int, plugin: Path, engines: dict[str, Path], work: Path, deps: str) -> None:
    weights = work / "tiny-clip.pt"
    ours = native_run(f"native-b{batch}", work, common_opts(str(weights), batch))
    w_ours = ours.weights(EPOCHS)
    moved = max_difference(ours.weights(1), w_ours)
    print(f"batch {batch}: ours: accuracy {ours.accuracy}; {ours.per_epoch()}", flush=True)
    for engine_name, engine in engines.items():
        tag = f"upstream-on-{engine_name.replace(' ', '-')}-b{batch}"
        up = upstream_run(tag, engine, plugin, work, weights, deps, common_opts(BACKBONE, batch))
        diff = max_difference(up.weights(EPOCHS), w_ours)
        # Each side's last checkpoint evaluated by the other side.
        load = ["--eval-only", "--load-epoch", str(EPOCHS)]
        ours_in_up = upstream_run(
            tag + "-eval-ours",
            engine,
            plugin,
            work,
            weights,
            deps,
            [*load, "--model-dir", str(ours.out), *common_opts(BACKBONE, batch)],
        )
        up_in_ours = native_run(
            tag + "-eval-in-ours",
            work,
            [*load, "--model-dir", str(up.out), *common_opts(str(weights), batch)],
        )
        print(
            f"batch {batch}: upstream plugin on {engine_name} vs ours: max |learned weights "
            f"diff| {diff:.3e} (weights moved {moved:.3e} after epoch 1); accuracy "
            f"{up.accuracy} vs {ours.accuracy}; our checkpoint in upstream {ours_in_up.accuracy}, "
            f"upstream's in ours {up_in_ours.accuracy}; upstream {up.per_epoch()}",
            flush=True,
        )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("--upstream-worker", "--native-worker"):
        mode, rest = sys.argv[1], sys.argv[2:]
        split = rest.index("--")
        sys.argv = rest[split + 1 :]
        if mode == "--native-worker":
            run_native()
        else:
            run_upstream_plugin(*rest[:split])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cocoop", type=Path, required=True, help="a KaiyangZhou/CoOp checkout")
    parser.add_argument("--dassl", type=Path, help="a Dassl.pytorch checkout")
    parser.add_argument("--deps", type=Path, default=REPO / ".oracle")
    parser.add_argument("--keep", type=Path, help="work in DIR and keep it")
    args = parser.parse_args()
    plugin = args.cocoop.resolve()
    if not (plugin / "trainers" / "cocoop.py").is_file():
        sys.exit(f"--cocoop {args.cocoop}: not a KaiyangZhou/CoOp checkout (no trainers/cocoop.py)")
    engines = {"our dassl": REPO}
    if args.dassl:
        if not (args.dassl / "dassl" / "engine" / "trainer.py").is_file():
            sys.exit(f"--dassl {args.dassl}: not a Dassl.pytorch checkout (no dassl/engine/)")
        engines["upstream Dassl"] = args.dassl.resolve()
    deps = str(args.deps.resolve()) if args.deps.is_dir() else ""

    sys.path.insert(0, str(REPO))
    from clip.synthetic import write_synthetic_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        work = (args.keep or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        write_synthetic_checkpoint(work / "tiny-clip.pt", fp16=True)
        for batch in BATCHES:
            compare(batch, plugin, engines, work, deps)


if __name__ == "__main__":
    main()
