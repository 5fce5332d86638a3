"""The trainer registry: ``TRAINER.NAME`` picks a registered trainer class."""

from typing import Any

from yacs.config import CfgNode

from dassl.utils.registry import Registry

TRAINER_REGISTRY = Registry("TRAINER")


def build_trainer(cfg: CfgNode) -> Any:
    """Instantiate the trainer ``cfg.TRAINER.NAME``; an unknown name lists the registered ones."""
    if not cfg.TRAINER.NAME:
        raise ValueError(
            "TRAINER.NAME is empty: pass --trainer NAME (or set TRAINER.NAME in a config file). "
            f"Registered trainers: {', '.join(TRAINER_REGISTRY.registered_names()) or '(none)'}"
        )
    trainer_cls = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    if cfg.VERBOSE:
        print(f"Loading trainer: {cfg.TRAINER.NAME}")
    return trainer_cls(cfg)
