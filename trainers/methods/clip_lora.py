"""CLIP-LoRA (Zanella & Ben Ayed, CVPRW'24; upstream MaxZanella/CLIP-LoRA): low-rank updates of
the query, key and value projections of every attention layer of both CLIP encoders.

What upstream's code computes (lora.py, loralib/layers.py, loralib/utils.py, main.py):

- each adapted projection W [out, in] gets `scaling * dropout(x) @ (B A)^T` beside it, A [r, in]
  kaiming-uniform (a = sqrt(5)), B [out, r] zero, scaling = alpha / sqrt(r) (loralib's, not the
  LoRA paper's alpha / r), the dropout drawn per projection on the branch's input only;
- rank 2, alpha 1, dropout 0.25 on q, k and v of every block of the text and the image tower;
- every step encodes the class prompts (the dataset's one template) with the adapted text tower
  first, then the images, and takes the cross-entropy of 100 x cosine similarities (a fixed
  scale: main.py's `logit_scale = 100`);
- AdamW (lr 2e-4, weight decay 0.01, betas 0.9/0.999), cosine over every iteration down to
  1e-6, batch 32 with the last, incomplete batch kept, 500 x shots iterations: the last epoch
  stops part-way;
- no validation: the last step is evaluated.

The LoRA weights are fp32 under every PREC (upstream keeps them fp32 beside an fp16 CLIP); the
branch computes in the tower's dtype. Checkpoints hold the LoRA weights only, under
``text.<block>.<q|k|v|o>.w_lora_A`` / ``w_lora_B`` and ``visual...``; `upstream_layout` and
`from_upstream_layout` convert to and from upstream's `save_lora` file.

LoRA is defined upstream for ViT image towers only, so a ResNet backbone is refused before any
work. Upstream's `encoder` and `position` stay at its defaults (both towers, every block).
Where this differs from upstream's computation, the results do not: the text tower runs on the
prompts up to their last end token (upstream: all 77 positions; attention is causal), and under
PREC amp evaluation runs in fp32 with the LoRA update beside the weights (upstream: fp16
autocast, the update merged into them).
"""

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode as CN

from clip import openclip
from clip.backbone import ClipBackbone, OpenAIBackbone
from clip.model import MultiheadSelfAttention
from dassl.config import register_cfg_extension
from dassl.data.data_manager import keeping_last_batch
from dassl.engine import TRAINER_REGISTRY
from dassl.metrics import compute_accuracy
from trainers.clip_base import ClipTrainer
from trainers.method_kind import MethodKind
from trainers.templates import custom_template
from trainers.text import normalize, spaced

PROJECTIONS = ("q", "k", "v", "o")
TOWERS = ("text", "visual")  # upstream's apply_lora order: the text tower's blocks first
LOGIT_SCALE = 100.0  # main.py's fixed scale (ViT-B/16's learned one is 100 too)
MIN_LR = 1e-6  # the cosine schedule's floor (lora.py's eta_min)


@register_cfg_extension
def _clip_lora_keys(cfg: CN) -> None:
    cfg.TRAINER.CLIP_LORA = CN()
    cfg.TRAINER.CLIP_LORA.PREC = "amp"  # upstream: fp16 autocast and a GradScaler
    cfg.TRAINER.CLIP_LORA.RANK = 2
    cfg.TRAINER.CLIP_LORA.ALPHA = 1.0
    cfg.TRAINER.CLIP_LORA.DROPOUT = 0.25
    cfg.TRAINER.CLIP_LORA.PARAMS = ["q", "k", "v"]  # projections adapted: any of q, k, v, o
    cfg.TRAINER.CLIP_LORA.ITERS_PER_SHOT = 500  # the run's iterations: this x DATASET.NUM_SHOTS


class LoRABranch(nn.Module):
    """The update beside a frozen projection [out, in]: scaling * dropout(x) @ (B A)^T.
    Keys ``w_lora_A`` [r, in] and ``w_lora_B`` [out, r], as upstream's LinearLoRA."""

    def __init__(
        self, features: int, rank: int, alpha: float, dropout: float, device: torch.device
    ) -> None:
        super().__init__()
        self.w_lora_A = nn.Parameter(torch.empty(rank, features, device=device))
        self.w_lora_B = nn.Parameter(torch.zeros(features, rank, device=device))
        nn.init.kaiming_uniform_(self.w_lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.scaling = alpha / math.sqrt(rank)

    def forward(self, x: torch.Tensor, rows: int | None = None) -> torch.Tensor:
        """x [L, N, in] -> [L, N, out]; with `rows`, the first rows only, the dropout mask still
        drawn over all of x (as upstream, which computes every row)."""
        x = self.dropout(x)
        if rows is not None:
            x = x[:rows]
        update = (self.w_lora_B @ self.w_lora_A).to(x.dtype)  # [out, in]
        return (x @ update.t()) * self.scaling


class AttentionLoRA(nn.Module):
    """A frozen `MultiheadSelfAttention` with LoRA branches on some of q, k, v and o, computed as
    upstream's PlainMultiheadAttentionLoRA: each projection on its own, its branch added."""

    def __init__(self, attn: MultiheadSelfAttention, branches: nn.ModuleDict) -> None:
        super().__init__()
        self.attn = attn
        self.branches = branches

    def _project(self, index: int, x: torch.Tensor, rows: int | None = None) -> torch.Tensor:
        d = x.shape[-1]
        weight = self.attn.in_proj_weight[index * d : (index + 1) * d]
        bias = self.attn.in_proj_bias[index * d : (index + 1) * d]
        out = F.linear(x if rows is None else x[:rows], weight, bias)
        name = "qkv"[index]
        if name in self.branches:
            out = out + self.branches[name](x, rows)
        return out

    def forward(
        self, x: torch.Tensor, causal: bool = False, first_only: bool = False
    ) -> torch.Tensor:
        """[L, N, D] -> [L, N, D], or [1, N, D] when `first_only` (as MultiheadSelfAttention)."""
        _, n, d = x.shape
        heads = self.attn.num_heads
        q = self._project(0, x, 1 if first_only else None)  # [Lq, N, D]
        k, v = self._project(1, x), self._project(2, x)  # [L, N, D] each

        def split(t: torch.Tensor) -> torch.Tensor:  # [L, N, D] -> [N, heads, L, head_dim]
            return t.view(t.shape[0], n, heads, d // heads).permute(1, 2, 0, 3)

        out = F.scaled_dot_product_attention(split(q), split(k), split(v), is_causal=causal)
        out = out.permute(2, 0, 1, 3).reshape(q.shape[0], n, d)  # [Lq, N, D]
        projected = self.attn.out_proj(out)
        if "o" in self.branches:
            projected = projected + self.branches["o"](out)
        return projected


def add_lora(
    backbone: ClipBackbone, params: list[str], rank: int, alpha: float, dropout: float
) -> nn.ModuleDict:
    """Wrap the attention of every block of both towers (text first, as upstream's apply_lora,
    whose layer i is the i-th block so met); returns the branches, tower -> block -> projection.
    The A's are drawn in upstream's order, but not from the same generator state: upstream's
    apply_lora also initialises the nn.Linear copies it builds."""
    model = backbone.model
    towers = {"text": model.transformer, "visual": model.visual.transformer}
    learner = nn.ModuleDict()
    for tower in TOWERS:
        blocks = nn.ModuleList()
        for block in towers[tower].resblocks:
            attn = block.attn
            device, width = attn.in_proj_weight.device, attn.in_proj_weight.shape[1]
            branches = nn.ModuleDict(
                {p: LoRABranch(width, rank, alpha, dropout, device) for p in params}
            )
            block.attn = AttentionLoRA(attn, branches)
            blocks.append(branches)
        learner[tower] = blocks
    return learner


def upstream_layout(state_dict: dict[str, torch.Tensor], metadata: dict[str, Any]) -> dict:
    """Our checkpoint's state dict as upstream's `save_lora` file: ``weights`` layer_i ->
    q_proj/k_proj/v_proj/proj -> w_lora_A/w_lora_B (i over the text blocks, then the image
    tower's), and ``metadata`` (r, alpha, encoder, params, position)."""
    names = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "proj"}
    weights: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
    layers = sorted(
        {tuple(key.split(".")[:2]) for key in state_dict},
        key=lambda tb: (TOWERS.index(tb[0]), int(tb[1])),
    )
    for i, (tower, block) in enumerate(layers):
        layer = weights.setdefault(f"layer_{i}", {})
        for p in PROJECTIONS:
            prefix = f"{tower}.{block}.{p}."
            if prefix + "w_lora_A" in state_dict:
                layer[names[p]] = {w: state_dict[prefix + w] for w in ("w_lora_A", "w_lora_B")}
    return {"weights": weights, "metadata": metadata}


def from_upstream_layout(saved: dict, text_blocks: int) -> dict[str, torch.Tensor]:
    """Upstream's `save_lora` file as our state dict; its first `text_blocks` layers are the
    text tower's (apply_lora's order with encoder both)."""
    names = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "proj": "o"}
    state_dict = {}
    for key, layer in saved["weights"].items():
        i = int(key.removeprefix("layer_"))
        tower, block = ("text", i) if i < text_blocks else ("visual", i - text_blocks)
        for name, tensors in layer.items():
            for w, tensor in tensors.items():
                state_dict[f"{tower}.{block}.{names[name]}.{w}"] = tensor
    return state_dict


def _trains(cfg: CN) -> bool:
    """Whether the run trains (an eval-only run needs no budget of iterations)."""
    return not cfg.get("RUN", {}).get("EVAL_ONLY", False)


class LoRAClassifier(nn.Module):
    """Image features [N, D] -> 100 x cosine logits [N, K] against the class prompts encoded by
    the (adapted) text tower: live in training, once per evaluation inside
    `classes_encoded_once`."""

    def __init__(self, backbone: ClipBackbone, tokens: torch.Tensor) -> None:
        super().__init__()
        self.encode_text = backbone.encode_text  # not a submodule: the learner holds the LoRA
        self.register_buffer("tokens", tokens, persistent=False)  # [K, context_length]
        self.fixed_classes: torch.Tensor | None = None

    def class_features(self) -> torch.Tensor:
        """The class prompts through the text tower as it is now: [K, D], normalised, fp32."""
        return normalize(self.encode_text(self.tokens).float())

    def logits(self, image_features: torch.Tensor, class_features: torch.Tensor) -> torch.Tensor:
        return LOGIT_SCALE * normalize(image_features.float()) @ class_features.t()

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        classes = self.class_features() if self.fixed_classes is None else self.fixed_classes
        return self.logits(image_features, classes)

    @contextmanager
    def classes_encoded_once(self) -> Iterator[None]:
        """Within the block, every forward uses the class features encoded at its start (an
        evaluation: the towers do not change during it)."""
        with torch.no_grad():
            self.fixed_classes = self.class_features()
        try:
            yield
        finally:
            self.fixed_classes = None


@TRAINER_REGISTRY.register()
class CLIP_LoRA(ClipTrainer):
    """CLIP-LoRA: LoRA on the attention of both encoders, upstream's loop and schedule."""

    TRAINS = MethodKind.BOTH_TOWERS
    CFG_NODE = "CLIP_LORA"
    MODEL_NAME = "lora"
    LR_STEP = "iteration"

    def check_cfg(self, cfg: CN) -> None:
        super().check_cfg(cfg)
        node = self.method_cfg(cfg)
        self.refuse_backbone_name(cfg)
        unknown = [p for p in node.PARAMS if p not in PROJECTIONS]
        if unknown or not node.PARAMS:
            raise ValueError(
                f"TRAINER.CLIP_LORA.PARAMS is {list(node.PARAMS)}; choose a non-empty subset of "
                f"{list(PROJECTIONS)} (upstream's default: q, k, v)"
            )
        if node.RANK < 1 or not 0 <= node.DROPOUT < 1:
            raise ValueError(
                f"TRAINER.CLIP_LORA.RANK is {node.RANK} and DROPOUT {node.DROPOUT}; the rank must "
                "be >= 1 and the dropout in [0, 1) (upstream: 2 and 0.25)"
            )
        if _trains(cfg) and (cfg.DATASET.NUM_SHOTS < 1 or node.ITERS_PER_SHOT < 1):
            raise ValueError(
                "CLIP-LoRA trains TRAINER.CLIP_LORA.ITERS_PER_SHOT x DATASET.NUM_SHOTS "
                f"iterations, and they are {node.ITERS_PER_SHOT} and {cfg.DATASET.NUM_SHOTS}. "
                "Fix: set DATASET.NUM_SHOTS to the shots per class (1, 2, 4, 8 or 16) and "
                "ITERS_PER_SHOT >= 1 (upstream: 500)."
            )

    @classmethod
    def check_inputs(cls, cfg: CN) -> None:
        """A ResNet is refused before its weights are looked for (or downloaded)."""
        cls.refuse_backbone_name(cfg)
        super().check_inputs(cfg)

    @classmethod
    def refuse_backbone_name(cls, cfg: CN) -> None:
        """OpenAI's ResNets (RN50, RN101, RN50x4, ...) and OpenCLIP models by name; a
        checkpoint file is checked once loaded (`check_backbone`)."""
        name = str(cfg.MODEL.BACKBONE.NAME)
        if name.upper().startswith("RN"):
            raise ValueError(cls._resnet_refusal(name))
        if openclip.is_openclip_name(name):
            raise ValueError(cls._openclip_refusal(name))

    @staticmethod
    def _resnet_refusal(name: str) -> str:
        return (
            f"CLIP-LoRA adapts the attention layers of both encoders, and the image tower of "
            f"{name!r} is a ResNet: upstream CLIP-LoRA defines LoRA for ViT image towers only "
            "(ViT-B/16, ViT-B/32, ViT-L/14). Fix: set MODEL.BACKBONE.NAME to a ViT (the config "
            "configs/trainers/CLIP_LoRA/vit_b16.yaml uses ViT-B/16)."
        )

    @staticmethod
    def _openclip_refusal(name: str) -> str:
        return (
            f"CLIP-LoRA wraps the attention of CLIP models in OpenAI's layout (clip/model.py); "
            f"{name!r} is an OpenCLIP model. Fix: use an OpenAI ViT backbone (ViT-B/16, "
            "ViT-B/32, ViT-L/14) or a state dict in its layout."
        )

    def check_backbone(self, backbone: ClipBackbone) -> None:
        if not isinstance(backbone, OpenAIBackbone):
            raise ValueError(self._openclip_refusal(backbone.name))
        if not hasattr(backbone.visual, "transformer"):
            raise ValueError(self._resnet_refusal(backbone.name))

    @property
    def iterations(self) -> int:
        """Upstream's budget: ITERS_PER_SHOT x shots optimizer steps."""
        return self.method_cfg().ITERS_PER_SHOT * self.cfg.DATASET.NUM_SHOTS

    def build_data_loader(self) -> None:
        """The engine's loaders, the train loader keeping its last, incomplete batch (as
        upstream's); the epochs are as many as the iterations need, the last one cut short."""
        super().build_data_loader()
        self.train_loader_x = keeping_last_batch(self.train_loader_x)
        if not _trains(self.cfg):
            return
        per_epoch = len(self.train_loader_x)
        self.max_epoch = math.ceil(self.iterations / per_epoch)
        last = self.iterations - (self.max_epoch - 1) * per_epoch
        print(
            f"CLIP-LoRA: {self.iterations} iterations (TRAINER.CLIP_LORA.ITERS_PER_SHOT x "
            f"DATASET.NUM_SHOTS): {self.max_epoch} epochs of {per_epoch} batches, the last of "
            f"{last} (OPTIM.MAX_EPOCH is not used)"
        )

    def batches_this_epoch(self) -> int:
        per_epoch = len(self.train_loader_x)
        return min(per_epoch, self.iterations - self.epoch * per_epoch)

    def build_head(self, backbone: ClipBackbone, classnames: list[str]) -> nn.Module:
        node = self.method_cfg()
        self.learner = add_lora(backbone, list(node.PARAMS), node.RANK, node.ALPHA, node.DROPOUT)
        template = custom_template(self.cfg.DATASET.NAME)  # upstream's dataset.template[0]
        print(f"Prompt template: {template!r}")
        tokens = backbone.tokenize([template.format(name) for name in spaced(classnames)])
        return LoRAClassifier(backbone, tokens.to(self.device))

    def learnable(self) -> nn.Module:
        return self.learner

    def make_optimizer(self, learner: nn.Module) -> torch.optim.Optimizer:
        """Upstream's AdamW: OPTIM.LR, weight decay 0.01, betas (0.9, 0.999), eps 1e-8."""
        return torch.optim.AdamW(
            learner.parameters(), lr=self.cfg.OPTIM.LR, weight_decay=1e-2, betas=(0.9, 0.999)
        )

    def make_lr_scheduler(self, optim: torch.optim.Optimizer) -> Any:
        """Upstream's cosine over every iteration of the run, down to 1e-6."""
        return torch.optim.lr_scheduler.CosineAnnealingLR(optim, self.iterations, eta_min=MIN_LR)

    def forward_backward(self, batch: dict) -> dict[str, float]:
        """Upstream's step: the class prompts through the text tower first (the LoRA dropout
        draws the generator in its order), then the images, then 100 x cosine cross-entropy."""
        with self.training_autocast():
            classes = self.head.class_features()  # [K, D]
            features, label = self.parse_batch_train(batch)
            output = self.head.logits(features, classes)
            loss = F.cross_entropy(output, label)
        self.model_backward_and_update(loss)
        return {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}

    def test(self, split: str | None = None) -> float:
        """An evaluation encodes the class prompts once, with the LoRA dropout off."""
        self.set_model_mode("eval")
        with self.head.classes_encoded_once():
            return super().test(split)
