"""A small results grid for the tables and figures tests: two methods, two datasets, 1 and 16
shots, three seeds, plus zero-shot runs; and the cell text computed independently of the tool."""

from __future__ import annotations

import statistics
from pathlib import Path

from tests.tools.logs import write_run

# (trainer, dataset, shots) -> accuracy per seed 1, 2, 3
GRID = {
    ("TaskRes", "Caltech101", 16): [90.0, 91.0, 92.5],
    ("TaskRes", "DescribableTextures", 16): [60.0, 62.0, 67.0],
    ("TaskRes", "Caltech101", 1): [85.0, 86.0, 84.0],
    ("TaskRes", "DescribableTextures", 1): [50.0, 51.5, 49.0],
    ("CoOp", "Caltech101", 16): [89.0, 90.0, 88.5],
    ("CoOp", "DescribableTextures", 16): [58.0, 59.0, 64.0],
    ("CoOp", "Caltech101", 1): [80.0, 83.0, 82.0],
    ("CoOp", "DescribableTextures", 1): [40.0, 45.0, 44.0],
}
ZERO_SHOT = {"Caltech101": 86.3, "DescribableTextures": 42.3}


def expected(values: list[float]) -> str:
    """A cell as the text formats show it, computed independently of the tool."""
    mean = statistics.mean(values)
    if len(values) == 1:
        return f"{mean:.2f} (n=1)"
    return f"{mean:.2f} ± {statistics.pstdev(values):.2f} (n={len(values)})"


def per_seed_average(*columns: list[float]) -> list[float]:
    return [statistics.mean(values) for values in zip(*columns)]


def write_grid(root: Path) -> None:
    for (trainer, dataset, shots), accs in GRID.items():
        for seed, acc in enumerate(accs, start=1):
            write_run(
                root, f"{trainer}/{dataset}/{shots}/seed{seed}", acc,
                TRAINER__NAME=trainer, DATASET__NAME=dataset, DATASET__NUM_SHOTS=shots, SEED=seed,
            )  # fmt: skip
    for dataset, acc in ZERO_SHOT.items():
        write_run(
            root, f"zs/{dataset}", acc,
            TRAINER__NAME="ZeroshotCLIP2", DATASET__NAME=dataset, SEED=-1, RUN__EVAL_ONLY=True,
        )  # fmt: skip
