"""Trainers that misbehave on purpose: ones that signal their own process at a named point, one
that produces a NaN loss, one with two models, one with an amp GradScaler on the CPU."""

import os
import signal
import subprocess
import sys
import time
from unittest import mock

import torch
import torch.nn as nn
from torch.nn import functional as F

from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.utils.torchtools import BEST_FILE
from trainers.methods.taskres import TaskRes

from .upstream_style_trainer import UpstreamStyleTrainer

# "<point>@<signal>", read only by the trainers below. Points (epochs and batches 1-based):
#   batch:E:B        before training batch B of epoch E
#   val:E            at the first batch of the val evaluation after epoch E
#   test             at the first batch of the final test
#   best-saved:E     right after model-best.pth.tar is written for epoch E
#   epoch-write:E    half-way through writing model.pth.tar-E (the temp file holds half of it)
#   before-prune:E   after model.pth.tar-E and the pointer, before superseded files are deleted
# Signals: KILL, TERM, INT, INT2 (two SIGINTs in a row, the impatient Ctrl-C Ctrl-C), and
# TERM-GROUP (SIGTERM from another process to the whole process group, DataLoader workers
# included, as Slurm does).
KILL_ENV = "ENGINE_TEST_KILL"


class KillAtPoint:
    """Mixin: signal this process once, at the point ``KILL_ENV`` names."""

    def _fire_if(self, point: str) -> None:
        spec = os.environ.get(KILL_ENV, "")
        if self.__dict__.get("_fired") or spec.partition("@")[0] != point:
            return
        self._fired = True
        name = spec.partition("@")[2]
        signum = getattr(signal, "SIG" + name.removesuffix("-GROUP").rstrip("2"))
        if name.endswith("-GROUP"):  # sent from outside the group, as by slurmstepd
            kill = f"import os; os.killpg({os.getpgid(0)}, {signum})"
            subprocess.run([sys.executable, "-c", kill], start_new_session=True, check=True)
            time.sleep(1)  # a batch that takes a while: the workers' fate is known by its end
            return
        for _ in range(2 if name == "INT2" else 1):
            os.kill(os.getpid(), signum)

    def forward_backward(self, batch):
        self._fire_if(f"batch:{self.epoch + 1}:{self.batch_idx + 1}")
        return super().forward_backward(batch)

    def test(self, split=None):
        self._split = split or self.cfg.TEST.SPLIT
        return super().test(split)

    def parse_batch_test(self, batch):
        self._fire_if(f"val:{self.epoch + 1}" if self._split == "val" else "test")
        return super().parse_batch_test(batch)

    def save_model(self, epoch, directory, is_best=False, val_result=None, model_name=""):
        if model_name == BEST_FILE:
            super().save_model(epoch, directory, is_best, val_result, model_name)
            self._fire_if(f"best-saved:{epoch + 1}")
            return
        point = f"epoch-write:{epoch + 1}"
        real_save = torch.save

        def save_interrupted_half_way(obj, f, *args, **kwargs):
            real_save(obj, f, *args, **kwargs)
            f.truncate(f.tell() // 2)
            f.flush()
            self._fire_if(point)  # kill -9 ends here; the others let the write finish
            f.seek(0)
            f.truncate()
            real_save(obj, f, *args, **kwargs)

        with mock.patch("torch.save", save_interrupted_half_way):
            super().save_model(epoch, directory, is_best, val_result, model_name)

    def remove_superseded_checkpoints(self, latest):
        self._fire_if(f"before-prune:{latest}")
        super().remove_superseded_checkpoints(latest)


@TRAINER_REGISTRY.register(force=True)
class KillableTrainer(KillAtPoint, UpstreamStyleTrainer):
    """The upstream-style linear classifier, signalling itself where KILL_ENV says."""

    def before_train(self):
        super().before_train()
        # Work after the resume that draws random numbers (as feature caching does) must not
        # shift the resumed run's random stream.
        torch.rand(8)


@TRAINER_REGISTRY.register(force=True)
class KillableTaskRes(KillAtPoint, TaskRes):
    """TaskRes (val/test features cached on first use), signalling itself where KILL_ENV says."""


@TRAINER_REGISTRY.register(force=True)
class ScaledTrainer(KillAtPoint, UpstreamStyleTrainer):
    """Steps through an amp GradScaler (CPU, fp32: the scale grows every 2 steps), as
    ClipTrainer does under PREC amp on CUDA."""

    def build_model(self):
        super().build_model()
        self.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4, growth_interval=2)

    def forward_backward(self, batch):
        self._fire_if(f"batch:{self.epoch + 1}:{self.batch_idx + 1}")
        image, label = self.parse_batch_train(batch)
        loss = F.cross_entropy(self.model(image), label)
        self.optim.zero_grad()
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optim)
        self.scaler.update()
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item()}


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
