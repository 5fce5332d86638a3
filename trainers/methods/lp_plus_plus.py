"""LP++ (Huang et al., CVPR 2024, "LP++: A Surprisingly Strong Linear Probe for Few-Shot CLIP";
upstream FereshteShakeri/FewShot-CLIP-Strong-Baseline, ``methods/linear_probe_p2.py`` with
``configs/base.yaml``): a linear probe whose class weights blend learnable visual prototypes with
the text embeddings through class-wise multipliers.

On normalised image features f the logits are ``W f + b + alpha_k (f . t_k)``. Everything upstream
derives from the train features (M of them, one augmented view per image) is derived here the same
way, with no search and no learning rate in the config:

- ``W`` starts as the per-class sum of the train features, ``b`` as nn.Linear's default draw;
- every ``alpha_k`` starts as 250 times the mean over classes of the mean text logit
  ``f . t_k`` of the class's own features;
- ``W`` and ``b`` take SGD steps (momentum 0.9) of size ``4 M / lambda_max(F^T F)``;
- ``alpha`` takes a gradient step of size ``M / (4 max_k sum_m (f_m . t_k)^2)`` every 10 epochs,
  along its gradient summed over every epoch so far (upstream never zeroes it).

Training is full-batch, one step per epoch (300 epochs upstream), and the model tested is the last
of the epochs with the best val accuracy (upstream's ``>=``). The update is written out in the
head, so its whole state (momenta, the summed alpha gradient, the step sizes) is in the checkpoint
and a resumed run continues exactly.
"""

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode as CN

from clip.backbone import ClipBackbone
from dassl.config import register_cfg_extension
from dassl.engine import TRAINER_REGISTRY
from dassl.metrics import compute_accuracy
from trainers.clip_base import ClipTrainer
from trainers.features import feature_loader
from trainers.fitted import require_every_class
from trainers.method_kind import MethodKind
from trainers.methods.zsclip import zeroshot_classifier
from trainers.protocol import EXACT, VIEWS, Protocol, protocol_of
from trainers.templates import tip_adapter_templates
from trainers.text import normalize

MOMENTUM = 0.9  # upstream's SGD momentum for the prototypes
ALPHA_EVERY = 10  # epochs between two steps of alpha
ALPHA_INIT_SCALE = 250.0  # alpha starts at 250 x the mean text logit of the true class


@register_cfg_extension
def _lp_plus_plus_keys(cfg: CN) -> None:
    cfg.TRAINER.LP_PLUS_PLUS = CN()
    cfg.TRAINER.LP_PLUS_PLUS.PREC = "fp16"  # upstream encodes with CLIP in fp16 (on CUDA)


def init_alpha(features: torch.Tensor, labels: torch.Tensor, text: torch.Tensor) -> float:
    """250 x the mean over classes of the mean text logit of each class's own features."""
    own = (features @ text.t()).gather(1, labels[:, None]).squeeze(1)  # [M]: f_m . t_{y_m}
    per_class = torch.stack([own[labels == k].mean() for k in range(len(text))])  # [K]
    return float((ALPHA_INIT_SCALE * per_class.double()).mean())


def prototype_step_size(features: torch.Tensor) -> float:
    """``4 M / lambda_max(F^T F)`` for features F [M, D]."""
    return 4 * len(features) / float(torch.linalg.eigvalsh(features.t() @ features).max())


def alpha_step_size(features: torch.Tensor, text: torch.Tensor) -> float:
    """``M / (4 max_k sum_m (f_m . t_k)^2)``."""
    return len(features) / (float((features @ text.t()).pow(2).sum(dim=0).max()) * 4)


class LPPlusPlusHead(nn.Module):
    """``W f + b + alpha * (f t^T)`` on normalised features; keys ``prototypes.weight`` [K, D],
    ``prototypes.bias`` [K], ``alpha`` [K] and the update's state (momenta, the summed alpha
    gradient, the step sizes); the text embeddings are rebuilt from class names, not saved."""

    def __init__(self, text_features: torch.Tensor) -> None:
        super().__init__()
        num_classes, dim = text_features.shape
        self.register_buffer("text_features", normalize(text_features.float()), persistent=False)
        self.prototypes = nn.Linear(dim, num_classes)  # upstream's nn.Linear: its bias init stays
        self.alpha = nn.Parameter(torch.zeros(num_classes))
        self.register_buffer("weight_momentum", torch.zeros(num_classes, dim))
        self.register_buffer("bias_momentum", torch.zeros(num_classes))
        self.register_buffer("alpha_gradient", torch.zeros(num_classes))  # summed over epochs
        self.register_buffer("prototype_lr", torch.zeros(()))
        self.register_buffer("alpha_lr", torch.zeros(()))
        self.register_buffer("alpha_init", torch.zeros(()))
        self.register_buffer("train_count", torch.zeros((), dtype=torch.long))  # M

    @torch.no_grad()
    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Initialise from the normalised train features [M, D] and labels [M]."""
        one_hot = F.one_hot(labels, len(self.alpha)).float()  # [M, K]
        self.prototypes.weight.copy_(one_hot.t() @ features)  # per-class sums
        self.alpha_init.fill_(init_alpha(features, labels, self.text_features))
        self.alpha.copy_(self.alpha_init.expand_as(self.alpha))
        self.prototype_lr.fill_(prototype_step_size(features))
        self.alpha_lr.fill_(alpha_step_size(features, self.text_features))
        self.train_count.fill_(len(features))

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        features = normalize(image_features)
        return self.prototypes(features) + self.alpha * (features @ self.text_features.t())

    @torch.no_grad()
    def step(self, update_alpha: bool) -> None:
        """Apply the gradients of one full-batch loss: SGD with momentum on the prototypes (as
        torch.optim.SGD computes it), alpha's gradient added to its sum, and when
        ``update_alpha`` a step of alpha along that sum. Clears the gradients."""
        prototypes = self.prototypes
        for param, momentum in (
            (prototypes.weight, self.weight_momentum),
            (prototypes.bias, self.bias_momentum),
        ):
            momentum.mul_(MOMENTUM).add_(param.grad)
            param.add_(momentum, alpha=-float(self.prototype_lr))
        self.alpha_gradient.add_(self.alpha.grad)
        if update_alpha:
            self.alpha.sub_(self.alpha_lr * self.alpha_gradient)
        self.zero_grad(set_to_none=True)


@TRAINER_REGISTRY.register()
class LPPlusPlus(ClipTrainer):
    """LP++: visual prototypes plus class-wise multiplied text embeddings, full-batch."""

    TRAINS = MethodKind.HEAD
    EPOCHS_PER_CHECKPOINT = 25  # 300 one-batch epochs: writing each checkpoint costs more
    CFG_NODE = "LP_PLUS_PLUS"
    # The update is written for fp32 gradients: amp's scaled ones do not apply.
    CFG_CHOICES = {"PREC": ("fp16", "fp32")}
    MODEL_NAME = "lp_plus_plus"
    PER_CLASS_KEYS = {
        "prototypes.weight": 0,
        "prototypes.bias": 0,
        "alpha": 0,
        "weight_momentum": 0,
        "bias_momentum": 0,
        "alpha_gradient": 0,
    }
    FITS_ON_TRAIN_FEATURES = True

    @classmethod
    def train_protocol(cls, cfg: CN) -> Protocol:
        """upstream encodes one augmented view of each train image once and trains on it every
        epoch: exact means views:1 here (views:V and plain are taken as given)."""
        protocol = protocol_of(cfg)
        return Protocol(VIEWS, 1) if protocol.kind == EXACT else protocol

    def build_data_loader(self) -> None:
        """Full-batch, as upstream: every epoch is one step on all train features, in order."""
        super().build_data_loader()
        self.train_loader_x = feature_loader(
            self.train_set, len(self.train_set), "SequentialSampler"
        )

    def build_head(self, backbone: ClipBackbone, classnames: list[str]) -> nn.Module:
        templates = tip_adapter_templates(self.cfg.DATASET.NAME)
        return LPPlusPlusHead(zeroshot_classifier(backbone, classnames, templates))

    def make_optimizer(self, learner: nn.Module) -> None:
        """No optimizer object: the head applies upstream's update itself (``step``), with step
        sizes derived from the train features, and keeps its state for checkpoints."""
        return None

    def make_lr_scheduler(self, optim: None) -> None:
        return None

    def get_current_lr(self, names: str | list[str] | None = None) -> float:
        """The prototypes' step size, for the log (there is no optimizer to ask)."""
        return float(self.head.prototype_lr)

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        classnames = self.dm.dataset.classnames
        require_every_class(labels, classnames, "LP++", "starts each class from its features")
        self.head.fit(normalize(features), labels)

    def forward_backward(self, batch: dict) -> dict[str, float]:
        features, labels = self.parse_batch_train(batch)
        logits = self.model(features)
        loss = F.cross_entropy(logits, labels)
        self.model_backward(loss)
        self.head.step(update_alpha=(self.epoch + 1) % ALPHA_EVERY == 0)
        return {"loss": loss.item(), "acc": compute_accuracy(logits, labels)[0].item()}

    def is_new_best(self, val_result: float) -> bool:
        """upstream keeps the last of equally good epochs (``>=``)."""
        return val_result >= self.best_result

    def before_final_evaluation(self) -> None:
        """Say in the result record how the hyperparameters were chosen: derived from the train
        features (held by the head, in eval-only runs too), not searched."""
        head = self.head
        self.record_derived_hyperparameters(
            {
                "prototype_lr": float(head.prototype_lr),
                "alpha_lr": float(head.alpha_lr),
                "alpha_init": float(head.alpha_init),
            },
            formula="upstream LP++: prototype_lr 4M/lambda_max(F^T F), alpha_lr "
            "M/(4 max_k sum_m (f_m.t_k)^2), alpha_init 250 x mean true-class text logit",
            split="train",
            size=int(head.train_count),
        )
