"""build_lr_scheduler: upstream Dassl's per-epoch schedules, warmup included, on current torch.

Upstream's warmup classes pass ``verbose`` to ``LRScheduler.__init__``, which torch 2.14 rejects,
and their ``state_dict()`` holds the successor scheduler object itself, which a
``torch.load(..., weights_only=True)`` cannot restore. The classes here keep upstream's names and
learning-rate sequence but store the successor as its own (plain) state dict.
"""

from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from yacs.config import CfgNode

AVAI_SCHEDS = ["single_step", "multi_step", "cosine"]
AVAI_WARMUPS = ["constant", "linear"]


class _BaseWarmupScheduler(LRScheduler):
    """Runs its own ``get_lr`` for ``warmup_epoch`` steps, then hands every step to
    ``successor`` (a scheduler built on the same optimizer)."""

    def __init__(
        self,
        optimizer: Optimizer,
        successor: LRScheduler,
        warmup_epoch: int,
        last_epoch: int = -1,
        verbose: bool = False,
    ) -> None:
        # ``verbose`` is accepted so upstream call sites run unchanged; torch 2.14 has no
        # scheduler verbosity left to forward it to.
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch >= self.warmup_epoch:
            return list(self.successor.get_last_lr())
        return self.warmup_lr()

    def warmup_lr(self) -> list[float]:
        """The learning rates of warmup epoch ``self.last_epoch`` (< ``warmup_epoch``)."""
        raise NotImplementedError

    def step(self, epoch: int | None = None) -> None:
        if self.last_epoch >= self.warmup_epoch:
            self.successor.step(epoch)
            self._last_lr = list(self.successor.get_last_lr())
        else:
            super().step(epoch)

    def state_dict(self) -> dict[str, Any]:
        """Own attributes plus the successor's state dict: numbers and lists only."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "successor")}
        state["successor"] = self.successor.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        successor_state = state.pop("successor")
        if isinstance(successor_state, LRScheduler):
            # A checkpoint written by upstream Dassl pickled the successor object itself.
            successor_state = successor_state.state_dict()
        self.successor.load_state_dict(successor_state)
        self.__dict__.update(state)


class ConstantWarmupScheduler(_BaseWarmupScheduler):
    """``cons_lr`` for the first ``warmup_epoch`` epochs."""

    def __init__(
        self,
        optimizer: Optimizer,
        successor: LRScheduler,
        warmup_epoch: int,
        cons_lr: float,
        last_epoch: int = -1,
        verbose: bool = False,
    ) -> None:
        self.cons_lr = cons_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch, verbose)

    def warmup_lr(self) -> list[float]:
        return [self.cons_lr for _ in self.base_lrs]


class LinearWarmupScheduler(_BaseWarmupScheduler):
    """``min_lr`` at epoch 0, then ``base_lr * epoch / warmup_epoch`` until the warmup ends."""

    def __init__(
        self,
        optimizer: Optimizer,
        successor: LRScheduler,
        warmup_epoch: int,
        min_lr: float,
        last_epoch: int = -1,
        verbose: bool = False,
    ) -> None:
        self.min_lr = min_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch, verbose)

    def warmup_lr(self) -> list[float]:
        if self.last_epoch == 0:
            return [self.min_lr for _ in self.base_lrs]
        return [lr * self.last_epoch / self.warmup_epoch for lr in self.base_lrs]


def _build_main_scheduler(optimizer: Optimizer, optim_cfg: CfgNode) -> LRScheduler:
    name = optim_cfg.LR_SCHEDULER
    stepsize = optim_cfg.STEPSIZE
    gamma = optim_cfg.GAMMA
    max_epoch = optim_cfg.MAX_EPOCH

    if name == "single_step":
        if isinstance(stepsize, (list, tuple)):
            stepsize = stepsize[-1]
        if not isinstance(stepsize, int):
            raise TypeError(
                "For LR_SCHEDULER single_step, OPTIM.STEPSIZE must be an int (or a list whose "
                f"last item is one), got {type(stepsize).__name__}"
            )
        if stepsize <= 0:
            stepsize = max_epoch  # the default (-1,) means "never decay within the run"
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=stepsize, gamma=gamma)

    if name == "multi_step":
        if not isinstance(stepsize, (list, tuple)):
            raise TypeError(
                "For LR_SCHEDULER multi_step, OPTIM.STEPSIZE must be a list of epochs, "
                f"got {type(stepsize).__name__}"
            )
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=list(stepsize), gamma=gamma
        )

    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, float(max_epoch))


def build_lr_scheduler(optimizer: Optimizer, optim_cfg: CfgNode) -> LRScheduler:
    """Build the per-epoch scheduler of ``optim_cfg`` (cfg.OPTIM), wrapped in a warmup when
    ``WARMUP_EPOCH > 0``. With ``WARMUP_RECOUNT`` the main schedule starts from its epoch 0 when
    the warmup ends; without it, it continues as if it had run during the warmup."""
    if optim_cfg.LR_SCHEDULER not in AVAI_SCHEDS:
        raise ValueError(
            f'Unsupported OPTIM.LR_SCHEDULER "{optim_cfg.LR_SCHEDULER}"; '
            f"choose one of {AVAI_SCHEDS}"
        )
    scheduler = _build_main_scheduler(optimizer, optim_cfg)

    warmup_epoch = optim_cfg.WARMUP_EPOCH
    if warmup_epoch <= 0:
        return scheduler

    warmup_type = optim_cfg.WARMUP_TYPE
    if warmup_type not in AVAI_WARMUPS:
        raise ValueError(
            f'Unsupported OPTIM.WARMUP_TYPE "{warmup_type}"; choose one of {AVAI_WARMUPS}'
        )
    if not optim_cfg.WARMUP_RECOUNT:
        scheduler.last_epoch = warmup_epoch
    if warmup_type == "constant":
        return ConstantWarmupScheduler(optimizer, scheduler, warmup_epoch, optim_cfg.WARMUP_CONS_LR)
    return LinearWarmupScheduler(optimizer, scheduler, warmup_epoch, optim_cfg.WARMUP_MIN_LR)
