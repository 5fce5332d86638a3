"""Trainers that misbehave on purpose: one kills its own process, one produces a NaN loss."""

import os
import signal

import torch
import torch.nn as nn
from torch.nn import functional as F

from dassl.engine import TRAINER_REGISTRY, TrainerX

from .upstream_style_trainer import UpstreamStyleTrainer

KILL_AT_ENV = "ENGINE_TEST_KILL_AT"  # "<epoch>,<batch>", both 1-based


@TRAINER_REGISTRY.register(force=True)
class SelfKillingTrainer(UpstreamStyleTrainer):
    """SIGKILLs its process mid-epoch (no clean-up can run), like an OOM kill or a power cut."""

    def before_train(self):
        super().before_train()
        # Work after the resume that draws random numbers (as feature caching does) must not
        # shift the resumed run's random stream.
        torch.rand(8)

    def forward_backward(self, batch):
        kill_at = os.environ.get(KILL_AT_ENV)
        if kill_at and (self.epoch + 1, self.batch_idx + 1) == tuple(map(int, kill_at.split(","))):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().forward_backward(batch)


@TRAINER_REGISTRY.register(force=True)
class NaNAtEpoch2Trainer(TrainerX):
    """The default model (SimpleNet); the loss becomes NaN at epoch 2, batch 2."""

    def forward_backward(self, batch):
        image, label, _ = self.parse_batch_train(batch)
        loss = F.cross_entropy(self.model(image), label)
        if (self.epoch, self.batch_idx) == (1, 1):
            loss = loss * torch.tensor(float("nan"))
        self.model_backward_and_update(loss)
        return {"loss": loss.item()}


@TRAINER_REGISTRY.register(force=True)
class TwoModelTrainer(UpstreamStyleTrainer):
    """Two registered models (as trainers with a generator and a classifier have)."""

    def build_model(self):
        super().build_model()
        self.model_b = nn.Linear(1, 1)
        self.optim_b = torch.optim.SGD(self.model_b.parameters(), lr=0.1)
        self.register_model("model_b", self.model_b, self.optim_b, None)
