"""Wall time per epoch of TaskRes training with and without the image-feature caches.

A ViT-B/16-sized CLIP with random weights and a synthetic image dataset stand in for the real
ones (no download needed); the work per image is that of the real model. Three settings:

  none        every epoch re-encodes the train images and, for best-val selection, the val images
  eval        val/test features encoded once (TRAINER.FEATURE_CACHE.EVAL, the default)
  train+eval  train features of un-augmented images encoded once as well (FEATURE_CACHE.TRAIN;
              this changes the protocol: no augmentation)

Usage: python benchmarks/train_speed.py [--epochs 3] [--classes 5] [--shots 4] [--device cpu]
"""

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import torch
from yacs.config import CfgNode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trainers  # noqa: E402,F401  (registers the trainers and their config keys)
from clip.synthetic import VIT_B16_DIMS, write_synthetic_checkpoint  # noqa: E402
from dassl.config import extend_cfg, get_cfg_default  # noqa: E402
from dassl.engine import build_trainer  # noqa: E402
from dassl.utils import set_random_seed  # noqa: E402
from datasets.synthetic import write_tiny_image_dataset  # noqa: E402
from trainers.clip_base import PRECISIONS  # noqa: E402

SETTINGS = {"none": (False, False), "eval": (True, False), "train+eval": (True, True)}


def make_cfg(
    args: argparse.Namespace, backbone: Path, root: Path, out: Path, setting: str
) -> CfgNode:
    cache_eval, cache_train = SETTINGS[setting]
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.TRAINER.NAME = "TaskRes"
    cfg.TRAINER.TaskRes.PREC = args.prec
    cfg.TRAINER.FEATURE_CACHE.EVAL = cache_eval
    cfg.TRAINER.FEATURE_CACHE.TRAIN = cache_train
    cfg.TRAINER.FEATURE_STORE.ENABLED = False  # one run's own cost (grid_cost.py measures it)
    cfg.MODEL.BACKBONE.NAME = str(backbone)
    cfg.DATASET.NAME = "TinyImages"
    cfg.DATASET.ROOT = str(root)
    cfg.INPUT.SIZE = (224, 224)
    cfg.INPUT.TRANSFORMS = ["random_resized_crop", "random_flip", "normalize"]
    cfg.DATALOADER.NUM_WORKERS = args.workers
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = args.batch_size
    cfg.DATALOADER.TEST.BATCH_SIZE = args.batch_size
    cfg.OPTIM.NAME = "adam"
    cfg.OPTIM.LR = 2e-4
    cfg.OPTIM.MAX_EPOCH = args.epochs
    cfg.TEST.FINAL_MODEL = "best_val"  # evaluates val after every epoch, as best-val runs do
    cfg.TRAIN.CHECKPOINT_FREQ = 0
    cfg.OUTPUT_DIR = str(out / setting)
    cfg.USE_CUDA = args.device == "cuda"
    cfg.SEED = 1
    cfg.freeze()
    return cfg


def time_setting(cfg: CfgNode) -> tuple[list[float], float]:
    """Seconds of each epoch (train + per-epoch val) and of the whole train() call."""
    set_random_seed(cfg.SEED)
    with contextlib.redirect_stdout(io.StringIO()):
        trainer = build_trainer(cfg)
    epoch_times: list[float] = []
    before_epoch, after_epoch = trainer.before_epoch, trainer.after_epoch

    def timed_before() -> None:
        epoch_times.append(time.perf_counter())
        before_epoch()

    def timed_after() -> None:
        after_epoch()
        epoch_times[-1] = time.perf_counter() - epoch_times[-1]

    trainer.before_epoch, trainer.after_epoch = timed_before, timed_after
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.train()
    return epoch_times, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--shots", type=int, default=4, help="train images per class")
    parser.add_argument("--val", type=int, default=2, help="val images per class")
    parser.add_argument("--test", type=int, default=4, help="test images per class")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--prec", choices=list(PRECISIONS), default="fp32")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        backbone = write_synthetic_checkpoint(tmp / "vit_b16_random.pt", arch="ViT", **VIT_B16_DIMS)
        write_tiny_image_dataset(
            tmp / "data", args.classes, (args.shots, args.val, args.test), image_size=224
        )
        print(
            f"TaskRes, ViT-B/16-sized random CLIP, {args.classes} classes x "
            f"({args.shots} train, {args.val} val, {args.test} test) images, {args.epochs} epochs, "
            f"batch {args.batch_size}, {args.device} ({torch.get_num_threads()} threads), "
            f"PREC={args.prec}"
        )
        print(f"{'setting':<12} {'epoch times (s)':<32} {'mean/epoch':>10} {'total':>8}")
        for setting in args.settings:
            cfg = make_cfg(args, backbone, tmp / "data", tmp / "out", setting)
            epochs, total = time_setting(cfg)
            shown = ", ".join(f"{t:.2f}" for t in epochs)
            mean = sum(epochs) / len(epochs)
            print(f"{setting:<12} {shown:<32} {mean:>10.2f} {total:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
