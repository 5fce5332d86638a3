"""Running averages of losses and timings for the training progress line."""

from collections import defaultdict
from typing import Any

import torch


class AverageMeter:
    """The latest value and the running (or exponential moving) average of a scalar."""

    def __init__(self, ema: bool = False) -> None:
        self.ema = ema
        self.reset()

    def reset(self) -> None:
        self.val = 0.0
        self.avg = 0.0
        self.sum = 0.0
        self.count = 0

    def update(self, val: float | torch.Tensor, n: int = 1) -> None:
        if isinstance(val, torch.Tensor):
            val = val.item()
        self.val = val
        self.sum += val * n
        self.count += n
        if self.ema:
            self.avg = self.avg * 0.9 + self.val * 0.1
        else:
            self.avg = self.sum / self.count


class MetricMeter:
    """One AverageMeter per named metric; ``str()`` gives ``name val (avg)`` pairs."""

    def __init__(self, delimiter: str = "\t") -> None:
        self.meters: defaultdict[str, AverageMeter] = defaultdict(AverageMeter)
        self.delimiter = delimiter

    def update(self, input_dict: dict[str, Any] | None) -> None:
        if input_dict is None:
            return
        if not isinstance(input_dict, dict):
            raise TypeError(
                "MetricMeter.update() takes a dict of name -> value (forward_backward should "
                f"return e.g. {{'loss': loss.item()}}), got {type(input_dict).__name__}"
            )
        for name, value in input_dict.items():
            self.meters[name].update(value)

    def __str__(self) -> str:
        return self.delimiter.join(
            f"{name} {meter.val:.4f} ({meter.avg:.4f})" for name, meter in self.meters.items()
        )
