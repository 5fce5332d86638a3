"""The evaluator registry: TEST.EVALUATOR names a registered evaluator class."""

from typing import Any

from yacs.config import CfgNode

from dassl.utils.registry import Registry

EVALUATOR_REGISTRY = Registry("EVALUATOR", key="TEST.EVALUATOR")


def build_evaluator(cfg: CfgNode, **kwargs: Any) -> Any:
    """Instantiate ``cfg.TEST.EVALUATOR`` with ``(cfg, **kwargs)`` (e.g. ``lab2cname=...``)."""
    return EVALUATOR_REGISTRY.build(cfg.TEST.EVALUATOR, cfg, verbose=cfg.VERBOSE, **kwargs)
