"""CLIP-Adapter (Gao et al., IJCV 2023): a residual bottleneck MLP on CLIP's image features.

f' = ratio * adapter(f) + (1 - ratio) * f, classified against the fixed zero-shot text features of
the dataset's template. Upstream hard-codes RN50's width (1024) and re-encodes the class prompts
every step; here the width comes from the backbone and the text features are encoded once.
"""

import torch
from torch import nn
from yacs.config import CfgNode as CN

from clip.backbone import ClipBackbone
from dassl.config import register_cfg_extension
from dassl.engine import TRAINER_REGISTRY
from trainers.clip_base import ClipTrainer
from trainers.method_kind import MethodKind
from trainers.templates import custom_template
from trainers.text import encode_class_prompts, normalize, spaced


@register_cfg_extension
def _clip_adapter_keys(cfg: CN) -> None:
    cfg.TRAINER.CLIP_ADAPTER = CN()
    cfg.TRAINER.CLIP_ADAPTER.RATIO = 0.2  # weight of the adapted features in the mix
    cfg.TRAINER.CLIP_ADAPTER.REDUCTION = 4  # bottleneck width = D / REDUCTION
    cfg.TRAINER.CLIP_ADAPTER.PREC = "fp32"  # upstream always runs CLIP in fp32


class Adapter(nn.Module):
    """Linear(D, D/r) - ReLU - Linear(D/r, D) - ReLU, no biases (keys fc.0.weight, fc.2.weight)."""

    def __init__(self, dim: int, reduction: int = 4) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(dim, dim // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(dim // reduction, dim, bias=False),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class AdapterHead(nn.Module):
    """Adapted image features against fixed text features [K, D]."""

    def __init__(
        self, text_features: torch.Tensor, ratio: float, logit_scale: float, reduction: int = 4
    ) -> None:
        super().__init__()
        self.adapter = Adapter(text_features.shape[1], reduction)
        self.register_buffer("text_features", normalize(text_features.float()), persistent=False)
        self.ratio = ratio
        self.logit_scale = logit_scale

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        mixed = self.ratio * self.adapter(image_features) + (1 - self.ratio) * image_features
        return self.logit_scale * normalize(mixed) @ self.text_features.t()


@TRAINER_REGISTRY.register()
class CLIP_Adapter(ClipTrainer):
    """CLIP-Adapter (https://arxiv.org/abs/2110.04544)."""

    TRAINS = MethodKind.HEAD
    CFG_NODE = "CLIP_ADAPTER"
    MODEL_NAME = "clip_adapter"

    def build_head(self, backbone: ClipBackbone, classnames: list[str]) -> nn.Module:
        c = self.cfg.TRAINER.CLIP_ADAPTER
        template = custom_template(self.cfg.DATASET.NAME)
        text_features = encode_class_prompts(backbone, spaced(classnames), [template])[:, 0]
        return AdapterHead(text_features, c.RATIO, self.logit_scale, c.REDUCTION)

    def learnable(self) -> nn.Module:
        return self.head.adapter
