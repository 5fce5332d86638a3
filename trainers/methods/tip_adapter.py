"""Tip-Adapter and Tip-Adapter-F (Zhang et al., ECCV 2022), after gaopengcuhk/Tip-Adapter.

A cache over the few-shot train set: its keys are each train image's features averaged over
augmented views, then L2-normalised (upstream: 10 augmentation epochs of raw features, averaged,
normalised), its values the one-hot labels. For an L2-normalised image feature f [N, D]:

    logits = 100 * f @ W.T + alpha * exp(-beta * (1 - f @ keys.T)) @ values

where W [K, D] is zero-shot CLIP's classifier as upstream builds it (the dataset's template;
CLIP's 7 selected templates on ImageNet), normalised per template, averaged, normalised.
Tip-Adapter is training-free; Tip-Adapter-F fine-tunes the keys (upstream's `adapter`, a
bias-free Linear initialised from them) with cross-entropy, alpha and beta held at their initial
values, under AdamW (eps 1e-4) and a cosine schedule stepped per batch.

Both then search alpha and beta over upstream's grid (`search_grid`). Two deliberate departures
from upstream, so that no choice reads the test split: the search runs on the run's few-shot val
split (upstream: its full val split), and Tip-Adapter-F keeps the model of its last epoch
(upstream keeps the epoch of best test accuracy, and reports the larger of that accuracy and the
searched one). One exception: ImageNet's val split is its test split here, as in CoOp
(datasets/imagenet.py), so on ImageNet the search reads the test images, as upstream's does.

The views: under views:V the cache averages the V views the run trains on; exact means
upstream's protocol, so the cache averages CACHE_VIEWS (10) views of each image, views:10's,
shared through the feature store, while Tip-Adapter-F trains on fresh augmentations every epoch.
"""

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode as CN

from clip.backbone import ClipBackbone
from dassl.config import register_cfg_extension
from dassl.data.data_manager import keeping_last_batch
from dassl.engine import TRAINER_REGISTRY
from trainers.clip_base import ClipTrainer
from trainers.features import labels_of
from trainers.method_kind import MethodKind
from trainers.methods.zsclip import zeroshot_classifier
from trainers.protocol import EXACT, VIEWS, Protocol, protocol_of
from trainers.templates import tip_adapter_templates
from trainers.text import normalize

# Upstream's augment_epoch: augmented views per train image averaged into a cache key.
CACHE_VIEWS = 10
# Upstream scales zero-shot logits by the literal 100 (CLIP's trained logit scale), not the model's.
ZERO_SHOT_SCALE = 100.0


@register_cfg_extension
def _tip_adapter_keys(cfg: CN) -> None:
    cfg.TRAINER.TIP_ADAPTER = CN()
    cfg.TRAINER.TIP_ADAPTER.PREC = "fp16"  # upstream runs CLIP in fp16; the head is fp32
    # Defaults: upstream's Caltech101 settings (configs/grids/tip_adapter.yaml has every dataset's).
    cfg.TRAINER.TIP_ADAPTER.INIT_ALPHA = 3.0  # cache weight while -F trains (searched after)
    cfg.TRAINER.TIP_ADAPTER.INIT_BETA = 1.0  # affinity sharpness while -F trains (searched after)
    # Upstream's search_scale [beta, alpha] and search_step [beta, alpha]: see search_grid.
    cfg.TRAINER.TIP_ADAPTER.SEARCH_SCALE = [12.0, 5.0]
    cfg.TRAINER.TIP_ADAPTER.SEARCH_STEP = [200, 20]


def search_grid(scale: float, steps: int) -> list[float]:
    """Upstream's candidates: `steps` values from 0.1 up to (not including) `scale`."""
    return [i * (scale - 0.1) / steps + 0.1 for i in range(steps)]


def cache_logits(affinity: torch.Tensor, values: torch.Tensor, beta: float) -> torch.Tensor:
    """exp(-beta (1 - affinity)) [N, M] @ values [M, K], in upstream's arithmetic (bit for bit)."""
    return (beta * affinity - beta).exp() @ values


def search_alpha_beta(
    zero_shot: torch.Tensor,
    affinity: torch.Tensor,
    values: torch.Tensor,
    labels: torch.Tensor,
    betas: list[float],
    alphas: list[float],
) -> tuple[float, float, int]:
    """Upstream's search: beta outer, alpha inner, the first strictly better pair wins.

    zero_shot [N, K] (already scaled), affinity [N, M], values [M, K], labels [N]. Returns
    (beta, alpha, correct predictions). Each beta's cache logits are computed once (upstream
    recomputes them per alpha; the numbers are the same).
    """
    best = (0.0, 0.0, 0)  # upstream starts from beta = alpha = 0 and accuracy 0
    for beta in betas:
        votes = cache_logits(affinity, values, beta)  # [N, K]
        for alpha in alphas:
            correct = int(((zero_shot + votes * alpha).argmax(1) == labels).sum())
            if correct > best[2]:
                best = (beta, alpha, correct)
    return best


class TipAdapterHead(nn.Module):
    """Zero-shot logits plus the cache's votes. Saved: `cache_keys.weight` [M, D] (upstream's
    adapter weight) and `cache_values` [M, K]; the classifier is rebuilt from class names."""

    def __init__(
        self, text_features: torch.Tensor, cache_size: int, alpha: float, beta: float
    ) -> None:
        super().__init__()
        num_classes, dim = text_features.shape
        self.register_buffer("text_features", normalize(text_features.float()), persistent=False)
        self.cache_keys = nn.Linear(dim, cache_size, bias=False)  # weight [M, D]
        nn.init.zeros_(self.cache_keys.weight)
        self.register_buffer("cache_values", torch.zeros(cache_size, num_classes))
        self.alpha, self.beta = alpha, beta

    @torch.no_grad()
    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """features [V * M, D] (view-major, raw), labels [V * M] -> keys and values."""
        cache_size = self.cache_values.shape[0]
        views = features.view(-1, cache_size, features.shape[-1])  # [V, M, D]
        self.cache_keys.weight.copy_(normalize(views.mean(dim=0)))
        self.cache_values.copy_(F.one_hot(labels[:cache_size], self.cache_values.shape[1]))

    def zero_shot(self, features: torch.Tensor) -> torch.Tensor:
        return ZERO_SHOT_SCALE * normalize(features) @ self.text_features.t()  # [N, K]

    def affinity(self, features: torch.Tensor) -> torch.Tensor:
        return self.cache_keys(normalize(features))  # [N, M]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        votes = cache_logits(self.affinity(features), self.cache_values, self.beta)
        return self.zero_shot(features) + votes * self.alpha


class TipCacheTrainer(ClipTrainer):
    """What Tip-Adapter and Tip-Adapter-F share: the cache, its fit and the val search."""

    TRAINS = MethodKind.HEAD
    CFG_NODE = "TIP_ADAPTER"
    MODEL_NAME = "tip_adapter"
    PER_CLASS_KEYS = {"cache_values": 1}
    # The cache holds one row per train image: its shape follows the few-shot subset.
    EVAL_INHERITS = ("DATASET.NUM_SHOTS", "SEED")
    FITS_ON_TRAIN_FEATURES = True

    def check_cfg(self, cfg: CN) -> None:
        super().check_cfg(cfg)
        node = self.method_cfg(cfg)
        scale, steps = list(node.SEARCH_SCALE), list(node.SEARCH_STEP)
        if len(scale) != 2 or len(steps) != 2 or min(steps) < 1 or min(scale) <= 0.1:
            raise ValueError(
                f"TRAINER.TIP_ADAPTER.SEARCH_SCALE is {scale} and SEARCH_STEP {steps}; each "
                "holds two values, [beta, alpha], as upstream's search_scale and search_step: "
                "the largest value searched (above 0.1, where the search starts) and the "
                "number of values (at least 1). Fix: e.g. SEARCH_SCALE [12.0, 5.0] and "
                "SEARCH_STEP [200, 20] (upstream's Caltech101 setting)."
            )

    def build_head(self, backbone: ClipBackbone, classnames: list[str]) -> nn.Module:
        templates = tip_adapter_templates(self.cfg.DATASET.NAME)
        print(f"Prompt templates (n={len(templates)}): {templates}")
        node = self.method_cfg()
        return TipAdapterHead(
            zeroshot_classifier(backbone, classnames, templates),
            len(self.dm.dataset.train_x),
            node.INIT_ALPHA,
            node.INIT_BETA,
        )

    def fit_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Under exact, the cache still averages upstream's CACHE_VIEWS augmented views (those
        of views:10, from the feature store); otherwise the views the protocol made."""
        if self.protocol.kind != EXACT:
            return super().fit_features()
        views = self.train_view_features(Protocol(VIEWS, CACHE_VIEWS))  # [V, N, D]
        labels = labels_of(self.dm.dataset.train_x)
        features = views.reshape(-1, views.shape[-1]).float().to(self.device)
        return features, labels.repeat(CACHE_VIEWS).to(self.device)

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.head.fit(features, labels)

    @torch.no_grad()
    def before_final_evaluation(self) -> None:
        """Upstream's alpha/beta search, on the few-shot val split (never test); an evaluation on
        a dataset without val takes the trained run's winner."""
        winner = self.trained_winner()
        if winner is not None:
            self.head.alpha, self.head.beta = winner["alpha"], winner["beta"]
            return
        node = self.method_cfg()
        betas = search_grid(node.SEARCH_SCALE[0], node.SEARCH_STEP[0])
        alphas = search_grid(node.SEARCH_SCALE[1], node.SEARCH_STEP[1])
        features, labels = self.val_features()
        beta, alpha, correct = search_alpha_beta(
            self.head.zero_shot(features),
            self.head.affinity(features),
            self.head.cache_values,
            labels,
            betas,
            alphas,
        )
        self.head.alpha, self.head.beta = alpha, beta
        print(
            f"Searched on val ({len(labels)} images): beta {beta:.4f}, alpha {alpha:.4f}, "
            f"val accuracy {100 * correct / len(labels):.2f}%"
        )
        self.record_hyperparameter_search(
            {"beta": betas, "alpha": alphas},
            {"beta": beta, "alpha": alpha},
            split="val",
            size=len(labels),
        )


@TRAINER_REGISTRY.register()
class TipAdapter(TipCacheTrainer):
    """Training-free Tip-Adapter: fit the cache, save it, search alpha/beta on val, test."""

    @classmethod
    def train_protocol(cls, cfg: CN) -> Protocol:
        """It trains no epoch, so exact reads what upstream's cache reads: views:CACHE_VIEWS."""
        protocol = protocol_of(cfg)
        return Protocol(VIEWS, CACHE_VIEWS) if protocol.kind == EXACT else protocol

    def train(self) -> None:
        """The fit replaces the epochs (a resumed run loads the cache instead). Saved as the
        last epoch's checkpoint, and as the best one, so either TEST.FINAL_MODEL loads it."""
        self.before_train()
        last = self.max_epoch - 1
        self.save_model(last, self.output_dir)
        self.save_model(last, self.output_dir, model_name="model-best.pth.tar")
        self.after_train()


@TRAINER_REGISTRY.register()
class TipAdapterF(TipCacheTrainer):
    """Tip-Adapter-F: the cache keys fine-tuned with upstream's optimizer and schedule."""

    LR_STEP = "iteration"

    def build_data_loader(self) -> None:
        """The engine's loaders, but the train loader keeps its last, incomplete batch, as
        upstream's does (Dassl's drops it)."""
        super().build_data_loader()
        self.train_loader_x = keeping_last_batch(self.train_loader_x)

    def make_optimizer(self, learner: nn.Module) -> torch.optim.Optimizer:
        """Upstream's AdamW: OPTIM.LR, eps 1e-4, torch's default weight decay (0.01)."""
        return torch.optim.AdamW(learner.parameters(), lr=self.cfg.OPTIM.LR, eps=1e-4)

    def make_lr_scheduler(self, optim: torch.optim.Optimizer) -> Any:
        """Upstream's cosine over every batch of the run, no warm-up, down to 0."""
        return torch.optim.lr_scheduler.CosineAnnealingLR(optim, self.iterations)
