"""CoCoOp: Conditional Prompt Learning (Zhou et al., CVPR 2022).

CoOp's shared context, shifted per image: a small meta-net maps each image's (normalised) feature
to one vector added to every context token, so each image has its own prompts and the frozen text
tower runs on B x K prompts per batch. The prompt learner (``ctx``, ``meta_net.linear1/linear2``,
the fixed token buffers) keeps upstream's key layout, so checkpoints load both ways.
"""

from collections import OrderedDict

import torch
from torch import nn
from yacs.config import CfgNode as CN

from clip.backbone import ClipBackbone
from dassl.config import register_cfg_extension
from dassl.engine import TRAINER_REGISTRY
from trainers.clip_base import ClipTrainer
from trainers.method_kind import MethodKind
from trainers.methods.coop import PromptLearner
from trainers.text import TextEncoder, normalize


@register_cfg_extension
def _cocoop_keys(cfg: CN) -> None:
    cfg.TRAINER.COCOOP = CN()
    cfg.TRAINER.COCOOP.N_CTX = 16  # number of context vectors
    cfg.TRAINER.COCOOP.CTX_INIT = ""  # initialisation words (sets N_CTX to their count)
    cfg.TRAINER.COCOOP.PREC = "fp16"  # fp16, fp32 or amp
    # Most prompts one text-tower pass encodes (whole images' K prompts, at least one image):
    # bounds memory when evaluating many images over many classes; results are unchanged.
    cfg.TRAINER.COCOOP.PROMPTS_PER_PASS = 4096


class ConditionalPromptLearner(PromptLearner):
    """CoOp's generic context at the end of the prompt, plus the meta-net (vis_dim ->
    vis_dim // 16 -> ctx_dim) that turns an image feature into a shift of that context."""

    def __init__(
        self, backbone: ClipBackbone, classnames: list[str], n_ctx: int, ctx_init: str
    ) -> None:
        super().__init__(backbone, classnames, n_ctx, ctx_init)
        vis_dim, ctx_dim = backbone.embed_dim, backbone.text_width
        # Built after the context, as upstream, so a seeded run draws the same initial weights.
        self.meta_net = nn.Sequential(
            OrderedDict(
                [
                    ("linear1", nn.Linear(vis_dim, vis_dim // 16)),
                    ("relu", nn.ReLU(inplace=True)),
                    ("linear2", nn.Linear(vis_dim // 16, ctx_dim)),
                ]
            )
        ).to(self.ctx.device)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        """Normalised image features [B, vis_dim] -> prompt embeddings [B, K, L, ctx_dim]."""
        shift = self.meta_net(image_features)  # [B, ctx_dim]
        ctx = self.ctx.unsqueeze(0) + shift.unsqueeze(1)  # [B, n_ctx, ctx_dim]
        batch = ctx.shape[0]
        ctx = ctx.unsqueeze(1).expand(-1, self.n_cls, -1, -1)  # [B, K, n_ctx, ctx_dim]
        prefix = self.token_prefix.expand(batch, -1, -1, -1)  # [B, K, 1, ctx_dim]
        suffix = self.token_suffix.expand(batch, -1, -1, -1)  # [B, K, L - 1 - n_ctx, ctx_dim]
        return torch.cat([prefix, ctx, suffix], dim=2)


class CoCoOpHead(nn.Module):
    """Logits [B, K] of each image against the text features of its own K prompts."""

    def __init__(
        self,
        prompt_learner: ConditionalPromptLearner,
        backbone: ClipBackbone,
        prompts_per_pass: int,
    ) -> None:
        super().__init__()
        self.prompt_learner = prompt_learner
        self.text_encoder = TextEncoder(backbone)
        self.logit_scale = backbone.logit_scale
        self.images_per_pass = max(1, prompts_per_pass // prompt_learner.n_cls)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        image_features = normalize(image_features)  # [B, D]
        tokens = self.prompt_learner.tokenized_prompts  # [K, L]
        logits = []
        for chunk in image_features.split(self.images_per_pass):
            prompts = self.prompt_learner(chunk)  # [b, K, L, ctx_dim]
            b, k = prompts.shape[:2]
            text = self.text_encoder(prompts.flatten(0, 1), tokens.repeat(b, 1))  # [b * K, D]
            text = normalize(text.float()).view(b, k, -1)  # [b, K, D]
            logits.append(self.logit_scale * torch.einsum("bd,bkd->bk", chunk, text))
        return torch.cat(logits)


@TRAINER_REGISTRY.register()
class CoCoOp(ClipTrainer):
    """Conditional Context Optimization (https://arxiv.org/abs/2203.05557).

    The loss of a batch is the mean over its images of each image's cross-entropy, as upstream
    (which trains with batch 1), so a larger batch is upstream's per-image loop averaged."""

    TRAINS = MethodKind.FROZEN_TOWER_INPUTS
    CFG_NODE = "COCOOP"
    MODEL_NAME = "prompt_learner"
    FIXED_KEYS = ("token_prefix", "token_suffix")

    def check_cfg(self, cfg: CN) -> None:
        super().check_cfg(cfg)
        if cfg.TRAINER.COCOOP.PROMPTS_PER_PASS < 1:
            raise ValueError(
                f"TRAINER.COCOOP.PROMPTS_PER_PASS is {cfg.TRAINER.COCOOP.PROMPTS_PER_PASS}; it "
                "bounds how many prompts one text-tower pass encodes. Fix: set a positive "
                "number (4096 by default)."
            )

    def build_head(self, backbone: ClipBackbone, classnames: list[str]) -> nn.Module:
        c = self.cfg.TRAINER.COCOOP
        learner = ConditionalPromptLearner(backbone, classnames, c.N_CTX, c.CTX_INIT)
        return CoCoOpHead(learner, backbone, c.PROMPTS_PER_PASS)

    def learnable(self) -> nn.Module:
        return self.head.prompt_learner
