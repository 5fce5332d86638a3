"""Random-weight CLIP checkpoints in OpenAI's layout, for tests, demos and benchmarks.

Real weights cannot be downloaded everywhere; these files exercise exactly the same loading
code (state dict or TorchScript archive), with the real 49408-token vocabulary so the real
tokenizer works. Defaults are tiny (32 px images); every dimension can be overridden to make
RN50- or ViT-B/16-sized random models.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dassl.utils.tools import atomic_write

from .clip import quiet_torchscript
from .model import CLIP, convert_weights

TINY_INPUT_SIZE = 32
CONTEXT_LENGTH = 77
VOCAB_SIZE = 49408

_COMMON_DEFAULTS: dict[str, Any] = {
    "embed_dim": 32,
    "image_resolution": TINY_INPUT_SIZE,
    "context_length": CONTEXT_LENGTH,
    "vocab_size": VOCAB_SIZE,
    "transformer_width": 64,
    "transformer_layers": 2,
}
_ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "ViT": {"vision_layers": 2, "vision_width": 64, "vision_patch_size": 8},
    # Stem width 8: stages of 32, 64, 128, 256 channels; attention pooling with 4 heads.
    "RN": {"vision_layers": (1, 1, 1, 1), "vision_width": 8},
}

# Dimensions of the published models, for benchmarks (pass as **dims).
RN50_DIMS: dict[str, Any] = {
    "embed_dim": 1024,
    "image_resolution": 224,
    "vision_layers": (3, 4, 6, 3),
    "vision_width": 64,
    "transformer_width": 512,
    "transformer_layers": 12,
}
VIT_B16_DIMS: dict[str, Any] = {
    "embed_dim": 512,
    "image_resolution": 224,
    "vision_layers": 12,
    "vision_width": 768,
    "vision_patch_size": 16,
    "transformer_width": 512,
    "transformer_layers": 12,
}
VIT_B32_DIMS: dict[str, Any] = {**VIT_B16_DIMS, "vision_patch_size": 32}


def synthetic_dims(arch: str = "ViT", **dims: Any) -> dict[str, Any]:
    """The full `CLIP(...)` keyword arguments for `arch` with `dims` overriding the tiny defaults.

    Heads are not free: `build_model` infers one head per 64 channels, so they are derived here.
    """
    if arch not in _ARCH_DEFAULTS:
        raise ValueError(f"arch must be 'ViT' or 'RN', not {arch!r}")
    unknown = set(dims) - set(_COMMON_DEFAULTS) - set(_ARCH_DEFAULTS[arch])
    if unknown:
        raise TypeError(
            f"unknown dimension(s) {sorted(unknown)}; known: "
            f"{sorted(set(_COMMON_DEFAULTS) | set(_ARCH_DEFAULTS[arch]))}"
        )
    merged = {**_COMMON_DEFAULTS, **_ARCH_DEFAULTS[arch], **dims}
    for key in ("transformer_width", *(("vision_width",) if arch == "ViT" else ())):
        if merged[key] % 64 or merged[key] < 64:
            raise ValueError(f"{key}={merged[key]} must be a positive multiple of 64 (head size)")
    merged["transformer_heads"] = merged["transformer_width"] // 64
    if arch == "RN":
        merged["vision_layers"] = tuple(merged["vision_layers"])
        merged["vision_patch_size"] = None
        if merged["image_resolution"] % 32:
            raise ValueError("a CLIP ResNet needs an image_resolution divisible by 32")
    elif merged["image_resolution"] % merged["vision_patch_size"]:
        raise ValueError("image_resolution must be divisible by vision_patch_size")
    return merged


@torch.no_grad()
def _randomise_batch_norms(model: CLIP, generator: torch.Generator) -> None:
    """Give BatchNorms random affine parameters and running statistics measured on random images,
    so every residual branch contributes and activations stay well scaled at any depth."""
    norms = [m for m in model.visual.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        return
    for bn in norms:
        bn.weight.copy_(1 + 0.1 * torch.randn(bn.weight.shape, generator=generator))
        bn.bias.copy_(0.1 * torch.randn(bn.bias.shape, generator=generator))
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration pass
    resolution = model.visual.input_resolution
    images = torch.randn(2, 3, resolution, resolution, generator=generator)
    model.visual.train()
    model.visual(images)
    model.visual.eval()
    for bn in norms:
        bn.momentum = 0.1


def build_synthetic_model(arch: str = "ViT", seed: int = 0, **dims: Any) -> CLIP:
    """A random fp32 CLIP in eval mode, reproducible from `seed`."""
    kwargs = synthetic_dims(arch, **dims)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP(**kwargs)
    # Non-zero biases and norm parameters so parity checks see every parameter.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".bias") or ".ln_" in name or name.startswith("ln_"):
                param.add_(0.02 * torch.randn(param.shape, generator=generator))
    _randomise_batch_norms(model, generator)
    return model.eval()


def _archive(model: CLIP) -> torch.jit.ScriptModule:
    """Trace `forward`, `encode_image` and `encode_text` into a TorchScript module that, like
    OpenAI's archives, also stores `input_resolution`, `context_length`, `vocab_size` tensors."""
    export = copy.deepcopy(model)
    for key in ("context_length", "vocab_size"):
        delattr(export, key)
    export.register_buffer("input_resolution", torch.tensor(model.visual.input_resolution))
    export.register_buffer("context_length", torch.tensor(model.context_length))
    export.register_buffer("vocab_size", torch.tensor(model.vocab_size))
    resolution = model.visual.input_resolution
    image = torch.zeros(2, 3, resolution, resolution, dtype=model.dtype)
    text = torch.zeros(2, model.context_length, dtype=torch.long)
    text[:, :3] = torch.tensor([model.vocab_size - 2, 1, model.vocab_size - 1])  # SOT, x, EOT
    with quiet_torchscript():
        return torch.jit.trace_module(
            export,
            {"forward": (image, text), "encode_image": image, "encode_text": text},
            check_trace=False,
        )


def write_synthetic_checkpoint(
    path: str | os.PathLike,
    arch: str = "ViT",
    jit: bool = False,
    seed: int = 0,
    fp16: bool = False,
    **dims: Any,
) -> Path:
    """Write a random CLIP checkpoint to `path`: a state dict (torch.save) or, with `jit=True`,
    a TorchScript archive. Both load through `clip.load` and `load_clip_to_cpu` to the same model
    for the same seed and dims. `fp16=True` stores the weights OpenAI keeps in fp16 in fp16 (and
    traces the archive in fp16), as in the published files."""
    path = Path(path)
    model = build_synthetic_model(arch, seed, **dims)
    if fp16:
        convert_weights(model)
    archive = _archive(model) if jit else None
    with atomic_write(path, "wb") as f:
        if archive is not None:
            with quiet_torchscript():
                torch.jit.save(archive, f)
        else:
            torch.save(model.state_dict(), f)
    return path
