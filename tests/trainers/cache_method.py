"""A toy Tip-Adapter-style method, written the way README's "Adding a method" says: one config
extension, one head, one ClipTrainer subclass, and no change to shared code.

The head keeps a cache whose keys are the normalised train features and whose values are the
one-hot train labels, filled training-free from the train features before the first epoch; its
logits are the zero-shot ones plus ``alpha`` times the cache's affinity-weighted votes. Only the
blend weight ``alpha`` is learned. tests/trainers/test_new_method.py runs it through train.py.
"""

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode as CN

from clip.backbone import ClipBackbone
from dassl.config import register_cfg_extension
from dassl.engine import TRAINER_REGISTRY
from trainers.clip_base import ClipTrainer
from trainers.methods.zsclip import zeroshot_classifier
from trainers.templates import custom_template
from trainers.text import normalize


@register_cfg_extension
def _cache_keys(cfg: CN) -> None:
    cfg.TRAINER.CACHE = CN()
    cfg.TRAINER.CACHE.PREC = "fp32"
    cfg.TRAINER.CACHE.ALPHA = 1.0  # initial weight of the cache's votes (learned)
    cfg.TRAINER.CACHE.BETA = 5.5  # sharpness of the affinities


def cache_logits(
    features: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, beta: float
) -> torch.Tensor:
    """Votes [N, K] of the cache: exp(-beta (1 - cos)) affinities [N, M] times values [M, K]."""
    return torch.exp(-beta * (1 - normalize(features) @ keys.t())) @ values


class CacheHead(nn.Module):
    """Zero-shot logits plus alpha times the cache's votes; keys `alpha`, `cache_keys`,
    `cache_values` (the zero-shot classifier is rebuilt from class names, not saved)."""

    def __init__(
        self,
        text_features: torch.Tensor,
        logit_scale: float,
        num_train: int,
        alpha: float,
        beta: float,
    ) -> None:
        super().__init__()
        num_classes, dim = text_features.shape
        self.register_buffer("text_features", normalize(text_features.float()), persistent=False)
        self.register_buffer("cache_keys", torch.zeros(num_train, dim))
        self.register_buffer("cache_values", torch.zeros(num_train, num_classes))
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.logit_scale = logit_scale
        self.beta = beta

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
    CFG_NODE = "CACHE"
    MODEL_NAME = "cache_adapter"

    def build_head(self, backbone: ClipBackbone, classnames: list[str]) -> nn.Module:
        c = self.method_cfg()
        templates = [custom_template(self.cfg.DATASET.NAME)]
        text_features = zeroshot_classifier(backbone, classnames, templates)
        num_train = len(self.dm.dataset.train_x)
        return CacheHead(text_features, self.logit_scale, num_train, c.ALPHA, c.BETA)

    def before_train(self) -> None:
        super().before_train()
        features, labels = self.encode_data_source(self.dm.dataset.train_x, "train")
        self.head.fit(features.to(self.device), labels.to(self.device))
