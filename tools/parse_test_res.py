"""Summarise test results of finished runs: mean and spread over seeds, and a table across datasets.

A run folder holds a Dassl log (``log.txt``, or ``log.txt-<timestamp>`` when an earlier log was
there). Its result is the last evaluation block (``=> result`` followed by ``* accuracy: X%`` and
the other metric lines) that belongs to the test split; blocks announced as another split
(``Evaluate on the *val* set``) are ignored. When a folder holds several logs, the newest one with
a result wins.

Runs named ``seed<N>`` are grouped into one setting (their parent folder), which is how every script
in scripts/ lays out its outputs, so pointing this tool at any folder above them works:

    python tools/parse_test_res.py output/FINAL/debug/caltech101/adam_lr2e-3_B256_ep100_1shots
    python tools/parse_test_res.py output/FINAL/debug --table            # datasets x shots
    python tools/parse_test_res.py output/dg/generalization_rn50 --table --columns setting
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate

RESULT_MARKER = "=> result"
METRIC_LINE = re.compile(r"\* (\w+): ([-+0-9.eE]+)%?")
SPLIT_LINE = re.compile(r"Evaluate on the \*(\w+)\* set")
SEED_DIR = re.compile(r"seed(\d+)")
SHOTS_PART = re.compile(r"(?:^|_)(\d+)shots?(?:_|$)")

# Dataset config names (configs/datasets/*.yaml) in the order the papers list them, with the
# registered DATASET.NAME of each so folders named either way are recognised.
DATASETS = {
    "imagenet": "ImageNet",
    "caltech101": "Caltech101",
    "oxford_pets": "OxfordPets",
    "stanford_cars": "StanfordCars",
    "oxford_flowers": "OxfordFlowers",
    "food101": "Food101",
    "fgvc_aircraft": "FGVCAircraft",
    "sun397": "SUN397",
    "dtd": "DescribableTextures",
    "eurosat": "EuroSAT",
    "ucf101": "UCF101",
    "imagenetv2": "ImageNetV2",
    "imagenet_sketch": "ImageNetSketch",
    "imagenet_a": "ImageNetA",
    "imagenet_r": "ImageNetR",
}
_DATASET_ALIASES = {k: k for k in DATASETS} | {v.lower(): k for k, v in DATASETS.items()}


class ResultsError(Exception):
    """Raised when the folders given cannot be summarised (the message says why and what to do)."""


@dataclass
class Run:
    """One run folder and the metrics of its test evaluation (None when it has not finished)."""

    path: Path
    log: Path | None
    metrics: dict[str, float] | None


@dataclass
class Setting:
    """Runs that differ only by seed."""

    path: Path
    runs: list[Run] = field(default_factory=list)

    def values(self, metric: str) -> list[float]:
        return [r.metrics[metric] for r in self.runs if r.metrics and metric in r.metrics]


def read_test_metrics(log_path: Path) -> dict[str, float] | None:
    """Metrics of the last test-split result block in one log, or None if it has none."""
    split = None
    last = None
    block = None  # metrics of the block being read, None outside a block
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            line = raw.strip()
            if block is not None:
                match = METRIC_LINE.fullmatch(line)
                if match:
                    block[match.group(1)] = float(match.group(2))
                    continue
                block = None
            if line == RESULT_MARKER:
                block = {}
                if split in (None, "test"):
                    last = block
                continue
            match = SPLIT_LINE.search(line)
            if match:
                split = match.group(1)
    return last if last else None


def log_files(run_dir: Path) -> list[Path]:
    """The Dassl logs directly inside a folder, oldest first."""
    logs = [p for p in run_dir.iterdir() if p.is_file() and p.name.startswith("log.txt")]
    return sorted(logs, key=lambda p: (p.stat().st_mtime, p.name))


def read_run(run_dir: Path) -> Run:
    """The newest result among a run folder's logs."""
    logs = log_files(run_dir) if run_dir.is_dir() else []
    for log in reversed(logs):
        metrics = read_test_metrics(log)
        if metrics is not None:
            return Run(run_dir, log, metrics)
    return Run(run_dir, logs[-1] if logs else None, None)


def collect_settings(root: Path) -> list[Setting]:
    """Every run below root (root included), grouped by setting, in path order."""
    if not root.is_dir():
        raise ResultsError(f"{root} is not a folder; give the output folder of a run or above it.")
    settings: dict[Path, Setting] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if not any(name.startswith("log.txt") for name in filenames):
            continue
        run_dir = Path(dirpath)
        is_seed = SEED_DIR.fullmatch(run_dir.name) and run_dir != root
        key = run_dir.parent if is_seed else run_dir
        settings.setdefault(key, Setting(key)).runs.append(read_run(run_dir))
    if not settings:
        raise ResultsError(
            f"no log.txt found under {root}; point this tool at the output folder of your runs "
            "(e.g. output/FINAL/debug)."
        )
    return sorted(settings.values(), key=lambda s: s.path)


def mean_and_spread(values: list[float], ci95: bool = False) -> tuple[float, float]:
    """Mean and population std (upstream's convention), or the 95% confidence half-width."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
    return mean, (1.96 * std / math.sqrt(n) if ci95 else std)


def describe_setting(setting: Setting, root: Path, metric: str, ci95: bool) -> str:
    """One summary line for a setting, plus a line per run that has no result yet."""
    name = _relative(setting.path, root)
    values = setting.values(metric)
    lines = []
    if values:
        mean, spread = mean_and_spread(values, ci95)
        label = "ci95" if ci95 else "std"
        per_run = ", ".join(
            f"{r.path.name} {r.metrics[metric]:.2f}"
            for r in setting.runs
            if r.metrics and metric in r.metrics
        )
        lines.append(
            f"{name}: {metric} {mean:.2f}% +- {spread:.2f}% ({label}) over {len(values)} "
            f"run(s) [{per_run}]"
        )
    else:
        lines.append(f"{name}: no finished run")
    for run in setting.runs:
        if not run.metrics or metric not in run.metrics:
            where = run.log if run.log else run.path
            lines.append(f"  {run.path.name}: no test {metric} in {where} (unfinished or failed?)")
    return "\n".join(lines)


def dataset_of(parts: tuple[str, ...]) -> str | None:
    """The dataset a setting belongs to: the first path part naming one (config or class name)."""
    for part in parts:
        if part.lower() in _DATASET_ALIASES:
            return _DATASET_ALIASES[part.lower()]
    return None


def shots_of(parts: tuple[str, ...]) -> int | None:
    for part in parts:
        match = SHOTS_PART.search(part)
        if match:
            return int(match.group(1))
    return None


def build_table(
    settings: list[Setting], root: Path, metric: str, columns: str
) -> tuple[list[str], list[list[str]]]:
    """Rows = datasets, columns = shot counts (or the setting path below the dataset)."""
    cells: dict[tuple[str, str], tuple[float, float]] = {}
    origin: dict[tuple[str, str], Path] = {}
    col_order: dict[str, tuple] = {}
    for setting in settings:
        values = setting.values(metric)
        if not values:
            continue
        parts = Path(_relative(setting.path, root)).parts
        dataset = dataset_of(parts)
        rest = [p for p in parts if _DATASET_ALIASES.get(p.lower()) != dataset] if dataset else []
        shots = shots_of(parts)
        if columns == "shots" and shots is not None:
            col, order = f"{shots} shots", (0, shots, "")
        else:
            col = "/".join(rest) or metric
            order = (1, 0, col)
        row = dataset or "/".join(parts)
        key = (row, col)
        if key in cells:
            raise ResultsError(
                f"{origin[key]} and {setting.path} land in the same table cell ({row}, {col}); "
                "point the tool at a narrower folder or use --columns setting."
            )
        cells[key] = mean_and_spread(values)
        origin[key] = setting.path
        col_order[col] = order
    if not cells:
        raise ResultsError(f"no finished run under {root} to tabulate.")

    cols = sorted(col_order, key=lambda c: col_order[c])
    known = list(DATASETS)
    rows = sorted({r for r, _ in cells}, key=lambda r: (known.index(r) if r in known else 99, r))
    table = []
    for row in rows:
        line = [row]
        for col in cols:
            cell = cells.get((row, col))
            line.append(f"{cell[0]:.2f} +- {cell[1]:.2f}" if cell else "-")
        table.append(line)
    if len(rows) > 1:
        average = ["average"]
        for col in cols:
            means = [cells[(r, col)][0] for r in rows if (r, col) in cells]
            complete = len(means) == len(rows)
            average.append(f"{sum(means) / len(means):.2f}" + ("" if complete else "*"))
        table.append(average)
    return ["dataset", *cols], table


def _relative(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    return str(rel) if rel.parts else (root.name or str(root))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="output folder of a run, a setting, or above")
    parser.add_argument("--metric", default="accuracy", help="accuracy (default), error, macro_f1")
    parser.add_argument("--ci95", action="store_true", help="95%% confidence interval, not std")
    parser.add_argument("--table", action="store_true", help="also print a datasets x shots table")
    parser.add_argument(
        "--columns",
        choices=("shots", "setting"),
        default="shots",
        help="table columns: shot counts (default) or the setting path below the dataset",
    )
    parser.add_argument(
        "--finished",
        action="store_true",
        help="only report whether DIRECTORY itself holds a test result (exit status 0 if so)",
    )
    args = parser.parse_args(argv)

    if args.finished:
        run = read_run(args.directory)
        print(f"{args.directory}: {'finished' if run.metrics else 'not finished'}")
        return 0 if run.metrics else 1

    try:
        settings = collect_settings(args.directory)
        for setting in settings:
            print(describe_setting(setting, args.directory, args.metric, args.ci95))
        if args.table:
            headers, rows = build_table(settings, args.directory, args.metric, args.columns)
            print()
            print(f"{args.metric} (%), mean +- std over seeds")
            align = ("left",) + ("right",) * (len(headers) - 1)
            print(tabulate(rows, headers=headers, colalign=align))
            if any(cell.endswith("*") for cell in rows[-1]):
                print("* average over the datasets that have this column only")
    except ResultsError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
