"""What a cell's output folder holds, by the comparison train.py itself makes.

Each cell's config is built exactly as train.py builds it (``build_parser().parse_args`` then
``setup_cfg``) and compared with the folder's ``config.yaml`` by ``inspect_output_dir``; a cell is
finished when the folder holds the same config and a test result, as ``train.py --skip-finished``
decides. So the dry run and the real run agree with what every cell's train.py will do.
"""

from __future__ import annotations

import argparse
import enum
from dataclasses import dataclass
from pathlib import Path

from tools.parse_test_res import read_run

from .grid import REPO, Cell, GridError


class State(enum.Enum):
    FINISHED = "finished"  # the same config and a test result: skipped
    PENDING = "pending"  # runs (and resumes when the folder holds its unfinished run)
    CONFLICTING = "conflicting"  # the folder holds a run with another config: not run
    BLOCKED = "blocked"  # an input is missing (a model to evaluate, an enhanced base): not run


@dataclass(frozen=True)
class Inspection:
    cell: Cell
    state: State
    detail: str = ""  # the differing keys, what blocks the cell, or "resumes"


def inspect_cell(cell: Cell) -> Inspection:
    """Classify one cell; a config mistake (unknown key, missing file) raises GridError."""
    # train imports torch and every trainer: only once a cell is inspected, so that mistakes in
    # the grid or the filters are named at once.
    import train
    from dassl.config import extend_cfg, get_cfg_default
    from dassl.config.run_identity import RunConflictError, conflict_message, inspect_output_dir

    args = train.build_parser().parse_args(list(cell.argv))
    blocked = _missing_input(args)
    if blocked:
        return Inspection(cell, State.BLOCKED, blocked)
    try:
        cfg = train.setup_cfg(args, notes=[])
    except ValueError as err:  # train.ConfigError, or a value yacs cannot merge
        raise GridError(f"{cell.label} ({cell.output_dir}): {err}") from err
    try:
        status = inspect_output_dir(cfg, extend_cfg(get_cfg_default()))
    except RunConflictError as err:
        return Inspection(cell, State.CONFLICTING, str(err))
    if status.conflicting:
        return Inspection(cell, State.CONFLICTING, conflict_message(status))
    if train.holds_finished_run(status):
        return Inspection(cell, State.FINISHED)
    return Inspection(cell, State.PENDING, "resumes" if status.has_record else "")


def _missing_input(args: argparse.Namespace) -> str:
    """Why the cell cannot run yet, or '' (the same checks the scripts make before train.py)."""
    if args.model_dir and not read_run(Path(args.model_dir)).metrics:
        return (
            f"the model to evaluate, {args.model_dir}, has not finished training (an earlier "
            "stage of this grid trains it)"
        )
    base = args.enhanced_base
    if base and base != "none" and not (REPO / base).is_file():
        return (
            f"enhanced base {base} not found. A base built here comes from this grid's \"base\" "
            "stage (a failed or unfinished build leaves it missing: see that cell's log); "
            "released ones: download the enhanced bases released with TaskRes into strong_base/ "
            "at the repository root, or point the grid at them with --var strong_base_dir=DIR."
        )
    return ""
