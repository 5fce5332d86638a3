"""GDA (Wang et al., ICLR 2024, "A Hard-to-Beat Baseline for Training-free CLIP-Based
Adaptation"; upstream mrflogs/ICLR24, ``main_few_shots.py``): Gaussian discriminant analysis on
CLIP's normalised image features, added to zero-shot CLIP. Nothing is trained.

From the train features (upstream's 10 augmented views of every train image) it estimates the
class means and one precision matrix shared by all classes, upstream's shrinkage estimate
``D * pinv((N - 1) * S + trace(S) * I)`` of the covariance S of the class-centred features. With
uniform priors the Gaussian posterior is linear: weight ``mu_k P`` and bias
``log(1/K) - mu_k P mu_k / 2``. The logits are ``100 * f t^T + alpha * (f W^T + b)``, with alpha
chosen from upstream's grid by accuracy on the val split before the final test (in eval-only runs
too; TRAINER.GDA.ALPHA fixes it instead). The fitted classifier (``weight`` [K, D], ``bias`` [K])
is the checkpoint, saved as epoch 1.
"""

import math

import torch
from torch import nn
from yacs.config import CfgNode as CN

from clip.backbone import ClipBackbone
from dassl.config import register_cfg_extension
from dassl.engine import TRAINER_REGISTRY
from trainers.clip_base import ClipTrainer
from trainers.fitted import require_every_class
from trainers.method_kind import MethodKind
from trainers.methods.zsclip import zeroshot_classifier
from trainers.protocol import EXACT, VIEWS, Protocol, protocol_of
from trainers.templates import tip_adapter_templates
from trainers.text import normalize

# upstream's augment_epoch: the train images are encoded under 10 draws of the augmentation.
AUGMENTED_VIEWS = 10
# upstream scales the zero-shot logits by a fixed 100 (CLIP's logit scale), not the model's own.
ZERO_SHOT_SCALE = 100.0
# upstream's alpha when no grid value classifies any val image correctly.
FALLBACK_ALPHA = 0.1


@register_cfg_extension
def _gda_keys(cfg: CN) -> None:
    cfg.TRAINER.GDA = CN()
    # upstream turns CLIP to fp32 (clip_model.float()) before it encodes the train images.
    cfg.TRAINER.GDA.PREC = "fp32"
    # upstream's grid for the weight of the GDA logits, searched on val.
    cfg.TRAINER.GDA.ALPHA_GRID = [0.0001, 0.001, 0.01, 0.1, 1.0, 10.0, 100.0]
    # A value >= 0 is used instead of the search: for an evaluation on a dataset without val,
    # e.g. ImageNet's alpha on ImageNet-V2/Sketch/A/R, as upstream's main_robustness.py does.
    cfg.TRAINER.GDA.ALPHA = -1.0


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean [K, D] of each class's features [M, D]."""
    return torch.stack([features[labels == k].mean(dim=0) for k in range(num_classes)])


def shrunk_precision(
    features: torch.Tensor, labels: torch.Tensor, means: torch.Tensor
) -> torch.Tensor:
    """Precision [D, D] shared by all classes: ``D * pinv((N - 1) S + trace(S) I)``, where S is
    the covariance of the features [N, D] centred on their class means [K, D] (class by class)."""
    centred = torch.cat([features[labels == k] - means[k] for k in range(len(means))])
    count, dim = centred.shape
    covariance = centred.T.cov()  # [D, D], unbiased
    identity = torch.eye(dim, device=centred.device)
    return dim * torch.linalg.pinv((count - 1) * covariance + covariance.trace() * identity)


def gaussian_classifier(
    means: torch.Tensor, precision: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight [K, D] and bias [K] of the posterior of Gaussians with a shared precision and
    uniform priors."""
    weight = means @ precision  # [K, D]
    quadratic = torch.einsum("kd,de,ke->k", means, precision, means)  # mu_k P mu_k
    return weight, math.log(1.0 / len(means)) - quadratic / 2


class GDAHead(nn.Module):
    """Zero-shot logits plus alpha times the Gaussian classifier's; keys ``weight`` [K, D] and
    ``bias`` [K] (the zero-shot classifier is rebuilt from class names, not saved)."""

    def __init__(self, text_features: torch.Tensor) -> None:
        super().__init__()
        num_classes, dim = text_features.shape
        self.register_buffer("text_features", normalize(text_features.float()), persistent=False)
        self.register_buffer("weight", torch.zeros(num_classes, dim))
        self.register_buffer("bias", torch.zeros(num_classes))
        self.alpha: float | None = None  # chosen on val before the final evaluation

    @torch.no_grad()
    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Fill the classifier from the normalised train features [M, D] and labels [M]."""
        means = class_means(features, labels, len(self.weight))
        weight, bias = gaussian_classifier(means, shrunk_precision(features, labels, means))
        self.weight.copy_(weight)
        self.bias.copy_(bias)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        if self.alpha is None:
            raise RuntimeError("GDA's alpha is chosen on val before the final evaluation")
        features = normalize(image_features)
        zero_shot = ZERO_SHOT_SCALE * features @ self.text_features.t()
        return zero_shot + self.alpha * (features @ self.weight.t() + self.bias)


@TRAINER_REGISTRY.register()
class GDA(ClipTrainer):
    """Training-free: GDA fitted on the train features, its blend weight alpha searched on val."""

    TRAINS = MethodKind.HEAD
    CFG_NODE = "GDA"
    MODEL_NAME = "gda"
    PER_CLASS_KEYS = {"weight": 0, "bias": 0}
    # alpha is searched again on val by eval-only runs: the same val split (its shots, its seed).
    EVAL_INHERITS = ("DATASET.NUM_SHOTS", "SEED")
    FITS_ON_TRAIN_FEATURES = True

    def check_cfg(self, cfg: CN) -> None:
        super().check_cfg(cfg)
        if cfg.OPTIM.MAX_EPOCH != 1:
            raise ValueError(
                f"OPTIM.MAX_EPOCH is {cfg.OPTIM.MAX_EPOCH}, but GDA trains no epochs: its "
                "classifier is fitted in closed form and saved as epoch 1. Fix: set "
                "OPTIM.MAX_EPOCH 1 (configs/trainers/GDA/*.yaml do)."
            )
        if cfg.TEST.FINAL_MODEL != "last_step":
            raise ValueError(
                f"TEST.FINAL_MODEL is {cfg.TEST.FINAL_MODEL}, but GDA has no epochs to choose "
                "from on val (its alpha is searched on val instead). Fix: set TEST.FINAL_MODEL "
                "last_step."
            )

    @classmethod
    def train_protocol(cls, cfg: CN) -> Protocol:
        """upstream's published protocol fits on 10 augmented views of each train image: exact
        means views:10 here (views:V and plain are taken as given)."""
        protocol = protocol_of(cfg)
        return Protocol(VIEWS, AUGMENTED_VIEWS) if protocol.kind == EXACT else protocol

    def build_head(self, backbone: ClipBackbone, classnames: list[str]) -> nn.Module:
        templates = tip_adapter_templates(self.cfg.DATASET.NAME)
        return GDAHead(zeroshot_classifier(backbone, classnames, templates))

    def make_optimizer(self, learner: nn.Module) -> None:
        """Nothing is optimised: the classifier is fitted in closed form."""
        return None

    def make_lr_scheduler(self, optim: None) -> None:
        return None

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        classnames = self.dm.dataset.classnames
        require_every_class(labels, classnames, "GDA", "estimates a mean per class")
        self.head.fit(normalize(features), labels)

    def run_epoch(self) -> None:
        """GDA's one epoch trains nothing: ``fit`` filled the classifier before it, and the
        engine saves it after it (model.pth.tar-1)."""

    @torch.no_grad()
    def before_final_evaluation(self) -> None:
        """Choose alpha from the grid by val accuracy (the first best; upstream's fallback when
        none classifies a val image), unless TRAINER.GDA.ALPHA gives it."""
        if self.method_cfg().ALPHA >= 0:
            self.head.alpha = float(self.method_cfg().ALPHA)
            print(f"alpha {self.head.alpha} (TRAINER.GDA.ALPHA; not searched)")
            return
        winner = self.trained_winner()
        if winner is not None:
            self.head.alpha = float(winner["alpha"])
            return
        features, labels = self.val_features()
        grid = [float(alpha) for alpha in self.method_cfg().ALPHA_GRID]
        best_alpha, best_accuracy, accuracies = FALLBACK_ALPHA, 0.0, {}
        for alpha in grid:
            self.head.alpha = alpha
            correct = int((self.model(features).argmax(dim=1) == labels).sum())
            accuracies[alpha] = 100.0 * correct / len(labels)
            if accuracies[alpha] > best_accuracy:
                best_alpha, best_accuracy = alpha, accuracies[alpha]
        self.head.alpha = best_alpha
        print(f"Chosen alpha {best_alpha} (val accuracy over the grid: {accuracies})")
        self.record_hyperparameter_search(
            {"alpha": grid}, {"alpha": best_alpha}, split="val", size=len(labels)
        )
