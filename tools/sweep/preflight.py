"""The checks a run makes before it loads anything: its dataset's layout and its backbone's weights.

A sweep makes them for every cell it would launch, with the run's own checks
(the dataset class's ``check_inputs``, ``clip.backbone.find_weights``) and messages, so that a cell
certain to fail is reported as "cannot start" with the reason instead of being launched. The dry
run looks for weights on this machine only; a real sweep may download each backbone once, as the
run would, before it decides.
"""

from __future__ import annotations

from yacs.config import CfgNode


class Preflight:
    """The checks of one sweep invocation; each backbone is looked up once, not once per cell."""

    def __init__(self, download: bool) -> None:
        self.download = download
        self._weights: dict[str, str] = {}  # backbone name -> why it cannot be loaded, or ""

    def __call__(self, cfg: CfgNode) -> str:
        """Why the run of ``cfg`` cannot start (one message per failed check), or ""."""
        from dassl.engine import TRAINER_REGISTRY
        from trainers.clip_base import ClipTrainer

        problems = [dataset_problem(cfg)]
        if issubclass(TRAINER_REGISTRY.get(cfg.TRAINER.NAME), ClipTrainer):
            name = cfg.MODEL.BACKBONE.NAME
            if name not in self._weights:
                self._weights[name] = weights_problem(name, self.download)
            problems.append(self._weights[name])
        return "\n".join(problem for problem in problems if problem)


def dataset_problem(cfg: CfgNode) -> str:
    """The error the run's own dataset check (its class's ``check_inputs``: the layout under
    DATASET.ROOT) would raise first, or ""."""
    from dassl.data.datasets import DATASET_REGISTRY
    from dassl.utils.user_error import UserError

    check = getattr(DATASET_REGISTRY.get(cfg.DATASET.NAME), "check_inputs", None)
    try:
        if check is not None:
            check(cfg)
    except UserError as err:
        return str(err)
    return ""


def weights_problem(name: str, download: bool) -> str:
    """Why the weights MODEL.BACKBONE.NAME names cannot be found (``download``: may fetch them as
    the run would), or ""."""
    from clip.backbone import find_weights
    from clip.clip import ChecksumMismatchError, WeightsNotFoundError
    from clip.openclip import OpenClipMissingError

    try:
        find_weights(name, download=download)
    except (WeightsNotFoundError, ChecksumMismatchError, OpenClipMissingError) as err:
        return str(err)
    return ""
