"""The test result of a run folder: its result record, or (upstream runs) its Dassl log.

A run folder of ours holds ``result.json`` (``dassl.evaluation.result_record``), written when the
engine tests. Upstream runs have none: their result is the last complete test-split evaluation
block of their log (``log.txt``, or ``log.txt-<timestamp>`` when an earlier log was there), the
newest log with a result winning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dassl.evaluation.result_record import log_files, read_log_metrics, run_result

__all__ = ["Run", "log_files", "read_run", "read_test_metrics"]

read_test_metrics = read_log_metrics


@dataclass
class Run:
    """One run folder and the metrics of its test evaluation (None when it has not finished).

    ``record`` is its result record (None for upstream runs, whose metrics come from ``log``)."""

    path: Path
    log: Path | None
    metrics: dict[str, float] | None
    record: dict[str, Any] | None = None

    @property
    def test_metrics(self) -> dict[str, float] | None:
        """The metrics when they are a test result: not those of a run that tests the val split
        (a search's candidate, TEST.SPLIT val), which the summary and the tables leave out."""
        if (self.record or {}).get("split", "test") != "test":
            return None
        return self.metrics


def read_run(run_dir: Path) -> Run:
    """The run's result record when it has one, else the newest result among its logs."""
    record, metrics, log = run_result(run_dir)
    return Run(run_dir, log, metrics, record)
