"""Which bounds an exact-protocol epoch: the loader or the image encoder? And what decode-once buys.

The exact protocol reads, augments and encodes every train image every epoch. This measures the
two halves apart, on the CPU:

  loader   images/s of the real train loader (random resized crop to 224, flip, normalize) over
           JPEGs of a typical few-shot benchmark size, with TRAINER.DECODE_ONCE_MB off and on,
           for each worker count; plus the memory decode-once holds, and what each loader worker
           holds privately (copy-on-write pages it copied) while the decoded pixels are shared
  encoder  images/s of a ViT-B/32-sized CLIP image encoder on train batches

    python benchmarks/decode_once.py [--images 64] [--epochs 3] [--workers 0 2] [--size 500 375]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trainers  # noqa: E402,F401  (registers the trainers' config keys)
from clip.synthetic import VIT_B32_DIMS, build_synthetic_model  # noqa: E402
from dassl.config import extend_cfg, get_cfg_default  # noqa: E402
from dassl.data.data_manager import build_data_loader  # noqa: E402
from dassl.data.datasets import Datum  # noqa: E402
from dassl.data.transforms import build_transform  # noqa: E402
from trainers.decoded import MB, DecodeOnceWrapper  # noqa: E402


def write_jpegs(folder: Path, count: int, size: tuple[int, int]) -> list[Datum]:
    rng = np.random.default_rng(0)
    items = []
    for i in range(count):
        # Smooth colour fields plus noise: JPEG files of realistic size and decode cost.
        base = rng.integers(0, 255, (size[1] // 25 + 1, size[0] // 25 + 1, 3)).astype(np.uint8)
        image = Image.fromarray(base).resize(size, Image.BILINEAR)
        noisy = np.asarray(image, dtype=np.int16) + rng.integers(-20, 20, (size[1], size[0], 3))
        path = folder / f"{i:04d}.jpg"
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, quality=90)
        items.append(Datum(impath=str(path), label=i % 10))
    return items


def private_mb(pid: int) -> float:
    """Memory a process holds privately (pages it wrote or copied), from /proc."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total / 1024


def train_loader_cfg(batch_size: int):
    """The exact protocol's train transform at CLIP's 224 px, with `batch_size` images a batch."""
    cfg = extend_cfg(get_cfg_default())
    cfg.INPUT.SIZE = (224, 224)
    cfg.INPUT.INTERPOLATION = "bicubic"
    cfg.INPUT.TRANSFORMS = ("random_resized_crop", "random_flip", "normalize")
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = batch_size
    return cfg


def time_loader(cfg, items: list[Datum], decode: bool, epochs: int) -> tuple[float, str]:
    with contextlib.redirect_stdout(io.StringIO()):
        tfm = build_transform(cfg, is_train=True)
    loader = build_data_loader(
        cfg, "RandomSampler", items, cfg.DATALOADER.TRAIN_X.BATCH_SIZE, tfm=tfm, is_train=True,
        dataset_wrapper=DecodeOnceWrapper,
    )  # fmt: skip
    note = "decoded every epoch"
    if decode:
        note = f"decoded once: {loader.dataset.decode() / MB:.0f} MB of pixels in the main process"
    seen, worker_private = 0, []
    start = time.perf_counter()
    for _ in range(epochs):
        for i, batch in enumerate(loader):
            seen += len(batch["img"])
            if i == len(loader) - 1 and cfg.DATALOADER.NUM_WORKERS:
                worker_private = [private_mb(p.pid) for p in multiprocessing.active_children()]
    rate = seen / (time.perf_counter() - start)
    if worker_private:
        note += f"; workers hold {', '.join(f'{m:.0f}' for m in worker_private)} MB privately"
    return rate, note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 2])
    parser.add_argument("--size", nargs=2, type=int, default=[500, 375], help="JPEG width height")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = train_loader_cfg(args.batch_size)
    print(f"{args.images} JPEGs of {args.size[0]}x{args.size[1]}, batch {args.batch_size}, "
          f"{args.epochs} epochs, {args.threads} torch threads")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        items = write_jpegs(Path(tmp), args.images, tuple(args.size))
        for workers in args.workers:
            cfg.DATALOADER.NUM_WORKERS = workers
            for decode in (False, True):
                rate, note = time_loader(cfg, items, decode, args.epochs)
                label = "on " if decode else "off"
                print(f"loader   workers {workers}  decode-once {label} {rate:7.1f} images/s", note)

    encoder = build_synthetic_model("ViT", **VIT_B32_DIMS).visual.eval()
    images = torch.randn(args.batch_size, 3, 224, 224)
    with torch.no_grad():
        encoder(images[:2])
        start = time.perf_counter()
        for _ in range(2):
            encoder(images)
    rate = 2 * args.batch_size / (time.perf_counter() - start)
    print(f"encoder  ViT-B/32-sized, batch {args.batch_size}: {rate:7.1f} images/s")


if __name__ == "__main__":
    main()
