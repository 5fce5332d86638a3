"""Shared steps of the method tests: build a seeded trainer, measure train accuracy."""

import torch
import torch.nn.functional as F
from yacs.config import CfgNode

from dassl.engine import build_trainer
from dassl.utils import set_random_seed


def make_trainer(cfg: CfgNode):
    cfg.freeze()
    set_random_seed(cfg.SEED)
    return build_trainer(cfg)


@torch.no_grad()
def _train_logits(trainer) -> tuple[torch.Tensor, torch.Tensor]:
    features, labels = trainer.encode_data_source(trainer.dm.dataset.train_x)
    return trainer.model(features.to(trainer.device)).float().cpu(), labels


def train_accuracy(trainer) -> float:
    """Accuracy of the current head on the un-augmented train images."""
    logits, labels = _train_logits(trainer)
    return (logits.argmax(1) == labels).float().mean().item()


def train_loss(trainer) -> float:
    """Cross-entropy of the current head on the un-augmented train images."""
    logits, labels = _train_logits(trainer)
    return F.cross_entropy(logits, labels).item()
