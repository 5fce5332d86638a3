"""The CLIP network: a ResNet or ViT image tower and a causal text transformer.

Module and parameter names reproduce OpenAI's checkpoints key for key, so their state dicts (and
the state dicts of their TorchScript archives) load without any renaming. Attention runs through
`F.scaled_dot_product_attention`, which picks fused kernels on both CPU and GPU, while keeping
`nn.MultiheadAttention`'s `in_proj_weight` / `out_proj` parameter layout.

Sequence tensors inside `Transformer` are LND (sequence first), as upstream: trainers such as
CoOp call `clip_model.transformer(x.permute(1, 0, 2))` directly.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# State-dict entries that OpenAI's TorchScript archives carry as tensors but the model derives.
_ARCHIVE_ONLY_KEYS = ("input_resolution", "context_length", "vocab_size")


class Bottleneck(nn.Module):
    """ResNet bottleneck whose stride is an average pool, so strided convolutions never alias."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)

        self.downsample = None
        if stride > 1 or inplanes != planes * self.expansion:
            # The key names "-1", "0", "1" are those of the OpenAI checkpoints.
            self.downsample = nn.Sequential(
                OrderedDict(
                    [
                        ("-1", nn.AvgPool2d(stride)),
                        ("0", nn.Conv2d(inplanes, planes * self.expansion, 1, bias=False)),
                        ("1", nn.BatchNorm2d(planes * self.expansion)),
                    ]
                )
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(self.avgpool(out)))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity, inplace=True)


class AttentionPool2d(nn.Module):
    """Pools a feature map with one attention query: the mean of the map plus its position."""

    def __init__(
        self, spacial_dim: int, embed_dim: int, num_heads: int, output_dim: int | None = None
    ) -> None:
        super().__init__()
        self.positional_embedding = nn.Parameter(
            torch.randn(spacial_dim**2 + 1, embed_dim) / embed_dim**0.5
        )
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim or embed_dim)
        self.num_heads = num_heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        x = x.flatten(2).transpose(1, 2)  # [N, C, H, W] -> [N, HW, C]
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)  # [N, HW+1, C]
        x = x + self.positional_embedding.to(x.dtype)
        # Only the output at the mean token is kept, so only its query is computed.
        head_dim = c // self.num_heads
        q = self.q_proj(x[:, :1]).view(n, 1, self.num_heads, head_dim).transpose(1, 2)
        k = self.k_proj(x).view(n, -1, self.num_heads, head_dim).transpose(1, 2)
        v = self.v_proj(x).view(n, -1, self.num_heads, head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)  # [N, heads, 1, head_dim]
        return self.c_proj(out.reshape(n, c))


class ModifiedResNet(nn.Module):
    """CLIP's ResNet: 3-conv stem with average pooling, anti-aliased strides, attention pooling."""

    def __init__(
        self,
        layers: tuple[int, int, int, int],
        output_dim: int,
        heads: int,
        input_resolution: int = 224,
        width: int = 64,
    ) -> None:
        super().__init__()
        self.output_dim = output_dim
        self.input_resolution = input_resolution

        self.conv1 = nn.Conv2d(3, width // 2, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, kernel_size=3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)

        inplanes = width
        stages = []
        for i, blocks in enumerate(layers):
            planes = width * 2**i
            stride = 1 if i == 0 else 2
            stage = [Bottleneck(inplanes, planes, stride)]
            inplanes = planes * Bottleneck.expansion
            stage += [Bottleneck(inplanes, planes) for _ in range(1, blocks)]
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

        embed_dim = width * 32  # channels after layer4
        self.attnpool = AttentionPool2d(input_resolution // 32, embed_dim, heads, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.type(self.conv1.weight.dtype)
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        x = F.relu(self.bn2(self.conv2(x)), inplace=True)
        x = F.relu(self.bn3(self.conv3(x)), inplace=True)
        x = self.avgpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x)


class LayerNorm(nn.LayerNorm):
    """LayerNorm that normalises in fp32 whatever the input dtype, so fp16 models stay stable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            return super().forward(x)
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        out = F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)
        return out.to(x.dtype)


class QuickGELU(nn.Module):
    """The sigmoid approximation of GELU that CLIP was trained with (not exact GELU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class MultiheadSelfAttention(nn.Module):
    """Self-attention with `nn.MultiheadAttention`'s parameter names, run by fused SDPA kernels."""

    def __init__(self, d_model: int, n_head: int) -> None:
        super().__init__()
        if n_head < 1 or d_model % n_head:
            raise ValueError(
                f"width {d_model} cannot be split into {n_head} attention heads; CLIP uses one "
                "head per 64 channels, so widths must be positive multiples of 64"
            )
        self.num_heads = n_head
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d_model))
        self.out_proj = nn.Linear(d_model, d_model)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(
        self, x: torch.Tensor, causal: bool = False, first_only: bool = False
    ) -> torch.Tensor:
        """[L, N, D] -> [L, N, D], or [1, N, D] (position 0 only) when `first_only`."""
        seq_len, n, d = x.shape
        head_dim = d // self.num_heads
        if first_only:  # one query row: position 0 sees every position, as without the flag
            q = F.linear(x[:1], self.in_proj_weight[:d], self.in_proj_bias[:d])  # [1, N, D]
            q = q.view(1, n, self.num_heads, head_dim).permute(1, 2, 0, 3)  # [N, heads, 1, hd]
            kv = F.linear(x, self.in_proj_weight[d:], self.in_proj_bias[d:])  # [L, N, 2D]
            kv = kv.view(seq_len, n, 2, self.num_heads, head_dim)
            k, v = kv.permute(2, 1, 3, 0, 4).unbind(0)  # each [N, heads, L, head_dim]
        else:
            qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # [L, N, 3D]
            qkv = qkv.view(seq_len, n, 3, self.num_heads, head_dim)
            q, k, v = qkv.permute(2, 1, 3, 0, 4).unbind(0)  # each [N, heads, L, head_dim]
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        out_len = q.shape[2]
        out = out.permute(2, 0, 1, 3).reshape(out_len, n, d)  # [N, heads, Lq, hd] -> [Lq, N, D]
        return self.out_proj(out)


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, d_model: int, n_head: int, causal: bool = False) -> None:
        super().__init__()
        self.attn = MultiheadSelfAttention(d_model, n_head)
        self.ln_1 = LayerNorm(d_model)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(d_model, d_model * 4)),
                    ("gelu", QuickGELU()),
                    ("c_proj", nn.Linear(d_model * 4, d_model)),
                ]
            )
        )
        self.ln_2 = LayerNorm(d_model)
        self.causal = causal

    def forward(self, x: torch.Tensor, first_only: bool = False) -> torch.Tensor:
        attended = self.attn(self.ln_1(x), causal=self.causal, first_only=first_only)
        x = (x[:1] if first_only else x) + attended
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """A stack of residual attention blocks over LND tensors; `causal` masks future tokens."""

    def __init__(self, width: int, layers: int, heads: int, causal: bool = False) -> None:
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.Sequential(
            *[ResidualAttentionBlock(width, heads, causal) for _ in range(layers)]
        )

    def forward(self, x: torch.Tensor, first_only: bool = False) -> torch.Tensor:
        """[L, N, D] -> [L, N, D]; with `first_only`, [1, N, D]: the last block then computes
        position 0 alone, all that a ViT's class-token readout needs (1/layers less work)."""
        if not first_only:
            return self.resblocks(x)
        for block in self.resblocks[:-1]:
            x = block(x)
        return self.resblocks[-1](x, first_only=True)


class VisionTransformer(nn.Module):
    """ViT image tower: patch embedding, class token, pre/post LayerNorm, linear projection."""

    def __init__(
        self,
        input_resolution: int,
        patch_size: int,
        width: int,
        layers: int,
        heads: int,
        output_dim: int,
    ) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.output_dim = output_dim
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(
            scale * torch.randn((input_resolution // patch_size) ** 2 + 1, width)
        )
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)  # [N, width, grid, grid]
        x = x.flatten(2).transpose(1, 2)  # [N, grid**2, width]
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)  # [N, grid**2 + 1, width]
        x = self.ln_pre(x + self.positional_embedding.to(x.dtype))
        x = self.transformer(x.transpose(0, 1), first_only=True)  # NLD -> LND, [1, N, width]
        x = self.ln_post(x[0])  # class token: [N, width]
        return x @ self.proj


class CLIP(nn.Module):
    """Image and text towers mapping into one embedding space, plus the learned logit scale."""

    def __init__(
        self,
        embed_dim: int,
        image_resolution: int,
        vision_layers: tuple[int, int, int, int] | int,
        vision_width: int,
        vision_patch_size: int | None,
        context_length: int,
        vocab_size: int,
        transformer_width: int,
        transformer_heads: int,
        transformer_layers: int,
    ) -> None:
        super().__init__()
        self.context_length = context_length
        # The sizes this model was built with (read off the state dict by `build_model`): part of
        # the feature store's key, since weights alone do not say how they are run.
        self.architecture: dict[str, Any] = {
            "embed_dim": embed_dim,
            "image_resolution": image_resolution,
            "vision_layers": list(vision_layers)
            if isinstance(vision_layers, (tuple, list))
            else vision_layers,
            "vision_width": vision_width,
            "vision_patch_size": vision_patch_size,
            "context_length": context_length,
            "vocab_size": vocab_size,
            "transformer_width": transformer_width,
            "transformer_heads": transformer_heads,
            "transformer_layers": transformer_layers,
        }

        if isinstance(vision_layers, (tuple, list)):
            self.visual = ModifiedResNet(
                layers=tuple(vision_layers),
                output_dim=embed_dim,
                heads=vision_width * 32 // 64,
                input_resolution=image_resolution,
                width=vision_width,
            )
        else:
            self.visual = VisionTransformer(
                input_resolution=image_resolution,
                patch_size=vision_patch_size,
                width=vision_width,
                layers=vision_layers,
                heads=vision_width // 64,
                output_dim=embed_dim,
            )

        self.transformer = Transformer(
            transformer_width, transformer_layers, transformer_heads, causal=True
        )
        self.vocab_size = vocab_size
        self.token_embedding = nn.Embedding(vocab_size, transformer_width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, transformer_width))
        self.ln_final = LayerNorm(transformer_width)
        self.text_projection = nn.Parameter(torch.empty(transformer_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))
        self.initialize_parameters()

    def initialize_parameters(self) -> None:
        """CLIP's published initialisation (used for training from scratch and random models)."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)

        if isinstance(self.visual, ModifiedResNet):
            pool = self.visual.attnpool
            std = pool.c_proj.in_features**-0.5
            for proj in (pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj):
                nn.init.normal_(proj.weight, std=std)
            # Each residual branch starts as zero, so a fresh ResNet is the identity path.
            for name, param in self.visual.named_parameters():
                if name.startswith("layer") and name.endswith("bn3.weight"):
                    nn.init.zeros_(param)

        width, layers = self.transformer.width, self.transformer.layers
        proj_std = width**-0.5 * (2 * layers) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=width**-0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=width**-0.5)

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return self.visual(image.type(self.dtype))

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing():  # a trace must not bake in one batch's length
            text = text[:, : text_length(text)]
        x = self.token_embedding(text).type(self.dtype)  # [N, L, width]
        x = x + self.positional_embedding[: x.shape[1]].type(self.dtype)
        x = self.transformer(x.transpose(0, 1)).transpose(0, 1)  # NLD -> LND -> NLD
        x = self.ln_final(x).type(self.dtype)
        # The end-of-text token has the largest id, so argmax finds each sequence's last token.
        x = x[torch.arange(x.shape[0]), text.argmax(dim=-1)]  # [N, width]
        return x @ self.text_projection

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image_features = self.encode_image(image)
        text_features = self.encode_text(text)
        image_features = image_features / image_features.norm(dim=1, keepdim=True)
        text_features = text_features / text_features.norm(dim=1, keepdim=True)
        logits_per_image = self.logit_scale.exp() * image_features @ text_features.t()
        return logits_per_image, logits_per_image.t()


def text_length(text: torch.Tensor) -> int:
    """Positions up to the batch's last end-of-text token in token ids `text` [N, L].

    Attention is causal and the features are read at each text's end token, so the padding after
    that position never reaches them: text encoders drop it and run on [N, text_length] only.
    """
    return int(text.argmax(dim=-1).max()) + 1


def convert_weights(model: nn.Module) -> None:
    """Cast the weights OpenAI keeps in fp16 to fp16, in place (norms and embeddings stay fp32)."""

    def _to_fp16(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            module.weight.data = module.weight.data.half()
            if module.bias is not None:
                module.bias.data = module.bias.data.half()
        if isinstance(module, (MultiheadSelfAttention, nn.MultiheadAttention)):
            for name in ("in_proj_weight", "in_proj_bias"):
                tensor = getattr(module, name, None)
                if tensor is not None:
                    tensor.data = tensor.data.half()
        for name in ("text_projection", "proj"):
            tensor = getattr(module, name, None)
            if isinstance(tensor, torch.Tensor):
                tensor.data = tensor.data.half()

    model.apply(_to_fp16)


# The largest of each size among OpenAI's published models (RN50x64, ViT-L/14, ...), and the
# largest state dict (RN50x64's, in elements). `build_model` refuses an architecture beyond
# _HEADROOM times any of these before it allocates anything.
_LARGEST_PUBLISHED_NUMEL = 623_669_128
_LARGEST_PUBLISHED = {
    "embed_dim": 1024,
    "image_resolution": 448,
    "vision_layers": 36,  # blocks of RN50x64's third stage; ViT-L/14 has 24
    "vision_width": 1024,
    "vision_patch_size": 32,
    "context_length": 77,
    "vocab_size": 49408,
    "transformer_width": 1024,
    "transformer_layers": 12,
}
_HEADROOM = 4
_NOT_CLIP = (
    "This is not an OpenAI-layout CLIP checkpoint, or the file is corrupt: pass an OpenAI CLIP "
    "file (TorchScript archive or state dict) or one written by "
    "clip.synthetic.write_synthetic_checkpoint; if it was downloaded, fetch it again"
)


def _size(state_dict: Mapping[str, torch.Tensor], key: str, dim: int) -> int:
    """`state_dict[key].shape[dim]`, or an error naming the key."""
    if key not in state_dict:
        raise KeyError(f"the state dict has no entry '{key}'. {_NOT_CLIP}")
    value = state_dict[key]
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"state dict entry '{key}' is a {type(value).__name__}. {_NOT_CLIP}")
    if not -value.dim() <= dim < value.dim():
        raise ValueError(f"{key} has shape {tuple(value.shape)}, with no dim {dim}. {_NOT_CLIP}")
    return value.shape[dim]


def _count_blocks(state_dict: Mapping[str, torch.Tensor], prefix: str) -> int:
    """Number of distinct block indices N among keys `<prefix>N.*`."""
    return len({k[len(prefix) :].split(".")[0] for k in state_dict if k.startswith(prefix)})


def _architecture(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, Any], dict[str, str]]:
    """The `CLIP(...)` arguments read off the shapes, and for each size where it was read."""
    sources = {
        "embed_dim": "text_projection",
        "context_length": "positional_embedding",
        "vocab_size": "token_embedding.weight",
        "transformer_width": "ln_final.weight",
        "transformer_layers": "transformer.resblocks.<N>.*",
    }
    transformer_width = _size(state_dict, "ln_final.weight", 0)
    kwargs: dict[str, Any] = {
        "embed_dim": _size(state_dict, "text_projection", 1),
        "context_length": _size(state_dict, "positional_embedding", 0),
        "vocab_size": _size(state_dict, "token_embedding.weight", 0),
        "transformer_width": transformer_width,
        "transformer_heads": transformer_width // 64,
        "transformer_layers": _count_blocks(state_dict, "transformer.resblocks."),
    }
    if "visual.proj" in state_dict:
        # conv1 is [width, 3, patch, patch]; positions are grid**2 patches plus the class token.
        num_positions = _size(state_dict, "visual.positional_embedding", 0)
        kwargs["vision_patch_size"] = _size(state_dict, "visual.conv1.weight", -1)
        grid = math.isqrt(max(num_positions - 1, 0))
        kwargs["image_resolution"] = kwargs["vision_patch_size"] * grid
        kwargs["vision_width"] = _size(state_dict, "visual.conv1.weight", 0)
        kwargs["vision_layers"] = _count_blocks(state_dict, "visual.transformer.resblocks.")
        sources.update(
            vision_patch_size="visual.conv1.weight",
            image_resolution="visual.positional_embedding",
            vision_width="visual.conv1.weight",
            vision_layers="visual.transformer.resblocks.<N>.*",
        )
    else:
        num_positions = _size(state_dict, "visual.attnpool.positional_embedding", 0)
        kwargs["vision_patch_size"] = None
        kwargs["image_resolution"] = math.isqrt(max(num_positions - 1, 0)) * 32
        kwargs["vision_width"] = _size(state_dict, "visual.layer1.0.conv1.weight", 0)
        kwargs["vision_layers"] = tuple(
            _count_blocks(state_dict, f"visual.layer{i}.") for i in (1, 2, 3, 4)
        )
        sources.update(
            image_resolution="visual.attnpool.positional_embedding",
            vision_width="visual.layer1.0.conv1.weight",
            vision_layers="visual.layer<S>.<N>.*",
        )
    return kwargs, sources


def _check_sizes(
    state_dict: Mapping[str, torch.Tensor], kwargs: dict[str, Any], sources: dict[str, str]
) -> None:
    """Every inferred size within 1 .. _HEADROOM x the largest published one."""
    for name, source in sources.items():
        values = kwargs[name] if isinstance(kwargs[name], tuple) else (kwargs[name],)
        limit = _HEADROOM * _LARGEST_PUBLISHED[name]
        for value in values:
            if 1 <= value <= limit:
                continue
            where = (
                f"{source} has shape {tuple(state_dict[source].shape)}"
                if source in state_dict
                else f"the keys {source}"
            )
            raise ValueError(
                f"{where}, which makes {name} {value}; a CLIP has 1 to {limit} "
                f"({_HEADROOM}x the largest published, {_LARGEST_PUBLISHED[name]}). {_NOT_CLIP}"
            )


def _check_shapes(state_dict: Mapping[str, torch.Tensor], kwargs: dict[str, Any]) -> None:
    """Compare every key and shape with those of the architecture, built on the meta device
    (shapes only: nothing is allocated, and the random number generators are not used)."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in CLIP(**kwargs).state_dict().items()}
    summary = ", ".join(f"{k}={v}" for k, v in kwargs.items() if v is not None)
    numel = sum(math.prod(shape) for shape in expected.values())
    if numel > _HEADROOM * _LARGEST_PUBLISHED_NUMEL:
        raise ValueError(
            f"the architecture read off the shapes ({summary}) has {numel:,} weights, over "
            f"{_HEADROOM}x the largest published CLIP ({_LARGEST_PUBLISHED_NUMEL:,}). {_NOT_CLIP}"
        )
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        raise ValueError(
            f"the state dict's keys do not fit the architecture read off its shapes ({summary}): "
            f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}, unexpected "
            f"{unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}. {_NOT_CLIP}"
        )
    for key, shape in expected.items():
        value = state_dict[key]
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"state dict entry '{key}' is a {type(value).__name__}. {_NOT_CLIP}")
        if tuple(value.shape) != shape:
            raise ValueError(
                f"{key} has shape {tuple(value.shape)}, but the architecture read off the other "
                f"tensors ({summary}) expects {shape}. {_NOT_CLIP}"
            )


def build_model(state_dict: Mapping[str, torch.Tensor]) -> CLIP:
    """Build a CLIP whose architecture is read off the state dict's shapes, in eval mode.

    Every size and every tensor's shape is checked against that architecture before anything is
    allocated, so a corrupt or crafted file fails at once with the offending key rather than
    after (or instead of) a huge allocation. Unlike upstream, which casts to fp16 here, the model
    is returned in fp32: the caller picks the precision (`convert_weights(model)` gives upstream's
    fp16 layout), so CPU users and fp32/amp training never round-trip weights through fp16. The
    caller's dict is not modified.
    """
    state_dict = {k: v for k, v in state_dict.items() if k not in _ARCHIVE_ONLY_KEYS}
    kwargs, sources = _architecture(state_dict)
    _check_sizes(state_dict, kwargs, sources)
    _check_shapes(state_dict, kwargs)
    model = CLIP(**kwargs)
    model.load_state_dict(state_dict)
    return model.eval()
