"""Tiny OpenCLIP models with random weights, in OpenCLIP's folder layout, for tests.

Each is OpenCLIP's own architecture config (`open_clip.get_model_config`) with its towers shrunk
through model_cfg overrides, built by `open_clip.create_model(..., pretrained=None)` and saved as
`open_clip_config.json` + `open_clip_model.safetensors`: the layout of OpenCLIP models on the
Hugging Face Hub and of `local-dir:` folders, so the same files serve every lookup path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import open_clip
import torch
from safetensors.torch import save_file

from clip.openclip import CONFIG_FILE, WEIGHTS_FILES

# CLIP's BPE vocabulary (the tokenizer of every tiny tower here), a 1-layer, 32-wide transformer.
_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
_OPENAI_PREPROCESS = {"interpolation": "bicubic", "resize_mode": "shortest"}

# name: (OpenCLIP architecture, model_cfg overrides, preprocess_cfg)
TINY_OPENCLIP: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    # OpenCLIP's own ViT image tower; causal text tower with argmax pooling (LAION, DataComp).
    "vit": (
        "ViT-B-32",
        {
            "embed_dim": 32,
            "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16,
                           "patch_size": 8},
            "text_cfg": _TEXT,
        },
        _OPENAI_PREPROCESS,
    ),
    # OpenCLIP's ModifiedResNet (attention pooling), as in its RN50 models.
    "rn": (
        "RN50",
        {
            "embed_dim": 32,
            "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8,
                           "head_width": 8, "patch_size": None},
            "text_cfg": _TEXT,
        },
        _OPENAI_PREPROCESS,
    ),
    # SigLIP's structure: a timm ViT with attention-pool head, a custom text tower without
    # causal mask pooling the last token through a biased projection, a logit bias, SigLIP's
    # preprocessing. Its SentencePiece tokenizer is replaced by CLIP's (no download).
    "siglip": (
        "ViT-B-16-SigLIP",
        {
            "embed_dim": 64,  # timm's test_vit width: the map head has no projection
            "vision_cfg": {"image_size": 160, "timm_model_name": "test_vit",
                           "timm_model_pretrained": False, "timm_pool": "map",
                           "timm_proj": "none"},
            "text_cfg": {**_TEXT, "no_causal_mask": True, "proj_bias": True,
                         "pool_type": "last", "norm_kwargs": {"eps": 1e-6}},
        },
        {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic",
         "resize_mode": "squash"},
    ),
    # A timm ConvNeXt image tower with a linear projection (OpenCLIP's convnext_* models).
    "convnext": (
        "convnext_tiny",
        {
            "embed_dim": 32,
            "vision_cfg": {"image_size": 32, "timm_model_name": "test_convnext",
                           "timm_model_pretrained": False, "timm_pool": "avg",
                           "timm_proj": "linear"},
            "text_cfg": _TEXT,
        },
        _OPENAI_PREPROCESS,
    ),
}  # fmt: skip


def tiny_model_cfg(name: str) -> dict[str, Any]:
    """OpenCLIP's config of the architecture with the overrides applied."""
    arch, overrides, _ = TINY_OPENCLIP[name]
    model_cfg = open_clip.get_model_config(arch)
    model_cfg.update(overrides)
    if "hf_tokenizer_name" in model_cfg["text_cfg"]:
        raise AssertionError(f"{name}: tiny towers use CLIP's tokenizer")
    return model_cfg


def write_openclip_folder(
    folder: str | Path, name: str, seed: int = 0, model_cfg: dict[str, Any] | None = None
) -> Path:
    """Write tiny model `name` (random weights from `seed`) into `folder`; return the folder.

    `model_cfg` replaces the architecture's config (e.g. one with a Hugging Face text tower).
    """
    arch, overrides, preprocess = TINY_OPENCLIP[name]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if model_cfg is None:
        model_cfg = tiny_model_cfg(name)
        torch.manual_seed(seed)
        model = open_clip.create_model(arch, pretrained=None, **overrides)
    else:
        torch.manual_seed(seed)
        model = open_clip.CustomTextCLIP(**model_cfg)
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=1))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILES[0]))
    return folder
