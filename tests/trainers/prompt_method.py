"""A toy method of the kind "inputs of a frozen tower": two learned context vectors spliced into
every class prompt ("[SOS] X X name. [EOS]") and run through CLIP's frozen text tower, with
gradients flowing through it to the context (a two-token CoOp). Written without touching shared
code; tests/trainers/test_method_kinds.py runs it.
"""

import torch
from torch import nn
from yacs.config import CfgNode as CN

from clip.backbone import ClipBackbone
from dassl.config import register_cfg_extension
from dassl.engine import TRAINER_REGISTRY
from trainers.clip_base import ClipTrainer
from trainers.method_kind import MethodKind
from trainers.text import TextEncoder, normalize, spaced


@register_cfg_extension
def _prompt_keys(cfg: CN) -> None:
    cfg.TRAINER.TOY_PROMPT = CN()
    cfg.TRAINER.TOY_PROMPT.PREC = "fp32"
    cfg.TRAINER.TOY_PROMPT.N_CTX = 2


class Context(nn.Module):
    """The learned context [n_ctx, width] (key `ctx`), initialised to the embedding of "X"."""

    def __init__(self, init: torch.Tensor) -> None:
        super().__init__()
        self.ctx = nn.Parameter(init.clone())


class PromptHead(nn.Module):
    """Cosine logits between image features and the text features of the learned prompts."""

    def __init__(self, backbone: ClipBackbone, classnames: list[str], n_ctx: int) -> None:
        super().__init__()
        embed = backbone.token_embedding
        prompts = [f"{' '.join(['X'] * n_ctx)} {name}." for name in spaced(classnames)]
        tokens = backbone.tokenize(prompts).to(embed.weight.device)  # [K, L]
        with torch.no_grad():
            embedding = embed(tokens).float()  # [K, L, width]
        self.context = Context(embedding[0, 1 : 1 + n_ctx])
        self.register_buffer("prefix", embedding[:, :1], persistent=False)  # SOS
        self.register_buffer("suffix", embedding[:, 1 + n_ctx :], persistent=False)  # name. EOS
        self.register_buffer("tokens", tokens, persistent=False)
        self.text_encoder = TextEncoder(backbone)
        self.logit_scale = backbone.logit_scale

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        ctx = self.context.ctx.expand(len(self.prefix), -1, -1)  # [K, n_ctx, width]
        prompts = torch.cat([self.prefix, ctx, self.suffix], dim=1)  # [K, L, width]
        text_features = normalize(self.text_encoder(prompts, self.tokens).float())
        return self.logit_scale * normalize(image_features) @ text_features.t()


@TRAINER_REGISTRY.register()
class ToyPrompt(ClipTrainer):
    TRAINS = MethodKind.FROZEN_TOWER_INPUTS
    CFG_NODE = "TOY_PROMPT"
    MODEL_NAME = "context"

    def build_head(self, backbone: ClipBackbone, classnames: list[str]) -> nn.Module:
        return PromptHead(backbone, classnames, self.method_cfg().N_CTX)

    def learnable(self) -> nn.Module:
        return self.head.context
