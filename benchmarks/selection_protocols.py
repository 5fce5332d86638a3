"""One TaskRes grid selected three ways: paper-fixed alpha, searched on val, validation-free.

Runs the demo's setup (tools/demo.py: its random-weight tiny CLIP and synthetic shapes, written
in Caltech101's and DTD's layouts) through ``python -m tools.sweep``, three grids that mirror the
shipped ones (configs/grids/taskres_regular.yaml, taskres_search.yaml,
taskres_validation_free.yaml) on the demo's learning-rate scale (10x the shipped values, as the
demo's TaskRes: the tiny model barely moves at 2e-3 in a few epochs):

- paper-fixed: alpha 0.5 (the paper's for both datasets), lr 0.02, the last epoch;
- searched on val: alpha in {0.25, 0.5, 1.0} x lr in {0.002, 0.02}, each candidate scored on the
  few-shot val split only, the winner alone tested;
- validation-free: alpha 0.5, lr 0.02, no val split (DATASET.VAL_USE none; here the same runs as
  paper-fixed, whose last-epoch selection reads no val either and whose alpha is 0.5 for both
  datasets), and with the few-shot val images trained on (DATASET.VAL_USE train).

Prints the test accuracy per dataset as mean +- std over seeds (population std, as
tools/parse_test_res.py), each grid's wall time and train.py runs, and the search grid's time
against the single grid's. The CLIP weights are random and the images synthetic: the figures
show what the protocols cost and that they run, nothing about real benchmarks.

    python benchmarks/selection_protocols.py --output /tmp/selection   # 3 seeds, 4 shots
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.synthetic import Layout, write_synthetic_dataset  # noqa: E402
from tools.demo import (  # noqa: E402
    CLASSES,
    IMAGE_SIZE,
    prepare_output,
    write_demo_checkpoint,
    write_demo_dataset,
)
from tools.parse_test_res import mean_and_spread  # noqa: E402
from tools.sweep.cli import main as sweep_main  # noqa: E402

DTD = Layout("dtd", "images", "split_zhou_DescribableTextures.json", "image_{:04d}.jpg")
DATASETS = ("caltech101", "dtd")
PER_CLASS = (8, 4, 12)  # the demo's train, val, test images per class

COMMON = """
trainer: TaskRes
config: TaskRes/adam_lr2e-3_B256_ep100
datasets: [caltech101, dtd]
shots: [{shots}]
seeds: {seeds}
args: [--enhanced-base, none]
"""
# Each way's grid file name and output folder.
NAMES = {
    "paper-fixed alpha": "paper_fixed",
    "searched on val": "searched",
    "validation-free": "validation_free",
    "validation-free, val images trained on": "validation_free_train",
}
GRIDS = {
    "paper-fixed alpha": """
vars: {{alpha: "0.5", lr: "0.02"}}
opts:
  DATASET.NUM_SHOTS: "{{shots}}"
  TRAINER.TaskRes.RESIDUAL_SCALE: "{{alpha}}"
  OPTIM.LR: "{{lr}}"
  RUN.HYPERPARAMETERS_FROM: paper
output: fixed/{{dataset}}/seed{{seed}}
""",
    "searched on val": """
opts:
  DATASET.NUM_SHOTS: "{{shots}}"
  TRAINER.TaskRes.RESIDUAL_SCALE: "{{alpha}}"
  OPTIM.LR: "{{lr}}"
search:
  space: {{alpha: ["0.25", "0.5", "1.0"], lr: ["0.002", "0.02"]}}
  val: fewshot
  output: searched/{{dataset}}/seed{{seed}}
output: candidates/{{dataset}}/lr{{lr}}_alpha{{alpha}}/seed{{seed}}
""",
    "validation-free": """
vars: {{alpha: "0.5", lr: "0.02"}}
opts:
  DATASET.NUM_SHOTS: "{{shots}}"
  DATASET.VAL_USE: none
  TRAINER.TaskRes.RESIDUAL_SCALE: "{{alpha}}"
  OPTIM.LR: "{{lr}}"
output: validation_free/{{dataset}}/seed{{seed}}
""",
    "validation-free, val images trained on": """
vars: {{alpha: "0.5", lr: "0.02"}}
opts:
  DATASET.NUM_SHOTS: "{{shots}}"
  DATASET.VAL_USE: train
  TRAINER.TaskRes.RESIDUAL_SCALE: "{{alpha}}"
  OPTIM.LR: "{{lr}}"
output: validation_free_train/{{dataset}}/seed{{seed}}
""",
}


def test_accuracies(folder: Path) -> dict[str, list[float]]:
    """Test accuracy per dataset of every test result (result.json of split test) below
    ``folder``; candidates, which test val, are left out."""
    found: dict[str, list[float]] = {}
    for path in sorted(folder.rglob("result.json")):
        record = json.loads(path.read_text())
        if record.get("split") == "test":
            dataset = next(d for d in DATASETS if d in path.parts)
            found.setdefault(dataset, []).append(record["accuracy"])
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="a new or demo-owned folder")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    out = args.output.resolve()
    prepare_output(out)
    data = out / "data"
    write_demo_dataset(data, per_class=PER_CLASS)
    write_synthetic_dataset(data, CLASSES, DTD, PER_CLASS, IMAGE_SIZE, seed=1)
    checkpoint = write_demo_checkpoint(out / "clip_tiny_vit.pt")
    overrides = [
        "MODEL.BACKBONE.NAME", str(checkpoint), "INPUT.SIZE", f"({IMAGE_SIZE}, {IMAGE_SIZE})",
        "USE_CUDA", "False", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "8",
        "DATALOADER.TEST.BATCH_SIZE", "64", "OPTIM.MAX_EPOCH", str(args.epochs),
        "TRAINER.TaskRes.PREC", "fp32", "TRAINER.PROTOCOL", "plain",
        "TRAINER.FEATURE_STORE.DIR", str(out / "feature_store"),
    ]  # fmt: skip
    common = COMMON.format(shots=args.shots, seeds=json.dumps(args.seeds))
    rows, seconds = [], {}
    for way, body in GRIDS.items():
        name = NAMES[way]
        grid = out / "grids" / f"{name}.yaml"
        grid.parent.mkdir(parents=True, exist_ok=True)
        grid.write_text(common + body.format())
        runs = out / "runs" / name
        argv = [str(grid), "--root", str(data), "--output-root", str(runs)]
        argv += ["--workers", str(args.workers), *overrides]
        print(f"{way}: python -m tools.sweep {grid.name} ...", flush=True)
        start = time.monotonic()
        with (out / f"{name}.sweep.txt").open("w") as log, contextlib.redirect_stdout(log):
            status = sweep_main(argv)
        seconds[way] = time.monotonic() - start
        if status != 0:
            print(f"  the sweep failed (status {status}); see {out / f'{name}.sweep.txt'}")
            return 1
        accuracies = test_accuracies(runs)
        cells = []
        for dataset in DATASETS:
            mean, std = mean_and_spread(accuracies[dataset])
            cells.append(f"{mean:.2f} +- {std:.2f} (n={len(accuracies[dataset])})")
        train_runs = sum(1 for _ in runs.rglob("config.yaml"))
        rows.append([way, *cells, f"{seconds[way]:.0f}", train_runs])
    print()
    headers = ["selection", *(f"{d} test acc." for d in DATASETS), "grid time (s)", "runs"]
    print(tabulate(rows, headers=headers))
    single = seconds["paper-fixed alpha"]
    print(
        f"\nThe search grid took {seconds['searched on val'] / single:.1f}x the time of the "
        f"single grid ({seconds['searched on val']:.0f} s vs {single:.0f} s; "
        f"{args.shots} shots, seeds {' '.join(map(str, args.seeds))}, {args.epochs} epochs, "
        f"{args.workers} worker(s))."
    )
    print(f"Selection report of the search: {out}/runs/searched/sweeps/searched/search/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
