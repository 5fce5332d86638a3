"""Zero-shot CLIP: classify against the text embeddings of the class prompts, nothing learned.

`ZeroshotCLIP` uses the dataset's own template; `ZeroshotCLIP2` a prompt ensemble (CLIP's 7
selected ImageNet templates, plus the dataset's own off ImageNet): each template's embedding is
normalised, the embeddings averaged, and the mean normalised again.
"""

import torch
from torch import nn
from yacs.config import CfgNode as CN

from clip.backbone import ClipBackbone
from dassl.config import register_cfg_extension
from dassl.engine import TRAINER_REGISTRY
from trainers.clip_base import ClipTrainer
from trainers.method_kind import MethodKind
from trainers.templates import custom_template, ensemble_templates
from trainers.text import encode_class_prompts, normalize, spaced


@register_cfg_extension
def _zsclip_keys(cfg: CN) -> None:
    cfg.TRAINER.ZSCLIP = CN()
    cfg.TRAINER.ZSCLIP.PREC = "fp16"  # fp16, fp32 or amp (amp evaluates in fp32)


class ZeroshotHead(nn.Module):
    """Cosine logits against a fixed classifier [K, D] (held as a non-saved buffer)."""

    def __init__(self, text_features: torch.Tensor, logit_scale: float) -> None:
        super().__init__()
        self.register_buffer("text_features", normalize(text_features.float()), persistent=False)
        self.logit_scale = logit_scale

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.logit_scale * normalize(image_features) @ self.text_features.t()


def zeroshot_classifier(
    backbone: ClipBackbone, classnames: list[str], templates: list[str]
) -> torch.Tensor:
    """Prompt-ensemble classifier [K, D]: normalise per template, average, normalise."""
    embeddings = encode_class_prompts(backbone, spaced(classnames), templates).float()
    return normalize(normalize(embeddings).mean(dim=1))  # [K, T, D] -> [K, D]


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(ClipTrainer):
    """Zero-shot CLIP with the dataset's template; evaluation only."""

    TRAINS = MethodKind.HEAD  # nothing learned: the zero-shot classifier is the head
    CFG_NODE = "ZSCLIP"

    def templates(self) -> list[str]:
        return [custom_template(self.cfg.DATASET.NAME)]

    def build_head(self, backbone: ClipBackbone, classnames: list[str]) -> nn.Module:
        templates = self.templates()
        print(f"Prompt templates (n={len(templates)}): {templates}")
        classifier = zeroshot_classifier(backbone, classnames, templates)
        return ZeroshotHead(classifier, self.logit_scale)

    def train(self) -> None:
        """Nothing to learn: evaluate on the test split, as `--eval-only` would."""
        print(f"{type(self).__name__} has no parameters to train; evaluating instead")
        self.test()


@TRAINER_REGISTRY.register()
class ZeroshotCLIP2(ZeroshotCLIP):
    """Zero-shot CLIP with a prompt ensemble; evaluation only."""

    def templates(self) -> list[str]:
        return ensemble_templates(self.cfg.DATASET.NAME)
