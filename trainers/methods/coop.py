"""CoOp: Context Optimization (Zhou et al., IJCV 2022).

The prompt "[SOS] X X ... X classname. [EOS]" has its context words X replaced by learned vectors;
the class-name and special-token embeddings stay fixed. CLIP's text encoder is frozen but runs with
gradients, so the loss reaches the context vectors through it.
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

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")


def prompt_keys() -> CN:
    """The keys of a CoOp-style prompt learner, with CoOp's defaults (methods built on CoOp
    start their own node from these)."""
    node = CN()
    node.N_CTX = 16  # number of context vectors
    node.CSC = False  # class-specific context
    node.CTX_INIT = ""  # initialisation words (sets N_CTX to their count)
    node.PREC = "fp16"  # fp16, fp32 or amp
    node.CLASS_TOKEN_POSITION = "end"  # end, middle or front
    return node


@register_cfg_extension
def _coop_keys(cfg: CN) -> None:
    cfg.TRAINER.COOP = prompt_keys()


def prompt_order(position: str, n_ctx: int, name_lens: list[int], length: int) -> torch.Tensor:
    """Per-class token order [K, L] over the sequence [SOS, ctx (n_ctx), suffix (name, ., EOS..)].

    "end" keeps that order; "middle" puts the class name between the two halves of the context;
    "front" puts it before the context.
    """
    sos = [0]
    ctx = list(range(1, 1 + n_ctx))
    half = n_ctx // 2
    orders = []
    for name_len in name_lens:
        name = list(range(1 + n_ctx, 1 + n_ctx + name_len))
        rest = list(range(1 + n_ctx + name_len, length))
        # `position` is one of CLASS_TOKEN_POSITIONS (CoOp.check_cfg refuses others up front).
        orders.append(
            {
                "end": sos + ctx + name + rest,
                "middle": sos + ctx[:half] + name + ctx[half:] + rest,
                "front": sos + name + ctx + rest,
            }[position]
        )
    return torch.tensor(orders)


class PromptLearner(nn.Module):
    """Learned context plus the fixed token embeddings; keys `ctx`, `token_prefix`, `token_suffix`.

    The buffers are saved with the checkpoint (as upstream) but rebuilt from the class names when a
    checkpoint is loaded.
    """

    def __init__(
        self,
        backbone: ClipBackbone,
        classnames: list[str],
        n_ctx: int = 16,
        ctx_init: str = "",
        csc: bool = False,
        class_token_position: str = "end",
    ) -> None:
        super().__init__()
        n_cls = len(classnames)
        embed = backbone.token_embedding  # refuses towers CoOp cannot run on, saying why
        device = embed.weight.device
        ctx_vectors, prompt_prefix = self.initial_context(backbone, n_cls, n_ctx, ctx_init, csc)
        n_ctx = ctx_vectors.shape[-2]
        print(f'Initial context: "{prompt_prefix}"')
        print(f"Number of context words (tokens): {n_ctx}")
        self.ctx = nn.Parameter(ctx_vectors)

        names = spaced(classnames)
        # Tokens of the bare name: all non-zero ids but SOS and EOS.
        name_lens = [int((t != 0).sum()) - 2 for t in backbone.tokenize(names)]
        tokenized = backbone.tokenize([f"{prompt_prefix} {name}." for name in names])
        with torch.no_grad():
            embedding = embed(tokenized.to(device)).float()  # [K, L, ctx_dim]
        self.register_buffer("token_prefix", embedding[:, :1, :])  # SOS
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx :, :])  # name, ., EOS, pad
        self.register_buffer("tokenized_prompts", tokenized.to(device), persistent=False)
        order = prompt_order(class_token_position, n_ctx, name_lens, tokenized.shape[1])
        self.register_buffer("order", order.to(device), persistent=False)
        self.n_cls = n_cls

    def initial_context(
        self, backbone: ClipBackbone, n_cls: int, n_ctx: int, ctx_init: str, csc: bool
    ) -> tuple[torch.Tensor, str]:
        """The context vectors to start from ([n_ctx, D], or [K, n_ctx, D] class-specific) and
        the words they stand for in the tokenized prompt: the embeddings of ``ctx_init``'s words
        (their count sets n_ctx), else random ones for n_ctx "X" words."""
        embed = backbone.token_embedding
        device = embed.weight.device
        if ctx_init:
            ctx_init = ctx_init.replace("_", " ")
            n_ctx = len(ctx_init.split(" "))
            with torch.no_grad():
                init = embed(backbone.tokenize([ctx_init]).to(device))
            return init[0, 1 : 1 + n_ctx, :].float(), ctx_init  # the words after SOS
        shape = (n_cls, n_ctx, backbone.text_width) if csc else (n_ctx, backbone.text_width)
        print("Initializing class-specific contexts" if csc else "Initializing a generic context")
        ctx_vectors = torch.empty(shape, device=device)
        nn.init.normal_(ctx_vectors, std=0.02)
        return ctx_vectors, " ".join(["X"] * n_ctx)

    def forward(self) -> torch.Tensor:
        ctx = self.ctx
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)  # [n_ctx, D] -> [K, n_ctx, D]
        prompts = torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)  # [K, L, D]
        index = self.order.unsqueeze(-1).expand(-1, -1, prompts.shape[-1])
        return prompts.gather(1, index)


class CoOpHead(nn.Module):
    """Logits between image features and the text features of the learned prompts."""

    def __init__(self, prompt_learner: PromptLearner, backbone: ClipBackbone) -> None:
        super().__init__()
        self.prompt_learner = prompt_learner
        self.text_encoder = TextEncoder(backbone)
        self.logit_scale = backbone.logit_scale

    def text_features(self) -> torch.Tensor:
        """Normalised text features [K, D] (fp32) of the learned prompts."""
        prompts = self.prompt_learner()
        text_features = self.text_encoder(prompts, self.prompt_learner.tokenized_prompts)
        return normalize(text_features.float())

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """Image features [N, D] against normalised text features [K, D] -> logits [N, K]."""
        return self.logit_scale * normalize(image_features) @ text_features.t()

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.logits(image_features, self.text_features())


@TRAINER_REGISTRY.register()
class CoOp(ClipTrainer):
    """Context Optimization (https://arxiv.org/abs/2109.01134)."""

    TRAINS = MethodKind.FROZEN_TOWER_INPUTS
    CFG_NODE = "COOP"
    CFG_CHOICES = {**ClipTrainer.CFG_CHOICES, "CLASS_TOKEN_POSITION": CLASS_TOKEN_POSITIONS}
    MODEL_NAME = "prompt_learner"
    PER_CLASS_KEYS = {"ctx": 0}
    FIXED_KEYS = ("token_prefix", "token_suffix")

    @classmethod
    def learns_per_class(cls, cfg: CN) -> bool:
        """A shared context (CSC False) transfers to other classes; class-specific ones do not."""
        return bool(cfg.TRAINER[cls.CFG_NODE].CSC)

    def build_head(self, backbone: ClipBackbone, classnames: list[str]) -> nn.Module:
        return CoOpHead(self.prompt_learner(backbone, classnames), backbone)

    def prompt_learner(self, backbone: ClipBackbone, classnames: list[str]) -> PromptLearner:
        """The learner the method's node configures (N_CTX, CTX_INIT, CSC, position)."""
        c = self.method_cfg()
        return PromptLearner(
            backbone, classnames, c.N_CTX, c.CTX_INIT, c.CSC, c.CLASS_TOKEN_POSITION
        )

    def learnable(self) -> nn.Module:
        return self.head.prompt_learner
