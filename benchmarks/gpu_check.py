"""The GPU check's measurements: precision checks, where an epoch's time goes, peak memory.

benchmarks/gpu_check.sh runs this after the test suite; every figure and every PASS/FAIL line goes
to one results file (and the console), the trainers' own output to a log file beside it. Random
CLIPs in OpenAI's layout (clip/synthetic.py) and synthetic images stand in for real ones: the work
per image is the real models', the accuracies are a toy task's.

  precision  TaskRes on a synthetic task in fp32, fp16 and amp over 3 seeds: mean test accuracies
             within 0.5 points of fp32; a long TaskRes fp16 run and a CoOp fp16 run with finite
             losses, weights and logits throughout
  epoch      with an RN50-sized and a ViT-B/16-sized CLIP over ~400x350 JPEGs: the train loader's
             images/s alone (decode-once off and on), the image encoder's alone (fp32, fp16,
             amp), one whole TaskRes epoch (exact protocol), and the feature store's encoding
             pass; which of loader and encoder bounds the epoch
  memory     peak GPU memory of training steps at 1000 classes: TaskRes (batch 256), CoOp
             (batch 32), CLIP-Adapter (batch 32), at the shipped configs' precisions

    python benchmarks/gpu_check.py --results out/gpu_check.txt            # CUDA, full sizes
    python benchmarks/gpu_check.py --cpu --results /tmp/gpu_check.txt     # tiny sizes, CPU

With --cpu, fp16 and amp run on the CPU past resolve_precision's fp32 fallback (as the tests'
force_precision fixture does), so every code path runs; the figures then say nothing about GPUs.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import math
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

import torch
from yacs.config import CfgNode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import trainers  # noqa: E402,F401  (registers the trainers and their config keys)
from clip.model import convert_weights  # noqa: E402
from clip.synthetic import (  # noqa: E402
    RN50_DIMS,
    VIT_B16_DIMS,
    build_synthetic_model,
    write_synthetic_checkpoint,
)
from dassl.config import extend_cfg, get_cfg_default  # noqa: E402
from dassl.data.datasets import Datum  # noqa: E402
from dassl.engine import TRAINER_REGISTRY, build_trainer  # noqa: E402
from dassl.utils import set_random_seed  # noqa: E402
from datasets.synthetic import TINY_IMAGES, write_tiny_image_dataset  # noqa: E402
from trainers import clip_base  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from clip_speed import best_rate  # noqa: E402
from decode_once import time_loader, train_loader_cfg, write_jpegs  # noqa: E402
from grid_cost import FEATURE_LINE  # noqa: E402
from train_speed import time_setting  # noqa: E402

ACCURACY_LINE = re.compile(r"\* accuracy: ([\d.]+)%")
PRECISIONS = ("fp32", "fp16", "amp")
TOLERANCE_POINTS = 0.5
CONFIGS = {  # the shipped config each method's runs start from
    "TaskRes": "TaskRes/adam_lr2e-4_B256_ep200.yaml",
    "CoOp": "CoOp/rn50.yaml",
    "CLIP_Adapter": "CLIP_Adapter/rn50.yaml",
}


@dataclass(frozen=True)
class Sizes:
    """Everything that differs between the GPU run and the CPU proof of the script."""

    encoders: dict[str, tuple[str, dict[str, Any]]]  # label -> (arch, dims)
    precision_clip: str  # the encoders' label the precision runs use
    precision_data: tuple[int, tuple[int, int, int], int]  # classes, per class, image px
    precision_epochs: int
    precision_batch: int
    # Whether the accuracy gap decides PASS/FAIL: not on the CPU's tiny test split, where one
    # image is several points and fp16 on the CPU is not what a GPU computes.
    judge_accuracy: bool
    long_epochs: int  # the long TaskRes fp16 run, on 2 shots per class
    coop_epochs: int
    jpegs: int  # JPEGs of the epoch measurements
    jpeg_size: tuple[int, int]
    workers: tuple[int, ...]  # loader worker counts; the epoch runs with the last
    loader_epochs: int
    encoder_batch: int
    encoder_batches: int
    memory_classes: int
    memory_steps: int
    batches: dict[str, int] = field(
        default_factory=lambda: {"TaskRes": 256, "CoOp": 32, "CLIP_Adapter": 32}
    )


GPU = Sizes(
    encoders={"RN50": ("RN", RN50_DIMS), "ViT-B/16": ("ViT", VIT_B16_DIMS)},
    precision_clip="RN50",
    precision_data=(10, (16, 4, 30), 64),
    precision_epochs=10,
    precision_batch=32,
    judge_accuracy=True,
    long_epochs=200,
    coop_epochs=50,
    jpegs=2048,  # 8 full batches of 256
    jpeg_size=(400, 350),
    workers=(8, 16),
    loader_epochs=2,
    encoder_batch=256,
    encoder_batches=5,
    memory_classes=1000,
    memory_steps=3,
)
TINY = {"image_resolution": 32}
CPU = Sizes(
    encoders={"tiny RN": ("RN", TINY), "tiny ViT": ("ViT", TINY)},
    precision_clip="tiny ViT",
    precision_data=(3, (4, 2, 3), 32),
    precision_epochs=2,
    precision_batch=8,
    judge_accuracy=False,
    long_epochs=10,
    coop_epochs=4,
    jpegs=12,
    jpeg_size=(400, 350),
    workers=(0, 2),
    loader_epochs=1,
    encoder_batch=4,
    encoder_batches=1,
    memory_classes=20,
    memory_steps=1,
    batches={"TaskRes": 8, "CoOp": 4, "CLIP_Adapter": 4},
)


class Report:
    """Figures and verdicts to the console and the results file; everything else to the log."""

    def __init__(self, results: Path, log: TextIO) -> None:
        self.results = results.open("a")
        self.log = log
        self.failed: list[str] = []

    def line(self, text: str) -> None:
        print(text, flush=True)
        self.results.write(text + "\n")
        self.results.flush()

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.line(f"{'PASS' if ok else 'FAIL'} {name}: {detail}")
        if not ok:
            self.failed.append(name)

    @contextlib.contextmanager
    def section(self, title: str) -> Iterator[None]:
        """A section's figures; a crash is an ERROR line with its traceback (in the log), and
        the next section still runs (one run on a lent GPU must bring back all it can)."""
        self.line(f"\n== {title}")
        start = time.perf_counter()
        try:
            yield
        except Exception as err:  # reported; the next section runs
            traceback.print_exc(file=self.log)
            self.log.flush()
            self.line(f"ERROR {title}: {type(err).__name__}: {str(err)[:300]} (traceback in log)")
            self.failed.append(title)
        self.line(f"({title}: {time.perf_counter() - start:.1f} s)")

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """Trainer output (stdout, tqdm on stderr) goes to the log."""
        with contextlib.redirect_stdout(self.log), contextlib.redirect_stderr(self.log):
            yield
        self.log.flush()


# ---- set-up: configs, checkpoints, data ------------------------------------------------------


@dataclass
class Setup:
    device: torch.device
    sizes: Sizes
    work: Path
    report: Report
    checkpoints: dict[str, Path] = field(default_factory=dict)

    def checkpoint(self, label: str) -> Path:
        """The random CLIP `label` (written once)."""
        if label not in self.checkpoints:
            arch, dims = self.sizes.encoders[label]
            path = self.work / f"clip-{len(self.checkpoints)}.pt"
            self.checkpoints[label] = write_synthetic_checkpoint(path, arch=arch, **dims)
        return self.checkpoints[label]

    def cfg(self, method: str, backbone: Path, root: Path, out: str, **keys: Any) -> CfgNode:
        """The method's shipped config on `backbone` and the TinyImages data under `root`, with
        `keys` (KEY__SUB=value, or PREC for the method's node) on top."""
        cfg = extend_cfg(get_cfg_default())
        cfg.merge_from_file(str(REPO / "configs/trainers" / CONFIGS[method]))
        node = TRAINER_REGISTRY.get(method).CFG_NODE
        opts = {
            "TRAINER.NAME": method,
            "DATASET.NAME": "TinyImages",
            "DATASET.ROOT": str(root),
            "MODEL.BACKBONE.NAME": str(backbone),
            "USE_CUDA": self.device.type == "cuda",
            "OUTPUT_DIR": str(self.work / "runs" / out),
            "TRAINER.FEATURE_STORE.DIR": str(self.work / "store"),
            "SEED": 1,
            "TRAIN.PRINT_FREQ": 1000,
            "TRAIN.CHECKPOINT_FREQ": 0,
            "TEST.FINAL_MODEL": "last_step",
        }
        for key, value in keys.items():
            opts[f"TRAINER.{node}.PREC" if key == "PREC" else key.replace("__", ".")] = value
        for key, value in opts.items():
            cfg.merge_from_list([key, value])
        cfg.freeze()
        return cfg

    def build(self, cfg: CfgNode):
        set_random_seed(cfg.SEED)
        with self.report.quiet():
            return build_trainer(cfg)


@contextlib.contextmanager
def precision_on_cpu(device: torch.device) -> Iterator[None]:
    """On the CPU, run fp16 and amp as asked instead of falling back to fp32, so the CPU proof
    runs every path (torch runs fp16 weights and fp16 autocast on the CPU too)."""
    if device.type == "cuda":
        yield
        return
    original = clip_base.resolve_precision
    clip_base.resolve_precision = lambda requested, device: requested
    try:
        yield
    finally:
        clip_base.resolve_precision = original


def write_jpeg_dataset(root: Path, count: int, size: tuple[int, int]) -> list[Datum]:
    """`count` train JPEGs of `size` (decode_once.write_jpegs, 10 classes) as the TinyImages
    dataset under `root`, plus a tenth as many for val and test (one set: the epoch measurements
    only train, and the store's pass must find none of the train images stored); returns the
    train items."""
    image_dir = root / TINY_IMAGES.dataset_dir / TINY_IMAGES.image_folder
    image_dir.mkdir(parents=True)
    items = write_jpegs(image_dir, count + max(count // 10, 1), size)
    rows = [[Path(d.impath).name, d.label, f"class_{d.label}"] for d in items]
    split = {"train": rows[:count], "val": rows[count:], "test": rows[count:]}
    (root / TINY_IMAGES.dataset_dir / TINY_IMAGES.split_file).write_text(json.dumps(split))
    return items[:count]


def slug(label: str) -> str:
    """A folder name for a model label ("ViT-B/16" -> "ViT-B16")."""
    return label.replace("/", "").replace(" ", "-")


def trainer_accuracy(log_text: str) -> float:
    return float(ACCURACY_LINE.findall(log_text)[-1])


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# ---- precision -------------------------------------------------------------------------------


def train_and_test(setup: Setup, cfg: CfgNode) -> tuple[float, list[float], Any]:
    """Train `cfg`'s run: its final test accuracy, every step's loss, and the trainer."""
    trainer = setup.build(cfg)
    losses: list[float] = []
    step = trainer.forward_backward

    def recording_step(batch: dict) -> dict[str, float]:
        summary = step(batch)
        losses.append(summary["loss"])
        return summary

    trainer.forward_backward = recording_step
    trainer_log = Path(cfg.OUTPUT_DIR) / "console.txt"
    trainer_log.parent.mkdir(parents=True, exist_ok=True)
    with trainer_log.open("w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        trainer.train()
    text = trainer_log.read_text()
    setup.report.log.write(text)
    return trainer_accuracy(text), losses, trainer


def finite_run(setup: Setup, name: str, cfg: CfgNode) -> None:
    """PASS when every step's loss, the learned weights and the test logits are finite."""
    try:
        accuracy, losses, trainer = train_and_test(setup, cfg)
    except FloatingPointError as err:  # the engine refuses to save NaN weights
        setup.report.check(name, False, f"{err}")
        return
    weights = list(trainer.learnable().parameters())
    with setup.report.quiet():
        features, _ = trainer.encode_data_source(trainer.dm.dataset.test, "test")
    with torch.no_grad():
        logits = trainer.model(features.to(trainer.device))
    bad_losses = [i for i, loss in enumerate(losses) if not math.isfinite(loss)]
    finite = (
        not bad_losses
        and all(bool(torch.isfinite(p).all()) for p in weights)
        and bool(torch.isfinite(logits).all())
    )
    setup.report.check(
        name,
        finite and len(losses) > 0,
        f"{len(losses)} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}, non-finite losses at "
        f"steps {bad_losses[:5] or 'none'}, weights and test logits "
        f"{'finite' if finite else 'NOT finite'}, test accuracy {accuracy:.2f}%, "
        f"CLIP dtype {trainer.clip_model.dtype}",
    )


def precision_section(setup: Setup) -> None:
    sizes, report = setup.sizes, setup.report
    classes, per_class, image_px = sizes.precision_data
    root = setup.work / "precision_data"
    write_tiny_image_dataset(root, classes, per_class, image_size=image_px)
    backbone = setup.checkpoint(sizes.precision_clip)
    report.line(
        f"TaskRes, {sizes.precision_clip}-sized random CLIP, TinyImages {classes} classes x "
        f"{per_class} (train, val, test) images, {sizes.precision_epochs} epochs, batch "
        f"{sizes.precision_batch}, Adam lr 2e-3, exact protocol"
    )
    run = {
        "OPTIM__MAX_EPOCH": sizes.precision_epochs,
        "OPTIM__LR": 2e-3,
        "DATALOADER__TRAIN_X__BATCH_SIZE": sizes.precision_batch,
        "DATALOADER__NUM_WORKERS": min(4, max(sizes.workers)),
    }
    seeds = (1, 2, 3)
    accuracy: dict[str, list[float]] = {}
    for prec in PRECISIONS:
        accuracy[prec], first, last = [], [], []
        for seed in seeds:
            cfg = setup.cfg("TaskRes", backbone, root, f"prec-{prec}-{seed}", PREC=prec, SEED=seed,
                            **run)  # fmt: skip
            acc, losses, _ = train_and_test(setup, cfg)
            accuracy[prec].append(acc)
            first.append(losses[0])
            last.append(losses[-1])
        shown = ", ".join(f"{a:.2f}" for a in accuracy[prec])
        report.line(
            f"{prec:<5} test accuracy per seed {shown}; mean {mean(accuracy[prec]):.2f}%; train "
            f"loss first step {mean(first):.4f}, last {mean(last):.4f} (means over seeds)"
        )
    reference = mean(accuracy["fp32"])
    for prec in ("fp16", "amp"):
        gap = mean(accuracy[prec]) - reference
        detail = (
            f"mean {mean(accuracy[prec]):.2f}% vs {reference:.2f}% ({gap:+.2f} points; "
            f"tolerance {TOLERANCE_POINTS})"
        )
        if sizes.judge_accuracy:
            report.check(f"{prec} accuracy vs fp32", abs(gap) <= TOLERANCE_POINTS, detail)
        else:
            report.line(f"INFO {prec} accuracy vs fp32 (not judged at tiny CPU sizes): {detail}")

    shots = {"DATASET__NUM_SHOTS": 2, "DATALOADER__NUM_WORKERS": 0}
    cfg = setup.cfg("TaskRes", backbone, root, "long-taskres-fp16", PREC="fp16", SEED=1,
                    OPTIM__MAX_EPOCH=sizes.long_epochs, OPTIM__LR=2e-3, **shots)  # fmt: skip
    finite_run(setup, f"TaskRes fp16 {sizes.long_epochs} epochs on 2 shots finite", cfg)
    cfg = setup.cfg("CoOp", backbone, root, "coop-fp16", PREC="fp16", SEED=1,
                    OPTIM__MAX_EPOCH=sizes.coop_epochs, **shots)  # fmt: skip
    finite_run(setup, f"CoOp fp16 {sizes.coop_epochs} epochs on 2 shots finite", cfg)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


# ---- where an epoch's time goes ---------------------------------------------------------------


def encoder_rates(setup: Setup, label: str, batch: int) -> dict[str, float]:
    """Images/s of `label`'s image encoder alone on random images, per precision (fastest of the
    timed batches; the precisions take turns, as clip_speed.py does)."""
    arch, dims = setup.sizes.encoders[label]
    model = build_synthetic_model(arch, **dims)
    half = copy.deepcopy(model)
    convert_weights(half)  # upstream's fp16 layout, as PREC fp16
    fp32, fp16 = model.visual.to(setup.device), half.visual.to(setup.device)
    size = fp32.input_resolution
    images = torch.randn(batch, 3, size, size, device=setup.device)
    images_half = images.half()

    def amp() -> torch.Tensor:
        with torch.autocast(setup.device.type, dtype=torch.float16):
            return fp32(images)

    with torch.inference_mode():
        rates = best_rate(
            [lambda: fp32(images), lambda: fp16(images_half), amp],
            batch,
            setup.sizes.encoder_batches,
            lambda: synchronize(setup.device),
            time.perf_counter,
        )
    return dict(zip(PRECISIONS, rates))


def epoch_section(setup: Setup) -> None:
    sizes, report = setup.sizes, setup.report
    root = setup.work / "jpeg_data"
    start = time.perf_counter()
    items = write_jpeg_dataset(root, sizes.jpegs, sizes.jpeg_size)
    batch, workers = sizes.batches["TaskRes"], max(sizes.workers)
    report.line(
        f"{len(items)} JPEGs of {sizes.jpeg_size[0]}x{sizes.jpeg_size[1]} written in "
        f"{time.perf_counter() - start:.1f} s; batch {batch}; {torch.get_num_threads()} torch "
        "threads"
    )
    loader_cfg = train_loader_cfg(batch)
    loader: dict[bool, float] = {}
    for count in sizes.workers:
        loader_cfg.DATALOADER.NUM_WORKERS = count
        for decode in (False, True):
            with report.quiet():
                rate, note = time_loader(loader_cfg, items, decode, sizes.loader_epochs)
            if count == workers:
                loader[decode] = rate
            report.line(
                f"loader  workers {count:>2} decode-once {'on ' if decode else 'off'} "
                f"{rate:8.1f} images/s ({note})"
            )
    for label in sizes.encoders:
        rates = encoder_rates(setup, label, batch)
        shown = ", ".join(f"{prec} {rate:.1f}" for prec, rate in rates.items())
        report.line(f"encoder {label} alone, batch {batch}: images/s {shown}")
        epoch_and_store(setup, label, root, len(items), loader[True], rates["fp16"], workers)
        free_memory()


def epoch_and_store(setup: Setup, label: str, root: Path, images: int, loader_rate: float,
                    encoder_rate: float, workers: int) -> None:  # fmt: skip
    """One TaskRes epoch (the shipped config: fp16, batch 256, exact protocol, decode-once on),
    timed as its second of two epochs; then the feature store's encoding pass over the train
    images and its read-back."""
    report = setup.report
    cfg = setup.cfg("TaskRes", setup.checkpoint(label), root, f"epoch-{slug(label)}",
                    OPTIM__MAX_EPOCH=2, DATALOADER__NUM_WORKERS=workers,
                    DATALOADER__TRAIN_X__BATCH_SIZE=setup.sizes.batches["TaskRes"],
                    DATALOADER__TEST__BATCH_SIZE=setup.sizes.batches["TaskRes"])  # fmt: skip
    with report.quiet():
        epochs, _ = time_setting(cfg)
    batch = cfg.DATALOADER.TRAIN_X.BATCH_SIZE
    trained = images // batch * batch if images >= batch else images  # the loader drops the rest
    epoch_rate = trained / epochs[-1]
    report.line(
        f"epoch   {label} TaskRes exact fp16, {workers} workers: epochs "
        f"{', '.join(f'{t:.2f}' for t in epochs)} s; the last {epoch_rate:.1f} images/s "
        f"({trained} images an epoch)"
    )
    bound, other = ("loader", "encoder") if loader_rate < encoder_rate else ("encoder", "loader")
    slower, faster = sorted((loader_rate, encoder_rate))
    report.line(
        f"bound   {label}: the {bound} ({slower:.1f} images/s alone; the {other} "
        f"{faster:.1f}); the epoch runs at {epoch_rate:.1f} images/s, "
        f"{100 * epoch_rate / slower:.0f}% of the {bound}'s rate"
    )

    trainer = setup.build(cfg)
    train_x = trainer.dm.dataset.train_x
    for what in ("encoding pass", "read back"):
        seconds, (split, encoded, stored) = _captured(
            setup, lambda: trainer.encode_data_source(train_x, "train")
        )
        report.line(
            f"store   {label} {what} ({split}, test transform, batch "
            f"{trainer.cfg.DATALOADER.TEST.BATCH_SIZE}, {workers} workers): {encoded} encoded, "
            f"{stored} from the store, {images / seconds:.1f} images/s"
        )


def _captured(setup: Setup, fn: Callable[[], Any]) -> tuple[float, tuple[str, int, int]]:
    """Seconds `fn` took and its "Image features" line (split, encoded, from the store)."""
    buffer = tempfile.TemporaryFile("w+")
    start = time.perf_counter()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(setup.report.log):
        fn()
    seconds = time.perf_counter() - start
    buffer.seek(0)
    text = buffer.read()
    setup.report.log.write(text)
    split, encoded, stored = FEATURE_LINE.findall(text)[-1]
    return seconds, (split, int(encoded), int(stored))


# ---- peak memory -------------------------------------------------------------------------------


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def memory_section(setup: Setup) -> None:
    sizes, report = setup.sizes, setup.report
    classes = sizes.memory_classes
    root = setup.work / "memory_data"
    write_tiny_image_dataset(root, classes, (1, 1, 1), image_size=32)
    label = next(iter(sizes.encoders))
    cuda = setup.device.type == "cuda"
    report.line(
        f"{classes} classes, 1 image each, {label}-sized random CLIP, {sizes.memory_steps} "
        "training steps after the build; "
        + ("torch.cuda.max_memory_allocated" if cuda else "CPU: process RSS, NOT a GPU figure")
    )
    for method, batch in sizes.batches.items():
        cfg = setup.cfg(method, setup.checkpoint(label), root, f"memory-{method}",
                        DATALOADER__TRAIN_X__BATCH_SIZE=batch,
                        DATALOADER__NUM_WORKERS=0)  # fmt: skip
        trainer = setup.build(cfg)
        held = torch.cuda.memory_allocated() if cuda else rss()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        trainer.num_batches = len(trainer.train_loader_x)
        with report.quiet():
            for index, data in enumerate(islice(trainer.train_loader_x, sizes.memory_steps)):
                trainer.batch_idx = index
                trainer.forward_backward(data)
        synchronize(setup.device)
        peak = torch.cuda.max_memory_allocated() if cuda else rss()
        kind = "peak allocated" if cuda else "RSS after the steps"
        report.line(
            f"memory  {method} PREC {trainer.precision}, batch {batch}: {kind} "
            f"{peak / 2**20:.0f} MiB (held after the build {held / 2**20:.0f} MiB)"
        )
        del trainer
        free_memory()


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


# ---- main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True, help="file the figures go to")
    parser.add_argument("--cpu", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument(
        "--sections", nargs="+", default=["memory", "precision", "epoch"],
        choices=["memory", "precision", "epoch"],
    )  # fmt: skip
    args = parser.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        sys.exit("no CUDA device: run on a GPU machine, or pass --cpu for the tiny CPU check")
    device = torch.device("cpu" if args.cpu else "cuda")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as train.py sets it for CUDA runs
    args.results.parent.mkdir(parents=True, exist_ok=True)
    log_path = args.results.with_suffix(".log")
    with log_path.open("a") as log, tempfile.TemporaryDirectory() as tmp:
        report = Report(args.results, log)
        name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (tiny sizes)"
        report.line(f"gpu_check.py on {name}; torch {torch.__version__}; log: {log_path.name}")
        setup = Setup(device, CPU if args.cpu else GPU, Path(tmp), report)
        sections = {"precision": precision_section, "epoch": epoch_section,
                    "memory": memory_section}  # fmt: skip
        with precision_on_cpu(device):
            for title in args.sections:
                with report.section(title):
                    sections[title](setup)
        verdict = f"FAILED: {', '.join(report.failed)}" if report.failed else "all checks passed"
        report.line(f"\ngpu_check.py: {verdict}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
