"""CLAP: CLass-Adaptive linear Probing (Silva-Rodriguez et al., CVPR 2024), and its ZS-LP.

A linear probe whose class prototypes [K, D] start from CLIP's zero-shot text classifier (ZS-LP)
and, under a constraint, are pulled back towards it by a class-wise penalty
``mean_k(alpha_k * d(prototype_k, zero-shot_k))`` whose multipliers ``alpha_k`` are the zero-shot
classifier's mean softmax score of class k on its own train features (CLAP). Nothing is chosen
on validation data: SGD at lr 0.1, 300 epochs, batch 256, on 20 augmented views of every train
image encoded once (``views:20``), as upstream (jusiro/CLAP, ``trainers/adapters.py``).

What follows upstream's computation, step by step:

- the zero-shot classifier is TaskRes's base (the dataset's template, plus CLIP's 7 selected
  ones on ImageNet, plain mean of the unnormalised text features), and the prototypes start
  as a copy of it; logits are ``(normalize(f) @ normalize(prototypes).T) * logit_scale``;
- the train pool is every view of every train image; each epoch shuffles the whole pool with
  numpy's global generator (``np.random.rand(M).argsort()``, upstream's own call) and trains on
  its first ``batches x 256`` rows, where ``batches`` is the image loader's batch count (so one
  epoch sees about one view per image, and a set smaller than a batch still gets full batches);
- ``TRAINER.CLAP.CONSTRAINT`` is upstream's ``TRAINER.ADAPTER.CONSTRAINT`` (see
  ``parse_constraint``); ``-adaptative`` updates the multipliers after every epoch with the
  PHR augmented-Lagrangian rule (``phr_update``).

So the pool replaces the ``views:V`` protocol's epoch of one view per image: ``views:V`` gives
a pool of V views per image, ``plain`` one un-augmented view, and ``exact`` means ``views:20``.

Upstream builds its pool in the order its RandomSampler visits the images on each pass; here it
is view-major in the train set's order. Each epoch's uniform shuffle makes the two the same
distribution; benchmarks/clap_parity.py shows the same weights on the same order and views.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode as CN

from clip.backbone import ClipBackbone
from dassl.config import register_cfg_extension
from dassl.engine import TRAINER_REGISTRY
from trainers.clip_base import ClipTrainer
from trainers.features import FEATURES, FeatureDataset
from trainers.method_kind import MethodKind
from trainers.methods.taskres import taskres_base
from trainers.protocol import EXACT, VIEWS, Protocol, protocol_of
from trainers.text import normalize

PUBLISHED_VIEWS = 20  # upstream's epochs_aumentation: augmented passes over the train set
DISTANCES = ("l2", "cosine")
MODIFIERS = ("balanced", "corrected", "constant", "adaptative")
# Buffers only training reads (upstream keeps them outside its checkpoints).
MULTIPLIER_KEYS = ("alpha_constraint", "penalty_parameter")


@register_cfg_extension
def _clap_keys(cfg: CN) -> None:
    cfg.TRAINER.CLAP = CN()
    # Upstream's fp16 encodes text in fp16 but, its model cast to fp32 before extraction, images
    # in fp32: fp32 computes its image features exactly (the text ones differ by fp16 rounding).
    cfg.TRAINER.CLAP.PREC = "fp32"
    # "none" (ZS-LP) or DISTANCE[-MODIFIER...]: l2 (CLAP) or cosine, with balanced, corrected,
    # constant, adaptative (see parse_constraint).
    cfg.TRAINER.CLAP.CONSTRAINT = "l2"


@dataclass(frozen=True)
class Constraint:
    """One CONSTRAINT value: the penalty's distance and how its multipliers are set."""

    distance: str | None  # None: no constraint (ZS-LP)
    balanced: bool = False  # every multiplier 1
    corrected: bool = False  # zero-shot scores rescaled to sum to K
    constant: bool = False  # every multiplier the mean zero-shot score
    adaptive: bool = False  # PHR update of the multipliers after every epoch


def parse_constraint(value: str) -> Constraint:
    """``"none"`` or ``DISTANCE[-MODIFIER...]`` as a Constraint; anything else is refused with
    the accepted spellings (upstream matches substrings, so its values all parse here)."""
    if value == "none":
        return Constraint(None)
    distance, *modifiers = value.split("-")
    unknown = [m for m in modifiers if m not in MODIFIERS]
    if distance not in DISTANCES or unknown or len(set(modifiers)) != len(modifiers):
        raise ValueError(
            f"TRAINER.CLAP.CONSTRAINT is {value!r}; choose none (ZS-LP) or a distance "
            f"({', '.join(DISTANCES)}) followed by any of -{', -'.join(MODIFIERS)}, each at most "
            "once, e.g. l2 (CLAP) or l2-adaptative"
        )
    flags = {m: m in modifiers for m in MODIFIERS}
    if flags["balanced"] and (flags["corrected"] or flags["constant"]):
        raise ValueError(
            f"TRAINER.CLAP.CONSTRAINT is {value!r}: balanced sets every multiplier to 1, so "
            "corrected and constant (which rescale zero-shot scores) cannot apply. Fix: drop "
            "one of them."
        )
    return Constraint(
        distance,
        flags["balanced"],
        flags["corrected"],
        flags["constant"],
        adaptive=flags["adaptative"],
    )


def dissimilarity(prototypes: torch.Tensor, anchors: torch.Tensor, distance: str) -> torch.Tensor:
    """Per class [K]: squared L2 distance, or 1 - cosine similarity, of [K, D] rows."""
    if distance == "l2":
        return (prototypes - anchors).pow(2).sum(-1)
    return 1 - F.cosine_similarity(prototypes, anchors)


def zero_shot_multipliers(
    logits: torch.Tensor, labels: torch.Tensor, constraint: Constraint
) -> torch.Tensor:
    """Initial multipliers [K] from zero-shot logits [M, K] of the train features (labels [M]):
    per class, the mean softmax score of its own class (upstream's formula), then corrected or
    constant if asked; all ones when balanced."""
    num_classes = logits.shape[-1]
    if constraint.balanced:
        return torch.ones(num_classes)
    one_hot = F.one_hot(labels, num_classes)  # [M, K]
    counts = one_hot.sum(0)
    if bool((counts == 0).any()):
        absent = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(
            f"CLAP's multipliers are per-class zero-shot scores on the train features, and "
            f"classes {absent} have no train image. Fix: use a train split with every class."
        )
    performance = torch.diag(torch.softmax(logits, -1).t() @ one_hot.float()) / counts
    if constraint.corrected:
        performance *= num_classes / torch.sum(performance).item()
    if constraint.constant:
        performance = torch.ones(num_classes) * torch.mean(performance).item()
    return performance


def phr_update(
    dissimilarities: torch.Tensor, multipliers: torch.Tensor, penalty: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One outer step of the augmented Lagrangian (PHR), per class [K]: the new multiplier is the
    PHR function's gradient at the constraint value, ``max(alpha + rho * h, 0)``, and the new
    penalty ``rho`` is the constraint value ``h`` itself, as upstream sets it."""
    shifted = multipliers + penalty * dissimilarities
    return torch.where(shifted >= 0, shifted, torch.zeros_like(shifted)), dissimilarities.clone()


class ClapHead(nn.Module):
    """Class prototypes [K, D] learned from the zero-shot classifier, and the penalty that keeps
    them near it. State-dict keys are upstream's (``prototypes``, ``base_text_features``), plus
    the multipliers ``alpha_constraint`` and ``penalty_parameter`` [K] so that a resume is exact."""

    def __init__(
        self, base_text_features: torch.Tensor, logit_scale: float, constraint: Constraint
    ) -> None:
        super().__init__()
        self.logit_scale = logit_scale
        self.constraint = constraint
        base = base_text_features.float()
        self.register_buffer("base_text_features", base)  # [K, D], unnormalised
        self.prototypes = nn.Parameter(base.clone())  # [K, D]
        self.register_buffer("alpha_constraint", torch.zeros(len(base)))
        self.register_buffer("penalty_parameter", torch.zeros(len(base)))

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        # [N, D] -> [N, K]; the scale multiplies the cosines, in upstream's order.
        return (normalize(image_features) @ normalize(self.prototypes).t()) * self.logit_scale

    def penalty(self) -> torch.Tensor:
        """The constraint term added to the cross-entropy (0 without a constraint)."""
        if self.constraint.distance is None:
            return torch.zeros((), device=self.prototypes.device)
        distance = dissimilarity(self.prototypes, self.base_text_features, self.constraint.distance)
        return torch.mean(self.alpha_constraint * distance)

    @torch.no_grad()
    def init_multipliers(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Multipliers from the zero-shot scores of the train features [M, D] (labels [M])."""
        multipliers = zero_shot_multipliers(self(features), labels, self.constraint)
        self.alpha_constraint.copy_(multipliers)
        self.penalty_parameter.zero_()

    @torch.no_grad()
    def outer_step(self) -> None:
        """PHR update of the multipliers; upstream measures the squared L2 distance here
        whatever the penalty's distance."""
        distance = dissimilarity(self.prototypes, self.base_text_features, "l2")
        alpha, rho = phr_update(distance, self.alpha_constraint, self.penalty_parameter)
        self.alpha_constraint.copy_(alpha)
        self.penalty_parameter.copy_(rho)


class ShuffledViewPool:
    """An epoch's train batches as upstream CLAP draws them: the pool of every view of every
    train image ([V * N], view-major), shuffled with ``np.random.rand(V * N).argsort()`` (numpy's
    global generator, which checkpoints hold), cut into ``num_batches`` batches of
    ``batch_size`` rows."""

    def __init__(self, train_set: FeatureDataset, batch_size: int, num_batches: int) -> None:
        self.train_set = train_set
        self.batch_size = batch_size
        self.num_batches = num_batches

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        views = self.train_set.features  # [V, N, D]
        pool = views.reshape(-1, views.shape[-1])  # [V * N, D]
        labels = self.train_set.labels.repeat(views.shape[0])  # [V * N]
        order = torch.from_numpy(np.random.rand(len(pool)).argsort(axis=0))
        for batch in range(self.num_batches):
            rows = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            yield {FEATURES: pool[rows], "label": labels[rows]}


@TRAINER_REGISTRY.register()
class CLAP(ClipTrainer):
    """ZS-LP and CLAP (https://arxiv.org/abs/2312.12730): fixed hyperparameters, no validation."""

    TRAINS = MethodKind.HEAD
    EPOCHS_PER_CHECKPOINT = 25  # 300 one-batch epochs: writing each checkpoint costs more
    CFG_NODE = "CLAP"
    MODEL_NAME = "adapter"  # upstream's register_model name
    PER_CLASS_KEYS = {
        "prototypes": 0,
        "base_text_features": 0,
        "alpha_constraint": 0,
        "penalty_parameter": 0,
    }
    FITS_ON_TRAIN_FEATURES = True

    def check_cfg(self, cfg: CN) -> None:
        super().check_cfg(cfg)
        parse_constraint(cfg.TRAINER.CLAP.CONSTRAINT)  # refuses a bad value before any work

    @classmethod
    def train_protocol(cls, cfg: CN) -> Protocol:
        """The published protocol, 20 augmented views encoded once: exact means views:20."""
        protocol = protocol_of(cfg)
        return Protocol(VIEWS, PUBLISHED_VIEWS) if protocol.kind == EXACT else protocol

    def build_data_loader(self) -> None:
        super().build_data_loader()
        self.train_loader_x = ShuffledViewPool(
            self.train_set, self.cfg.DATALOADER.TRAIN_X.BATCH_SIZE, len(self.train_loader_x)
        )

    def build_head(self, backbone: ClipBackbone, classnames: list[str]) -> nn.Module:
        constraint = self.cfg.TRAINER.CLAP.CONSTRAINT
        print(f"Zero-shot-initialised linear probe, constraint {constraint}")
        base = taskres_base(backbone, classnames, self.cfg.DATASET.NAME)
        return ClapHead(base, self.logit_scale, parse_constraint(constraint))

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """The multipliers, from the zero-shot scores of every train view (a constraint only)."""
        if self.head.constraint.distance is None:
            return
        self.head.init_multipliers(features, labels)
        shown = [round(v, 3) for v in self.head.alpha_constraint.tolist()]
        print(f"Lagrangian multipliers: {shown}")

    def training_loss(
        self, features: torch.Tensor, label: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy plus the class-adaptive penalty towards the zero-shot prototypes."""
        output = self.model(features)  # [N, K]
        return F.cross_entropy(output, label) + self.head.penalty(), output

    def after_epoch(self) -> None:
        if self.head.constraint.adaptive:
            self.head.outer_step()  # before the checkpoint, as upstream
        super().after_epoch()

    def check_loaded_keys(
        self, name: str, model_path: str, missing: list[str], unexpected: list[str]
    ) -> None:
        """Upstream's checkpoints hold no multipliers; evaluation never reads them."""
        missing = [key for key in missing if key not in MULTIPLIER_KEYS]
        super().check_loaded_keys(name, model_path, missing, unexpected)
