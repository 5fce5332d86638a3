"""Who steps the LR schedule: upstream plugins keep exactly upstream Dassl's schedule, whether they
step it themselves or never; only trainers that declare ``LR_STEP`` get an engine-owned step."""

from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from dassl.engine import TRAINER_REGISTRY
from datasets.synthetic import write_tiny_image_dataset
from tests.support.tiny_run import run_train_in_process

from .helpers import ENGINE_RUN, train_argv
from .upstream_style_trainer import UpstreamStyleTrainer

EPOCHS = int(ENGINE_RUN["OPTIM.MAX_EPOCH"])
BATCHES = 3  # per epoch in ENGINE_RUN on the tiny dataset
LR = float(ENGINE_RUN["OPTIM.LR"])


class EpochEndLrRecorder(UpstreamStyleTrainer):
    """Records the LR each epoch ends with (what upstream prints at the epoch's last batch)."""

    def before_train(self):
        super().before_train()
        self.epoch_end_lrs: list[float] = []

    def after_epoch(self):
        self.epoch_end_lrs.append(self.get_current_lr())
        super().after_epoch()


@TRAINER_REGISTRY.register(force=True)
class SchedulerSteppingPlugin(EpochEndLrRecorder):
    """Steps its scheduler object itself at each epoch's last batch, as KgCoOp's trainer does
    (``self.sched.step()``, not ``update_lr``)."""

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        loss = F.cross_entropy(self.model(image), label)
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.sched.step()
        return {"loss": loss.item()}


@TRAINER_REGISTRY.register(force=True)
class NeverSteppingPlugin(EpochEndLrRecorder):
    """Never steps its scheduler: upstream Dassl keeps the LR constant."""

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        loss = F.cross_entropy(self.model(image), label)
        self.model_backward_and_update(loss)
        return {"loss": loss.item()}


@TRAINER_REGISTRY.register(force=True)
class IterationStepTrainer(NeverSteppingPlugin):
    """A project method that declares an engine-owned step after every batch."""

    LR_STEP = "iteration"


@TRAINER_REGISTRY.register(force=True)
class EpochStepTrainer(NeverSteppingPlugin):
    """A project method that declares an engine-owned step after each epoch."""

    LR_STEP = "epoch"


def cosine_lrs(steps_per_epoch: int, total_steps: int) -> list[float]:
    """The LR at each epoch's end of torch's cosine schedule (T_max = total_steps) stepped
    ``steps_per_epoch`` times per epoch: the upstream reference."""
    optim = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=total_steps)
    lrs = []
    for _ in range(EPOCHS):
        for _ in range(steps_per_epoch):
            optim.step()
            sched.step()
        lrs.append(optim.param_groups[0]["lr"])
    return lrs


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_tiny_image_dataset(root)
    return root


def epoch_end_lrs(trainer: str, data_root: Path, out: Path, monkeypatch) -> list[float]:
    seen: list[list[float]] = []
    cls = TRAINER_REGISTRY.get(trainer)
    original = cls.after_train

    def keep_lrs(self):
        seen.append(list(self.epoch_end_lrs))
        original(self)

    monkeypatch.setattr(cls, "after_train", keep_lrs)
    run_train_in_process(train_argv(data_root, out, trainer=trainer))
    return seen[0]


def test_plugin_stepping_its_scheduler_gets_upstreams_schedule(data_root, tmp_path, monkeypatch):
    lrs = epoch_end_lrs("SchedulerSteppingPlugin", data_root, tmp_path, monkeypatch)
    assert lrs == pytest.approx(cosine_lrs(1, EPOCHS), abs=0)
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)  # stepped 4 times, not 8


def test_plugin_that_never_steps_keeps_a_constant_lr(data_root, tmp_path, monkeypatch):
    lrs = epoch_end_lrs("NeverSteppingPlugin", data_root, tmp_path, monkeypatch)
    assert lrs == [LR] * EPOCHS


def test_declared_epoch_step(data_root, tmp_path, monkeypatch):
    lrs = epoch_end_lrs("EpochStepTrainer", data_root, tmp_path, monkeypatch)
    assert lrs == pytest.approx(cosine_lrs(1, EPOCHS), abs=0)


def test_declared_iteration_step(data_root, tmp_path, monkeypatch):
    lrs = epoch_end_lrs("IterationStepTrainer", data_root, tmp_path, monkeypatch)
    # The schedule's T_max is MAX_EPOCH: stepped per batch it runs past its minimum and back.
    assert lrs == pytest.approx(cosine_lrs(BATCHES, EPOCHS), abs=0)


def test_misspelled_lr_step_is_refused_when_the_class_is_defined():
    with pytest.raises(TypeError, match="LR_STEP is 'epochs'"):

        class MisspelledStepTrainer(NeverSteppingPlugin):
            LR_STEP = "epochs"
