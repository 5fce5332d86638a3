"""Trainers with upstream Dassl's API: ``from dassl.engine import TRAINER_REGISTRY, TrainerX``."""

from .build import TRAINER_REGISTRY, build_trainer
from .simple_net import SimpleNet
from .trainer import SimpleTrainer, TrainerBase, TrainerX, TrainingInterrupted

__all__ = [
    "TRAINER_REGISTRY",
    "build_trainer",
    "SimpleNet",
    "SimpleTrainer",
    "TrainerBase",
    "TrainerX",
    "TrainingInterrupted",
]
