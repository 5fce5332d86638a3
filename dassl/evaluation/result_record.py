"""A run's result record (``OUTPUT_DIR/result.json``): what "finished" means.

The engine writes it atomically when it tests, beside the human ``=> result`` block of the log: the
split, the metrics (in percent, as the log prints them, unrounded), the counts, the model that was
evaluated and how it was selected, and the shots the run actually trained with. A run folder is
finished when it holds a valid record. Runs without one (upstream's, or older ones) fall back to
their Dassl log, whose last test-split result block must reach its ``* accuracy`` line: a log cut
inside the block (a kill, a full disk) is not a finished run.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from dassl.utils.tools import atomic_write

RESULT_FILE = "result.json"
RECORD_VERSION = 1
METRICS = ("accuracy", "error", "macro_f1")

# How the evaluated model was chosen.
SELECTED_LAST_EPOCH = "last_epoch"  # the weights after the last training epoch
SELECTED_BEST_VAL = "best_val"  # the epoch with the best val accuracy (model-best.pth.tar)
SELECTED_FIXED = "fixed"  # given: an epoch file named on the command line, or untrained weights

# How the method's hyperparameters were chosen (the record's "hyperparameters" entry).
HYPERPARAMETERS_FIXED = "fixed"  # given: "source" says by the config or from a paper
HYPERPARAMETERS_SEARCHED = "searched"  # searched on a split, named with its size, space, winner
# computed from a split's data by the method's own formula (no search), named with the values
HYPERPARAMETERS_DERIVED = "derived"
# an evaluation on a dataset without val took the trained run's searched winner ("from": its folder)
HYPERPARAMETERS_INHERITED = "inherited"

RESULT_MARKER = "=> result"
METRIC_LINE = re.compile(r"\* (\w+): ([-+0-9.eE,]+)%?")
SPLIT_LINE = re.compile(r"Evaluate on the \*(\w+)\* set")


def write_result_record(output_dir: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write ``record`` (plus the format version) to ``output_dir/result.json`` atomically."""
    path = Path(output_dir) / RESULT_FILE
    with atomic_write(path, "w") as f:
        json.dump({"version": RECORD_VERSION, **record}, f, indent=1, sort_keys=True)
        f.write("\n")
    return path


def read_search_report(path: str | os.PathLike) -> dict[str, Any]:
    """The ``space``, ``winner``, ``split`` and ``size`` of a search report (the JSON file the
    sweep writes for a searched cell's winner, RUN.SEARCH_REPORT), for the winner's record."""
    keys = ("space", "winner", "split", "size")
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(
            f'RUN.SEARCH_REPORT "{path}" cannot be read as a search report ({err}). Fix: run the '
            "search grid again (python -m tools.sweep GRID), which writes it."
        ) from err
    if not isinstance(report, dict) or any(key not in report for key in keys):
        raise ValueError(
            f'RUN.SEARCH_REPORT "{path}" is not a search report: it needs the keys {list(keys)}. '
            "Fix: run the search grid again (python -m tools.sweep GRID), which writes it."
        )
    return {key: report[key] for key in keys}


def read_result_record(output_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The record of ``output_dir``, or None when it has none or it is not a record (a record
    lacking a metric counts as none: the run is not finished)."""
    path = Path(output_dir) / RESULT_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not all(
        isinstance(record.get(m), int | float) for m in METRICS
    ):
        return None
    return record


def read_log_metrics(log_path: str | os.PathLike) -> dict[str, float] | None:
    """Metrics of the last complete test-split result block in one Dassl log, or None.

    Blocks announced as another split (``Evaluate on the *val* set``) are ignored; a block is
    complete when it holds the ``* accuracy`` line.
    """
    split = None
    last = None
    block = None  # metrics of the block being read, None outside a block
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            line = raw.strip()
            if block is not None:
                match = METRIC_LINE.fullmatch(line)
                if match:
                    block[match.group(1)] = float(match.group(2).replace(",", ""))
                    continue
                last = _complete(block, split, last)
                block = None
            if line == RESULT_MARKER:
                block = {}
                continue
            match = SPLIT_LINE.search(line)
            if match:
                split = match.group(1)
    if block is not None:
        last = _complete(block, split, last)
    return last


def _complete(
    block: dict[str, float], split: str | None, last: dict[str, float] | None
) -> dict[str, float] | None:
    return block if split in (None, "test") and "accuracy" in block else last


def log_files(run_dir: str | os.PathLike) -> list[Path]:
    """The Dassl logs directly inside a folder (``log.txt``, ``log.txt-<stamp>``), oldest first."""
    folder = Path(run_dir)
    if not folder.is_dir():
        return []
    logs = [p for p in folder.iterdir() if p.is_file() and p.name.startswith("log.txt")]
    return sorted(logs, key=lambda p: (p.stat().st_mtime, p.name))


def newest_log_metrics(run_dir: str | os.PathLike) -> tuple[Path | None, dict[str, float] | None]:
    """The newest log holding a complete test result and its metrics; else (newest log, None)."""
    logs = log_files(run_dir)
    for log in reversed(logs):
        metrics = read_log_metrics(log)
        if metrics is not None:
            return log, metrics
    return (logs[-1] if logs else None), None


def run_result(
    run_dir: str | os.PathLike,
) -> tuple[dict[str, Any] | None, dict[str, float] | None, Path | None]:
    """(record, metrics, log) of a run folder. With a ``result.json`` the record decides (an
    invalid one: not finished); without one (upstream runs) the newest log with a complete test
    result does. ``log`` is that log, or the newest one."""
    if (Path(run_dir) / RESULT_FILE).exists():
        record = read_result_record(run_dir)
        logs = log_files(run_dir)
        metrics = None
        if record is not None:
            keys = (*METRICS, "total", "correct")
            metrics = {k: float(record[k]) for k in keys if k in record}
        return record, metrics, (logs[-1] if logs else None)
    log, metrics = newest_log_metrics(run_dir)
    return None, metrics, log


def holds_result(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` holds a finished run: a valid result record, else (upstream runs,
    which write none) a complete test result in its log."""
    return run_result(run_dir)[1] is not None
