"""A trainer written only against upstream Dassl's API names, as CoOp-family trainers are.

Nothing here may use an engine name that upstream lacks: the tests prove that such a trainer runs
unchanged on this engine.
"""

import torch.nn as nn
from torch.nn import functional as F

from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import count_num_param


@TRAINER_REGISTRY.register(force=True)
class UpstreamStyleTrainer(TrainerX):
    """Linear classifier on mean colours (slow to learn on purpose: val accuracy moves between
    epochs); learning-rate step once per epoch, as CoOp does."""

    def build_model(self):
        cfg = self.cfg
        print("Building a linear classifier on mean colours")
        self.model = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, self.num_classes)
        )
        self.model.to(self.device)
        print(f"# params: {count_num_param(self.model):,}")
        self.optim = build_optimizer(self.model, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model("linear_head", self.model, self.optim, self.sched)

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        output = self.model(image)
        loss = F.cross_entropy(output, label)
        self.model_backward_and_update(loss)

        loss_summary = {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return loss_summary

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)
