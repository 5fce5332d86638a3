"""What a cell's output folder holds, by the comparison train.py itself makes.

Each cell's config is built exactly as train.py builds it (``dassl.config.run_config``:
``build_parser().parse_args`` then ``setup_cfg``) and compared with the folder's ``config.yaml`` by
``inspect_output_dir``; a cell is finished when the folder holds the same config and its result
record, as ``train.py --skip-finished`` decides (``holds_finished_run``). A cell that would run
first passes the run's own first checks (``preflight``: the dataset's layout, the backbone's
weights). So the dry run and the real run agree with what every cell's train.py will do.
"""

from __future__ import annotations

import argparse
import enum
from collections.abc import Callable
from dataclasses import dataclass

from yacs.config import CfgNode

from .grid import REPO, Cell, GridError


class State(enum.Enum):
    FINISHED = "finished"  # the same config and a test result: skipped
    PENDING = "pending"  # runs (and resumes when the folder holds its unfinished run)
    CONFLICTING = "conflicting"  # the folder holds a run with another config: not run
    BLOCKED = "blocked"  # an input is missing (a model to evaluate, a method's file): not run
    CANNOT_START = "cannot start"  # fails the run's first checks (data layout, weights): not run


@dataclass(frozen=True)
class Inspection:
    cell: Cell
    state: State
    detail: str = ""  # the differing keys, what blocks the cell, why it cannot start, or "resumes"


def inspect_cell(cell: Cell, preflight: Callable[[CfgNode], str]) -> Inspection:
    """Classify one cell; a config mistake (unknown key, missing file) raises GridError.
    ``preflight`` says why a cell that would run cannot start (``preflight.Preflight``), or ""."""
    # The datasets, trainers and engine import torch: only once a cell is inspected, so that
    # mistakes in the grid or the filters are named at once.
    import datasets  # noqa: F401  (registers the datasets, as train.py does)
    import trainers  # noqa: F401  (registers the trainers and their flags)
    from dassl.config import extend_cfg, get_cfg_default
    from dassl.config.run_config import build_parser, holds_finished_run, setup_cfg
    from dassl.config.run_identity import RunConflictError, conflict_message, inspect_output_dir
    from dassl.engine import TRAINER_REGISTRY
    from dassl.evaluation.result_record import holds_result

    args = build_parser().parse_args(list(cell.argv))
    if args.model_dir and not holds_result(args.model_dir):
        return Inspection(cell, State.BLOCKED, _unfinished_model(args))
    try:
        cfg = setup_cfg(args, notes=[])
    except ValueError as err:  # run_config.ConfigError, or a value yacs cannot merge
        raise GridError(f"{cell.label} ({cell.output_dir}): {err}") from err
    # The trainer names what it needs that an earlier stage or a download provides (the
    # scripts' checks), relative to the folder train.py runs in.
    missing_inputs = getattr(TRAINER_REGISTRY.get(cfg.TRAINER.NAME), "missing_inputs", None)
    blocked = missing_inputs(cfg, REPO) if missing_inputs is not None else ""
    if blocked:
        return Inspection(cell, State.BLOCKED, blocked)
    try:
        status = inspect_output_dir(cfg, extend_cfg(get_cfg_default()))
    except RunConflictError as err:
        return Inspection(cell, State.CONFLICTING, str(err))
    if status.conflicting and not status.never_finished_an_epoch:
        return Inspection(cell, State.CONFLICTING, conflict_message(status, "sweep"))
    if holds_finished_run(status):
        return Inspection(cell, State.FINISHED)
    problem = preflight(cfg)
    if problem:
        return Inspection(cell, State.CANNOT_START, problem)
    # A run that never finished an epoch starts afresh (train.py sets its record aside).
    resumes = status.has_record and not status.never_finished_an_epoch
    return Inspection(cell, State.PENDING, "resumes" if resumes else "")


def _unfinished_model(args: argparse.Namespace) -> str:
    return (
        f"the model to evaluate, {args.model_dir}, has not finished training (an earlier "
        "stage of this grid trains it)"
    )
