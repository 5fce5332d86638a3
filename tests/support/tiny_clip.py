"""Tiny OpenAI-layout CLIP checkpoints for tests (32 px images, real tokenizer vocabulary)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from clip.synthetic import TINY_INPUT_SIZE, build_synthetic_model, write_synthetic_checkpoint

__all__ = [
    "TINY_INPUT_SIZE",
    "backbone_cfg",
    "build_synthetic_model",
    "tiny_clip_checkpoint",
]


def tiny_clip_checkpoint(
    tmp_dir: str | Path, arch: str = "ViT", jit: bool = False, seed: int = 0, **dims: Any
) -> Path:
    """Write (once per folder and arguments) a tiny checkpoint and return its path."""
    suffix = "-".join(f"{k}{v}" for k, v in sorted(dims.items()))
    name = f"tiny-{arch}-{'jit' if jit else 'sd'}-seed{seed}{'-' + suffix if suffix else ''}.pt"
    path = Path(tmp_dir) / name
    if not path.is_file():
        write_synthetic_checkpoint(path, arch=arch, jit=jit, seed=seed, **dims)
    return path


def backbone_cfg(name: str | Path) -> SimpleNamespace:
    """The smallest cfg `clip.load_clip_to_cpu` reads: cfg.MODEL.BACKBONE.NAME."""
    return SimpleNamespace(MODEL=SimpleNamespace(BACKBONE=SimpleNamespace(NAME=str(name))))
