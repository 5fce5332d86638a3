"""Config tree: upstream Dassl defaults plus the keys that imported methods and datasets declare.

A trainer or dataset module declares its own keys with ``@register_cfg_extension``; ``train.py``
imports those packages, then builds ``cfg = get_cfg_default(); extend_cfg(cfg)``. This keeps method
keys next to the method instead of in an ever-growing ``train.py``.
"""

from collections.abc import Callable

from yacs.config import CfgNode

from .defaults import _C

CfgExtension = Callable[[CfgNode], None]

_EXTENSIONS: list[CfgExtension] = []


def get_cfg_default() -> CfgNode:
    """A fresh copy of upstream Dassl's default config."""
    return _C.clone()


def register_cfg_extension(fn: CfgExtension) -> CfgExtension:
    """Decorator: ``fn(cfg)`` adds keys to a config tree. Registering twice is harmless."""
    if fn not in _EXTENSIONS:
        _EXTENSIONS.append(fn)
    return fn


def extend_cfg(cfg: CfgNode) -> CfgNode:
    """Apply every registered extension to ``cfg`` (in registration order) and return it."""
    for fn in _EXTENSIONS:
        fn(cfg)
    return cfg


def clean_cfg(cfg: CfgNode, trainer: str) -> None:
    """Drop every ``TRAINER`` node but ``NAME`` and ``trainer.upper()``, in place: upstream
    Dassl's helper (plugins such as DePT call it before adding their own keys)."""
    for key in list(cfg.TRAINER.keys()):
        if key not in ("NAME", trainer.upper()):
            cfg.TRAINER.pop(key)


from . import run_identity  # noqa: E402  (registers the RUN keys every config has)

__all__ = ["CfgNode", "clean_cfg", "get_cfg_default", "register_cfg_extension", "extend_cfg"]
