"""Our native CoCoOp against upstream's unmodified plugin (KaiyangZhou/CoOp trainers/cocoop.py):
same learning, checkpoints that load both ways, and where an epoch's time goes.

Every run sees the same tiny random-weight CLIP (clip/synthetic.py, stored in fp16 as OpenAI's
files), the same synthetic Caltech101-layout data (datasets/synthetic.py; each run reads its own
copy of the same files, so no run sees another's few-shot split cache), upstream's config
``vit_b16_c4_ep10_batch1_ctxv1`` (4 context tokens from "a photo of a", SGD 0.002, 10 epochs,
cosine with a constant warmup epoch, random crops and flips) in fp32 on the CPU, and one seed,
in the SETTINGS below (batch size and learning rate):

- upstream's plugin (its own train.py) on our ``dassl/`` and, with ``--dassl``, on upstream
  Dassl.pytorch (both are the package ``dassl``, so each runs in its own subprocess);
- our train.py with ``--trainer CoCoOp``.

Per setting it prints the largest difference of the learned weights (``ctx``, ``meta_net.*``,
last epoch) between our run and each upstream run, how far those weights moved after the first
epoch (the scale to read the differences against), the test accuracies, the accuracy of each
side's checkpoint evaluated by the other side (``--eval-only``), and where an epoch's time goes:
seconds per epoch, and within it the text encoder's and the image encoder's forward passes (their
seconds and count: upstream encodes each image's K prompts in its own pass, ours a batch's B x K
prompts in one) and the backward passes.

The subprocesses patch only what cannot run here, in-process: ``.cuda()`` is a no-op, the CLIP
weight download returns the tiny checkpoint, and the ``verbose`` argument upstream Dassl's
schedulers pass to torch (which no longer takes it) is dropped. The timings wrap the engine's
``TrainerX.run_epoch``, each side's ``TextEncoder.forward``, CLIP's ``VisionTransformer.forward``
and ``Tensor.backward`` with a clock, nothing else.

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
sys.path.insert(0, str(Path(__file__).resolve().parent))
from plugin_parity import patch_upstream_for_cpu  # noqa: E402  (the same three patches)

CONFIG = "configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml"
NUM_CLASSES, PER_CLASS, SHOTS, SEED, EPOCHS = 8, (4, 2, 4), 4, 1, 10
# (batch size, OPTIM.LR): upstream's batch 1 and lr; a batch of 4 (ours encodes its B x K prompts
# in one pass, upstream loops over the images); and lr 0.5, with which the tiny model learns
# (accuracy above chance), so that the accuracies and the cross-loaded checkpoints say something.
SETTINGS = ((1, "0.002"), (4, "0.002"), (4, "0.5"))
LEARNED = ("ctx", "meta_net.linear1.weight", "meta_net.linear1.bias")
LEARNED += ("meta_net.linear2.weight", "meta_net.linear2.bias")
TIMING = "COCOOP_PARITY_TIMING "


# ---------------------------------------------------------------- the subprocess side


def clock(owner: type, name: str, bucket: str, totals: dict[str, float]) -> None:
    """Wrap ``owner.name`` to add its seconds and calls to ``totals[bucket]`` while an epoch runs
    (the "epoch" bucket itself is the whole of ``run_epoch``)."""
    method = getattr(owner, name)

    def timed(*args, **kwargs):
        counted = bucket == "epoch" or totals.get("in_epoch", False)
        totals["in_epoch"] = totals.get("in_epoch", False) or bucket == "epoch"
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            if counted:
                totals[bucket] = totals.get(bucket, 0.0) + time.perf_counter() - start
                totals[bucket + "_calls"] = totals.get(bucket + "_calls", 0) + 1
            if bucket == "epoch":
                totals["in_epoch"] = False

    setattr(owner, name, timed)


def clock_all(trainer: type, text_encoder: type, image_encoder: type) -> None:
    """The epoch, and within it: text-encoder and image-encoder forwards, and backward passes;
    printed when the run ends."""
    import atexit

    import torch

    totals: dict[str, float] = {}
    clock(trainer, "run_epoch", "epoch", totals)
    clock(text_encoder, "forward", "text", totals)
    clock(image_encoder, "forward", "image", totals)
    clock(torch.Tensor, "backward", "backward", totals)
    atexit.register(lambda: print(TIMING + json.dumps(totals), flush=True))


def run_upstream_plugin(dassl_root: str, plugin_dir: str, weights: str, deps: str) -> None:
    """Upstream's train.py as __main__ on the engine under ``dassl_root``, with the three patches
    and the clocks."""
    patch_upstream_for_cpu(dassl_root, plugin_dir, weights, deps)
    from clip.model import VisionTransformer
    from dassl.engine.trainer import TrainerX
    from trainers import cocoop  # the module train.py imports: the same object

    clock_all(TrainerX, cocoop.TextEncoder, VisionTransformer)
    os.chdir(plugin_dir)
    sys.argv = [str(Path(plugin_dir) / "train.py"), *sys.argv]
    runpy.run_path(sys.argv[0], run_name="__main__")


def run_native() -> None:
    """Our train.py as __main__, with the clocks."""
    sys.path.insert(0, str(REPO))
    from clip.model import VisionTransformer
    from dassl.engine.trainer import TrainerX
    from trainers.text import TextEncoder

    clock_all(TrainerX, TextEncoder, VisionTransformer)
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
        epochs = t.get("epoch_calls", 0)
        if not epochs:
            return "no epoch"
        parts = [f"{t['epoch'] / epochs:.3f} s/epoch"]
        for bucket, what in (("text", "text encoder"), ("image", "image encoder")):
            parts.append(
                f"{what} {t.get(bucket, 0.0) / epochs:.3f} s "
                f"({t.get(bucket + '_calls', 0) // epochs} forwards)"
            )
        parts.append(f"backward {t.get('backward', 0.0) / epochs:.3f} s")
        return ", ".join(parts)


def max_difference(a: dict, b: dict) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in LEARNED)


def common_opts(weights_name: str, batch: int, lr: str) -> list[str]:
    return [
        "MODEL.BACKBONE.NAME", weights_name,
        "DATASET.NUM_SHOTS", str(SHOTS),
        "INPUT.SIZE", "(32, 32)",
        "DATALOADER.NUM_WORKERS", "0",
        "DATALOADER.TRAIN_X.BATCH_SIZE", str(batch),
        "OPTIM.LR", lr,
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


def train_argv(label: str, work: Path, configs: Path, extra: list[str]) -> list[str]:
    """The train.py arguments of one run into ``work/label`` (emptied first), on its own copy
    of the data, with the dataset and CoCoOp configs found under ``configs``."""
    shutil.rmtree(work / label, ignore_errors=True)
    return [
        "--root", str(data_copy(work, label)),
        "--seed", str(SEED),
        "--trainer", "CoCoOp",
        "--dataset-config-file", str(configs / "configs/datasets/caltech101.yaml"),
        "--config-file", str(configs / CONFIG),
        "--output-dir", str(work / label),
        *extra,
    ]  # fmt: skip


def upstream_run(
    label: str, engine: Path, plugin: Path, work: Path, weights: Path, deps: str, extra: list[str]
) -> Run:
    worker = ["--upstream-worker", str(engine), str(plugin), str(weights), deps]
    return Run(label, worker, train_argv(label, work, plugin, extra), work / label)


def native_run(label: str, work: Path, extra: list[str]) -> Run:
    # nothing written outside the work folder
    argv = [*train_argv(label, work, REPO, extra), "TRAINER.FEATURE_STORE.ENABLED", "False"]
    return Run(label, ["--native-worker"], argv, work / label)


def compare(
    batch: int, lr: str, plugin: Path, engines: dict[str, Path], work: Path, deps: str
) -> None:
    weights = work / "tiny-clip.pt"
    setting = f"batch {batch}, lr {lr}"
    ours = native_run(f"native-b{batch}-lr{lr}", work, common_opts(str(weights), batch, lr))
    w_ours = ours.weights(EPOCHS)
    moved = max_difference(ours.weights(1), w_ours)
    print(f"{setting}: ours: accuracy {ours.accuracy}; {ours.per_epoch()}", flush=True)
    for engine_name, engine in engines.items():
        tag = f"upstream-on-{engine_name.replace(' ', '-')}-b{batch}-lr{lr}"
        up_opts = common_opts(BACKBONE, batch, lr)
        up = upstream_run(tag, engine, plugin, work, weights, deps, up_opts)
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
            [*load, "--model-dir", str(ours.out), *up_opts],
        )
        up_in_ours = native_run(
            tag + "-eval-in-ours",
            work,
            [*load, "--model-dir", str(up.out), *common_opts(str(weights), batch, lr)],
        )
        print(
            f"{setting}: upstream plugin on {engine_name} vs ours: max |learned weights "
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
        for batch, lr in SETTINGS:
            compare(batch, lr, plugin, engines, work, deps)


if __name__ == "__main__":
    main()
