"""A search's winners: per (dataset, shots, seed), the candidate with the best val accuracy.

Every candidate of a search stage trained and then tested the val split only (``TEST.SPLIT
val``), so its result record holds its val accuracy and no test number. Once all candidates of
a (dataset, shots, seed) have finished, the one with the highest val accuracy wins (the first in
the grid's order on ties), a search report (JSON: the space, each candidate's val accuracy, the
winner, the val split and its size) is written, and the winner alone is tested: an evaluation
(``--eval-only --model-dir``) of its model on the test split, into the search's ``output``
folder, whose result record says the hyperparameters were searched on val (RUN.SEARCH_REPORT).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dassl.evaluation.result_record import read_result_record
from dassl.utils.tools import atomic_write

from .grid import Cell, Search

VAL_OVERRIDE = ("TEST.SPLIT", "val")


@dataclass(frozen=True)
class Scored:
    """A candidate and its val accuracy and val size (None while it has not finished)."""

    cell: Cell
    val_accuracy: float | None
    val_size: int | None

    @property
    def values(self) -> dict[str, str]:
        return dict(self.cell.candidate)


def score(cell: Cell) -> Scored:
    """The val result a candidate's result record holds (a record of another split: none)."""
    record = read_result_record(cell.output_dir)
    if record is None or record.get("split") != "val":
        return Scored(cell, None, None)
    return Scored(cell, float(record["accuracy"]), record.get("total"))


def groups(cells: list[Cell]) -> list[list[Cell]]:
    """The candidates of each (dataset, shots, seed), in grid order (one winner folder each)."""
    by_winner: dict[Path, list[Cell]] = {}
    for cell in cells:
        if cell.winner_dir is not None:
            by_winner.setdefault(cell.winner_dir, []).append(cell)
    return list(by_winner.values())


def choose(candidates: list[Cell]) -> tuple[list[Scored], Scored | None]:
    """Each candidate's score and the winner: the best val accuracy, the first on ties; None
    while a candidate has no val result."""
    scored = [score(cell) for cell in candidates]
    if any(s.val_accuracy is None for s in scored):
        return scored, None
    best = max(s.val_accuracy for s in scored)
    return scored, next(s for s in scored if s.val_accuracy == best)


def report(search: Search, scored: list[Scored], winner: Scored) -> dict:
    """The search report: what was searched, each candidate's val accuracy, the winner; never a
    test number (no candidate has one)."""
    return {
        "space": {name: list(values) for name, values in search.space.items()},
        "winner": winner.values,
        "split": "val",
        "val": search.val,
        "size": winner.val_size,
        "candidates": [
            {"values": s.values, "run": str(s.cell.output_dir), "val_accuracy": s.val_accuracy}
            for s in scored
        ],
    }


def write_report(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as f:
        json.dump(content, f, indent=1)
        f.write("\n")


def winner_cell(winner: Scored, report_path: Path) -> Cell:
    """The winner's test evaluation: its candidate's command, as an evaluation of the candidate's
    model on the test split into the search's folder, recording the search."""
    cell = winner.cell
    argv = list(cell.argv)
    if tuple(argv[-2:]) != VAL_OVERRIDE or cell.winner_dir is None:
        raise ValueError(f"{cell.label} is not a search candidate (no TEST.SPLIT val last)")
    argv = argv[:-2]
    argv[argv.index("--output-dir") + 1] = str(cell.winner_dir)
    argv = ["--eval-only", "--model-dir", str(cell.output_dir), *argv]
    argv += ["TEST.SPLIT", "test", "RUN.SEARCH_REPORT", str(report_path)]
    return Cell(f"{cell.stage} winners", cell.dataset, cell.shots, cell.seed, cell.winner_dir,
                tuple(argv))  # fmt: skip


def report_lines(scored: list[Scored], winner: Scored | None, width: int) -> list[str]:
    """The selection report of one (dataset, shots, seed): each candidate's val accuracy and the
    winner (no test number: candidates have none)."""
    lines = []
    for s in scored:
        accuracy = "not finished" if s.val_accuracy is None else f"val {s.val_accuracy:.2f}%"
        mark = "  <- winner" if s is winner else ""
        lines.append(f"  {s.cell.label:<{width}} {accuracy}{mark}")
    return lines
