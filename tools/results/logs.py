"""The test result of a run folder, read from its Dassl log.

A run folder holds a log (``log.txt``, or ``log.txt-<timestamp>`` when an earlier log was there).
Its result is the last evaluation block (``=> result`` followed by ``* accuracy: X%`` and the other
metric lines) that belongs to the test split; blocks announced as another split (``Evaluate on the
*val* set``) are ignored. When a folder holds several logs, the newest one with a result wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

RESULT_MARKER = "=> result"
METRIC_LINE = re.compile(r"\* (\w+): ([-+0-9.eE]+)%?")
SPLIT_LINE = re.compile(r"Evaluate on the \*(\w+)\* set")


@dataclass
class Run:
    """One run folder and the metrics of its test evaluation (None when it has not finished)."""

    path: Path
    log: Path | None
    metrics: dict[str, float] | None


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
