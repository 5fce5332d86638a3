"""A toy Tip-Adapter-F-style method, a head fitted from data, written the way README's "Adding a
method" says: one config extension, one head, one ClipTrainer subclass, no change to shared code.

The head keeps a cache whose keys are the normalised train features and whose values are the
one-hot train labels, fitted by the ``fit`` hook on a fresh start (never after a resume: the keys
are then fine-tuned, and a refit would undo that); its logits are the zero-shot ones plus
``alpha`` times the cache's affinity-weighted votes. The keys and ``alpha`` are learned with
upstream's AdamW (eps 1e-4) and a cosine schedule stepped per iteration; before the final
evaluation the sharpness ``beta`` is searched on val (in training and eval-only runs alike).
The cache holds one row per train image, so eval-only inherits DATASET.NUM_SHOTS and SEED.
tests/trainers/test_new_method.py and test_method_kinds.py run it through train.py.
"""

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode as CN

from clip.backbone import ClipBackbone
from dassl.config import register_cfg_extension
from dassl.engine import TRAINER_REGISTRY
from trainers.clip_base import ClipTrainer
from trainers.method_kind import MethodKind
from trainers.methods.zsclip import zeroshot_classifier
from trainers.templates import custom_template
from trainers.text import normalize


@register_cfg_extension
def _cache_keys(cfg: CN) -> None:
    cfg.TRAINER.CACHE = CN()
    cfg.TRAINER.CACHE.PREC = "fp32"
    cfg.TRAINER.CACHE.ALPHA = 1.0  # initial weight of the cache's votes (learned)
    cfg.TRAINER.CACHE.BETA_GRID = [1.0, 5.5]  # sharpness of the affinities, searched on val


def cache_logits(
    features: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, beta: float
) -> torch.Tensor:
    """Votes [N, K] of the cache: exp(-beta (1 - cos)) affinities [N, M] times values [M, K]."""
    return torch.exp(-beta * (1 - normalize(features) @ keys.t())) @ values


class CacheHead(nn.Module):
    """Zero-shot logits plus alpha times the cache's votes; keys `alpha`, `cache_keys` [M, D],
    `cache_values` [M, K] (the zero-shot classifier is rebuilt from class names, not saved)."""

    def __init__(
        self, text_features: torch.Tensor, logit_scale: float, cache_size: int, alpha: float
    ) -> None:
        super().__init__()
        num_classes, dim = text_features.shape
        self.register_buffer("text_features", normalize(text_features.float()), persistent=False)
        self.cache_keys = nn.Parameter(torch.zeros(cache_size, dim))
        self.register_buffer("cache_values", torch.zeros(cache_size, num_classes))
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.logit_scale = logit_scale
        self.beta = 1.0

    @torch.no_grad()
    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.cache_keys.copy_(normalize(features))
        self.cache_values.copy_(F.one_hot(labels, self.cache_values.shape[1]).float())

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        zero_shot = self.logit_scale * normalize(image_features) @ self.text_features.t()
        votes = cache_logits(image_features, self.cache_keys, self.cache_values, self.beta)
        return zero_shot + self.alpha * votes


@TRAINER_REGISTRY.register()
class CacheAdapter(ClipTrainer):
    TRAINS = MethodKind.HEAD
    CFG_NODE = "CACHE"
    MODEL_NAME = "cache_adapter"
    PER_CLASS_KEYS = {"cache_values": 1}
    EVAL_INHERITS = ("DATASET.NUM_SHOTS", "SEED")
    FITS_ON_TRAIN_FEATURES = True
    LR_STEP = "iteration"

    def build_head(self, backbone: ClipBackbone, classnames: list[str]) -> nn.Module:
        templates = [custom_template(self.cfg.DATASET.NAME)]
        text_features = zeroshot_classifier(backbone, classnames, templates)
        cache_size = len(self.dm.dataset.train_x)  # one row per train image
        return CacheHead(text_features, self.logit_scale, cache_size, self.method_cfg().ALPHA)

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.head.fit(features, labels)

    def make_optimizer(self, learner: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(learner.parameters(), lr=self.cfg.OPTIM.LR, eps=1e-4)

    def make_lr_scheduler(
        self, optim: torch.optim.Optimizer
    ) -> torch.optim.lr_scheduler.LRScheduler:
        return torch.optim.lr_scheduler.CosineAnnealingLR(optim, self.iterations)

    def before_final_evaluation(self) -> None:
        features, labels = self.val_features()  # [N, D], [N]
        grid = list(self.method_cfg().BETA_GRID)
        accuracies = {}
        with torch.no_grad():
            for beta in grid:
                self.head.beta = beta
                predictions = self.model(features).argmax(1)
                accuracies[beta] = (predictions == labels).float().mean().item()
        self.head.beta = max(accuracies, key=accuracies.get)  # the first best on ties
        print(f"Chosen beta {self.head.beta} (val accuracy over the grid: {accuracies})")
        self.record_hyperparameter_search(
            {"BETA": grid}, {"BETA": self.head.beta}, split="val", size=len(labels)
        )
