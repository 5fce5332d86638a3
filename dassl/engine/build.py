"""The trainer registry: ``TRAINER.NAME`` picks a registered trainer class."""

from typing import Any

from yacs.config import CfgNode

from dassl.utils.registry import Registry

TRAINER_REGISTRY = Registry(
    "TRAINER", how_to_set="pass --trainer NAME (or set TRAINER.NAME in a config file)"
)


def build_trainer(cfg: CfgNode) -> Any:
    """Instantiate the trainer ``cfg.TRAINER.NAME`` (upstream's entry point)."""
    return TRAINER_REGISTRY.build(cfg.TRAINER.NAME, cfg, verbose=cfg.VERBOSE)
