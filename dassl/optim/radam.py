"""Rectified Adam (Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR'20)
with upstream Dassl's interface, which plugins construct directly (``dassl.optim.radam.RAdam``).

Differences from ``torch.optim.RAdam`` that upstream has and keeps here: the rectification applies
from rho_t >= 5 (torch: > 5), ``degenerated_to_sgd=False`` skips the update (and the weight
decay) while the variance is not yet tractable, and the arithmetic runs in fp32 whatever the
parameter's dtype, in upstream's order, so the updates are bit-identical to upstream's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer


class RAdam(Optimizer):
    """RAdam with decoupled weight decay (``p -= lr * weight_decay * p`` before the step)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        degenerated_to_sgd: bool = True,
    ) -> None:
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if eps < 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        for index, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {index}: {beta}")
        self.degenerated_to_sgd = degenerated_to_sgd
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    def step_size(self, step: int, betas: tuple[float, float]) -> tuple[bool, float]:
        """(whether the variance is rectified, the step size before lr) at step ``step``."""
        beta1, beta2 = betas
        beta2_t = beta2**step
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * beta2_t / (1 - beta2_t)
        if rho_t >= 5:
            rectification = (
                (1 - beta2_t) * (rho_t - 4) / (rho_inf - 4) * (rho_t - 2) / rho_t
                * rho_inf / (rho_inf - 2)
            )  # fmt: skip
            return True, math.sqrt(rectification) / (1 - beta1**step)
        if self.degenerated_to_sgd:
            return False, 1.0 / (1 - beta1**step)
        return False, 0.0

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, weight_decay = group["lr"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise RuntimeError("RAdam does not support sparse gradients")
                grad = param.grad.float()
                param_fp32 = param.float()
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param_fp32)
                    state["exp_avg_sq"] = torch.zeros_like(param_fp32)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                state["step"] += 1

                rectified, step_size = self.step_size(state["step"], group["betas"])
                if step_size <= 0:
                    continue
                if weight_decay != 0:
                    param_fp32.add_(param_fp32, alpha=-weight_decay * lr)
                if rectified:
                    denom = exp_avg_sq.sqrt().add_(group["eps"])
                    param_fp32.addcdiv_(exp_avg, denom, value=-step_size * lr)
                else:
                    param_fp32.add_(exp_avg, alpha=-step_size * lr)
                param.copy_(param_fp32)
        return loss
