"""The image tower as loaded, sealed: what keeps features of other weights out of the store.

The feature store keys features by the backbone's weights file (trainers/feature_store.py), so
features computed with any other weights must never reach it. ``EncoderSeal`` records a cheap
fingerprint of the image tower right after CLIP is loaded and frozen; the feature pipeline
(trainers/features.py) asks ``broken()`` before every store read and write and uses the store
only while the seal holds. It breaks when a tower parameter is trainable, when a parameter or
buffer is added, replaced, modified in place (version counter) or changes its content (a sum
per tensor catches writes through ``.data``), or when a module of the tower is swapped, wrapped,
hooked or given its own ``forward``. Whatever a method declares or forgets, the guarantee holds.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import torch
from torch import nn


def _tensors(tower: nn.Module) -> list[tuple[Any, ...]]:
    return [
        (name, t.data_ptr(), t._version, tuple(t.shape), t.dtype, float(t.sum(dtype=torch.float64)))
        for name, t in chain(tower.named_parameters(), tower.named_buffers())
    ]


def _modules(tower: nn.Module) -> list[tuple[Any, ...]]:
    """Each module's type and what may change its output besides its weights: forward hooks
    (an observer's hook counts too: the seal cannot tell it from an adapter's) and an
    instance-level ``forward``."""
    return [
        (
            name,
            type(module),
            len(module._forward_hooks),
            len(module._forward_pre_hooks),
            "forward" in module.__dict__,
        )
        for name, module in tower.named_modules()
    ]


class EncoderSeal:
    """A fingerprint of ``tower`` (the image encoder) as it is when the seal is made."""

    @torch.no_grad()
    def __init__(self, tower: nn.Module) -> None:
        self.tower = tower
        self.tensors = _tensors(tower)
        self.modules = _modules(tower)

    @torch.no_grad()
    def broken(self) -> str | None:
        """Why the tower is no longer the loaded one, or None while it is."""
        trainable = [name for name, p in self.tower.named_parameters() if p.requires_grad]
        if trainable:
            shown = ", ".join(trainable[:3]) + (", ..." if len(trainable) > 3 else "")
            return f"{len(trainable)} of its parameters are trainable ({shown})"
        if _tensors(self.tower) != self.tensors:
            return "its parameters or buffers differ from the loaded weights"
        if _modules(self.tower) != self.modules:
            return "its modules were replaced, hooked or given their own forward since loading"
        return None
