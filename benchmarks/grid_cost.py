"""What a grid costs: image-encoder forward passes and wall time per run and protocol, store on/off.

A small grid (TaskRes, or --methods; x seeds x shot counts) on a synthetic dataset
(datasets/synthetic.py, drawn at 224 px) with a ViT-B/32-sized CLIP of random weights, on
the CPU. For every protocol it runs the grid twice: with the feature store off, and with one fresh
store shared by the grid's runs. Each run is built and trained in this process; a forward hook on
CLIP's image encoder counts the images it encodes, and the run's "Image features (<split>)" lines
say for which split.

    python benchmarks/grid_cost.py                          # exact, views:10, plain; 2 x 3 runs
    python benchmarks/grid_cost.py --protocols views:10 --seeds 1 --shots 16 --epochs 200 \\
        --test 4 --stores off                               # one views:10 run, encoding share
    python benchmarks/grid_cost.py --methods TaskRes CLIP_Adapter CoOp LinearProbeCLIP \
        ZeroshotCLIP --protocols plain --stores on --seeds 1 2 3 --shots 1 2 4 8 16 --epochs 1

The CLIP weights are random and the dataset tiny: the numbers measure cost, not accuracy.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trainers  # noqa: E402,F401  (registers the trainers and their config keys)
from clip.synthetic import VIT_B32_DIMS, write_synthetic_checkpoint  # noqa: E402
from dassl.config import extend_cfg, get_cfg_default  # noqa: E402
from dassl.engine import TRAINER_REGISTRY, build_trainer  # noqa: E402
from dassl.utils import set_random_seed  # noqa: E402
from datasets.synthetic import write_tiny_image_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FEATURE_LINE = re.compile(r"Image features \((\w+)\): (\d+) encoded, (\d+) from the feature store")


@dataclass
class RunCost:
    method: str
    protocol: str
    store: str
    seed: int
    shots: int
    encoded: dict[str, int]  # split -> images encoded, from the run's log lines
    forwards: int  # images through the image encoder (the hook)
    encoder_s: float  # seconds inside the image encoder
    wall_s: float  # build + train + test


def make_cfg(args: argparse.Namespace, paths: dict[str, Path], method: str, protocol: str,
             store: str, seed: int, shots: int):  # fmt: skip
    """TaskRes's shipped config (adam, lr 2e-3, batch 256) for every method: the cost is the
    point here, not each method's tuning."""
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(str(REPO / "configs/trainers/TaskRes/adam_lr2e-3_B256_ep100.yaml"))
    cfg.merge_from_list(
        [
            "TRAINER.NAME", method,
            "DATASET.NAME", "TinyImages",
            "MODEL.BACKBONE.NAME", str(paths["clip"]),
            "DATASET.ROOT", str(paths["data"]),
            "DATASET.NUM_SHOTS", shots,
            "SEED", seed,
            "USE_CUDA", False,
            "OPTIM.MAX_EPOCH", args.epochs,
            "DATALOADER.NUM_WORKERS", args.workers,
            "TRAIN.PRINT_FREQ", 1000,
            f"TRAINER.{TRAINER_REGISTRY.get(method).CFG_NODE}.PREC", "fp32",
            "TRAINER.PROTOCOL", protocol,
            "TRAINER.FEATURE_STORE.ENABLED", store == "on",
            "TRAINER.FEATURE_STORE.DIR", str(paths["store"]),
            "OUTPUT_DIR", str(paths["out"] / f"{method}-{protocol}-{store}-{shots}-{seed}"),
        ]
    )  # fmt: skip
    cfg.freeze()
    return cfg


def run_one(cfg, protocol: str, store: str) -> RunCost:
    """Build and train one run, counting what goes through the image encoder."""
    forwards, inside = [0], [0.0]

    def before(_module, args) -> None:
        forwards[0] += len(args[0])
        inside[0] -= time.perf_counter()

    def after(_module, _args, _out) -> None:
        inside[0] += time.perf_counter()

    log = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(io.StringIO()):
        set_random_seed(cfg.SEED)
        trainer = build_trainer(cfg)
        trainer.clip_model.visual.register_forward_pre_hook(before)
        trainer.clip_model.visual.register_forward_hook(after)
        trainer.train()
    wall = time.perf_counter() - start
    encoded: dict[str, int] = {}
    for split, n, _ in FEATURE_LINE.findall(log.getvalue()):
        encoded[split] = encoded.get(split, 0) + int(n)
    return RunCost(
        cfg.TRAINER.NAME, protocol, store, cfg.SEED, cfg.DATASET.NUM_SHOTS, encoded, forwards[0],
        inside[0], wall,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["TaskRes"])
    parser.add_argument("--protocols", nargs="+", default=["exact", "views:10", "plain"])
    parser.add_argument("--stores", nargs="+", choices=["off", "on"], default=["off", "on"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--shots", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--val", type=int, default=4, help="val images per class")
    parser.add_argument("--test", type=int, default=2, help="test images per class")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = {"data": tmp / "data", "out": tmp / "out"}
        per_class = (max(args.shots), args.val, args.test)
        write_tiny_image_dataset(paths["data"], args.classes, per_class, image_size=224)
        paths["clip"] = write_synthetic_checkpoint(tmp / "vit_b32.pt", arch="ViT", **VIT_B32_DIMS)
        print(
            f"Grid: {' '.join(args.methods)} x seeds {args.seeds} x shots {args.shots}, "
            f"{args.classes} classes "
            f"({per_class[0]} train, {per_class[1]} val, {per_class[2]} test images each), "
            f"{args.epochs} epochs, ViT-B/32-sized random CLIP, CPU, {args.threads} threads, "
            f"{args.workers} loader workers"
        )
        runs: list[RunCost] = []
        for protocol in args.protocols:
            for store in args.stores:
                paths["store"] = tmp / f"store-{protocol}-{store}"  # fresh per grid
                for method in args.methods:
                    for seed in args.seeds:
                        for shots in args.shots:
                            cfg = make_cfg(args, paths, method, protocol, store, seed, shots)
                            runs.append(run_one(cfg, protocol, store))
                            print(row(runs[-1]), flush=True)
    print()
    print_tables(runs)


def row(run: RunCost) -> str:
    splits = ", ".join(f"{k} {v}" for k, v in run.encoded.items())
    return (
        f"{run.method} {run.protocol} store {run.store} seed {run.seed} {run.shots:>2} shots: "
        f"{run.forwards:>5} images encoded ({splits}), {run.encoder_s:6.1f} s in the encoder, "
        f"{run.wall_s:6.1f} s wall"
    )


def print_tables(runs: list[RunCost]) -> None:
    totals: dict[tuple[str, str], list[RunCost]] = {}
    for run in runs:
        totals.setdefault((run.protocol, run.store), []).append(run)
    table = []
    for (protocol, store), group in totals.items():
        test = sum(r.encoded.get("test", 0) for r in group)
        train = sum(r.encoded.get("train", 0) for r in group)
        table.append(
            [
                protocol,
                store,
                len(group),
                train,
                test,
                sum(r.forwards for r in group),
                f"{sum(r.encoder_s for r in group):.1f}",
                f"{sum(r.wall_s for r in group):.1f}",
                f"{sum(r.wall_s for r in group) / max(sum(r.encoder_s for r in group), 1e-9):.2f}",
            ]
        )
    headers = ["protocol", "store", "runs", "train enc.", "test enc.", "all enc.", "encoder s",
               "wall s", "wall/encoder"]  # fmt: skip
    print(tabulate(table, headers=headers, disable_numparse=True))


if __name__ == "__main__":
    main()
