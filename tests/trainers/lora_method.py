"""A toy method of the kind "parameters inside the image tower": a rank-r LoRA update on the
output projection of every MLP in CLIP's image tower, classified against the fixed zero-shot
text features. Written without touching shared code, and without any guard of its own: no
feature-store switch, no gradient or eval-cache override. tests/trainers/test_method_kinds.py
runs it, and ``ForgetfulLoRA``, the same method declared as a head (what a newcomer might
write), to show that the store's guarantee does not rest on the declaration.
"""

import torch
from torch import nn
from yacs.config import CfgNode as CN

from clip.backbone import ClipBackbone
from dassl.config import register_cfg_extension
from dassl.engine import TRAINER_REGISTRY
from trainers.clip_base import ClipTrainer
from trainers.method_kind import MethodKind
from trainers.methods.zsclip import ZeroshotHead, zeroshot_classifier
from trainers.templates import custom_template


@register_cfg_extension
def _lora_keys(cfg: CN) -> None:
    cfg.TRAINER.TOY_LORA = CN()
    cfg.TRAINER.TOY_LORA.PREC = "fp32"
    cfg.TRAINER.TOY_LORA.RANK = 2


class LoRA(nn.Module):
    """The low-rank update x -> B A x; keys `A` [r, in] (random), `B` [out, r] (zero)."""

    def __init__(self, linear: nn.Linear, rank: int) -> None:
        super().__init__()
        device = linear.weight.device
        self.A = nn.Parameter(0.1 * torch.randn(rank, linear.in_features, device=device))
        self.B = nn.Parameter(torch.zeros(linear.out_features, rank, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.A.t() @ self.B.t()


class LoRALinear(nn.Module):
    """A frozen linear layer plus its LoRA update."""

    def __init__(self, linear: nn.Linear, lora: LoRA) -> None:
        super().__init__()
        self.linear = linear
        self.lora = lora

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.lora(x)


@TRAINER_REGISTRY.register()
class ToyLoRA(ClipTrainer):
    TRAINS = MethodKind.IMAGE_TOWER
    CFG_NODE = "TOY_LORA"
    MODEL_NAME = "lora"

    def build_head(self, backbone: ClipBackbone, classnames: list[str]) -> nn.Module:
        self.loras = nn.ModuleList()
        for block in backbone.visual.transformer.resblocks:
            lora = LoRA(block.mlp.c_proj, self.method_cfg().RANK)
            block.mlp.c_proj = LoRALinear(block.mlp.c_proj, lora)
            self.loras.append(lora)
        templates = [custom_template(self.cfg.DATASET.NAME)]
        classifier = zeroshot_classifier(backbone, classnames, templates)
        return ZeroshotHead(classifier, self.logit_scale)

    def learnable(self) -> nn.Module:
        return self.loras


@TRAINER_REGISTRY.register()
class ForgetfulLoRA(ToyLoRA):
    TRAINS = MethodKind.HEAD  # wrong: it trains the image tower
