"""The default model of ``SimpleTrainer.build_model``: a small CNN and a linear classifier.

Upstream builds named backbones from a registry (ResNets and others); this lean engine ships only
a small convolutional backbone, enough for engine tests and toy runs. CLIP methods override
``build_model`` and never reach this class.
"""

import torch
import torch.nn as nn
from yacs.config import CfgNode

SMALL_CNN = "small_cnn"


class SmallCNN(nn.Module):
    """Two conv blocks and global average pooling: any image size in, ``out_features`` out."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
        )
        self.out_features = 2 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)  # (B, C, 1, 1) -> (B, C)


class SimpleNet(nn.Module):
    """Backbone plus an optional linear classifier (``num_classes <= 0`` returns features)."""

    def __init__(self, cfg: CfgNode, model_cfg: CfgNode, num_classes: int) -> None:
        super().__init__()
        name = model_cfg.BACKBONE.NAME or SMALL_CNN
        if name != SMALL_CNN:
            raise ValueError(
                f'Backbone "{name}" is not available in this engine (only "{SMALL_CNN}"). '
                "CLIP methods build their own model: pick one with --trainer, or leave "
                "MODEL.BACKBONE.NAME empty for the small CNN."
            )
        self.backbone = SmallCNN()
        self._fdim = self.backbone.out_features
        self.classifier = nn.Linear(self._fdim, num_classes) if num_classes > 0 else None

    @property
    def fdim(self) -> int:
        return self._fdim

    def forward(
        self, x: torch.Tensor, return_feature: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        f = self.backbone(x)
        if self.classifier is None:
            return f
        y = self.classifier(f)
        return (y, f) if return_feature else y
