"""How each result was selected, read from its result record: the epoch (last, best on val,
given) and the hyperparameters (fixed by the config or a paper, searched on a split; the
validation-free protocol, which has no val split, says so). Tables never
put results selected differently in one cell, and ``--audit`` lists the runs whose selection read
the test split or whose record cannot tell (upstream runs, which write none)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

UNRECORDED = ("epoch unrecorded", "hyperparameters unrecorded")
GIVEN_EPOCH = "given epoch"  # an evaluation at a named checkpoint (its row names the checkpoint)


@dataclass(frozen=True)
class Selection:
    """``parts``: how the epoch and the hyperparameters were chosen, in words a row label can
    carry; ``reads_test``: whether a selection read the test split (None: the record cannot
    tell)."""

    parts: tuple[str, str]
    reads_test: bool | None
    why: str = ""  # what read test, or why it cannot tell

    @property
    def label(self) -> str:
        return ", ".join(self.parts)


def _epoch(selection: Any) -> tuple[str, bool | None, str]:
    if not isinstance(selection, dict):
        return "epoch unrecorded", None, "no epoch selection in its result record"
    rule = selection.get("rule")
    if rule == "last_epoch":
        return "last epoch", False, ""
    if rule == "fixed":
        return GIVEN_EPOCH, False, ""
    if rule == "best_val":
        split = selection.get("val_split")
        if split == "val":
            return "best val epoch", False, ""
        if split == "test":
            return "best epoch on test", True, "its epoch was picked on the test split"
        return "best epoch, split unrecorded", None, "the split that picked its epoch is unknown"
    return f"epoch rule {rule}", None, f"unknown epoch rule {rule!r}"


def _hyperparameters(entry: Any) -> tuple[str, bool | None, str]:
    if not isinstance(entry, dict):
        return "hyperparameters unrecorded", None, "no hyperparameter record"
    rule = entry.get("rule")
    if rule == "fixed":
        return ("fixed, from the paper" if entry.get("source") == "paper" else "fixed"), False, ""
    if rule == "searched":
        split = entry.get("split")
        if split == "val":
            return "searched on val", False, ""
        if split == "test":
            return "searched on test", True, "its hyperparameters were searched on the test split"
        return f"searched on {split}", None, f"searched on an unknown split {split!r}"
    return f"hyperparameter rule {rule}", None, f"unknown hyperparameter rule {rule!r}"


def selection_of(record: dict[str, Any] | None) -> Selection:
    """The selection of a run with result record ``record`` (None: an upstream run)."""
    if record is None:
        return Selection(UNRECORDED, None, "no result record (an upstream run)")
    parts = [_epoch(record.get("selection")), _hyperparameters(record.get("hyperparameters"))]
    labels = (parts[0][0], parts[1][0])
    free = record.get("validation_free")
    if isinstance(free, dict):  # no val split: its images unused, or trained on
        used = "trained on" if free.get("val_images") == "trained" else "unused"
        labels = (labels[0], f"{labels[1]}, validation-free (val images {used})")
    reads = [part[1] for part in parts]
    why = "; ".join(part[2] for part in parts if part[2])
    if True in reads:
        return Selection(labels, True, why)
    return Selection(labels, None if None in reads else False, why)
