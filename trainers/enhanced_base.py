"""The enhanced-base file: a tuned text projection, in the format upstream TaskRes reads.

Upstream's file (`strong_base/<Dataset>/rn50_<K>shots/model.pth.tar`) is a `torch.save`d dict
whose `state_dict["weight"]` is a [embed_dim, width] matrix (an `nn.Linear(width, embed_dim)`
weight); its transpose replaces CLIP's `text_projection` [width, embed_dim] before the TaskRes
base is computed. TextProjectionTuning writes the same layout, plus `built_by`: what the base was
built from (the run, dataset, shot count, seed, backbone and a digest of the projection it started
from), so TaskRes can check a base against its own run and the results tables can say which base
a row used. Upstream's loader reads `state_dict["weight"]` only, so our files load there too.
"""

import hashlib
import os.path as osp
from typing import Any

import torch
from yacs.config import CfgNode as CN

from clip.backbone import ClipBackbone
from dassl.utils import atomic_write, load_checkpoint

FILE_NAME = "enhanced_base.pth.tar"  # what TextProjectionTuning writes into its OUTPUT_DIR
BUILT_BY = "built_by"


def projection_digest(projection: torch.Tensor) -> str:
    """SHA-256 of a text projection rounded to fp16, so that fp16 and fp32 runs of one backbone
    agree: it names the projection a base was tuned from."""
    flat = projection.detach().to("cpu", torch.float16).contiguous().reshape(-1)
    digest = hashlib.sha256(f"{tuple(projection.shape)}|".encode())
    digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def built_by(cfg: CN, backbone: ClipBackbone, epoch: int) -> dict[str, Any]:
    """The provenance a built base carries (plain strings and numbers: upstream's loader and
    `torch.load(weights_only=True)` read it)."""
    return {
        "trainer": cfg.TRAINER.NAME,
        "run": cfg.OUTPUT_DIR,
        "dataset": cfg.DATASET.NAME,
        "shots": int(cfg.DATASET.NUM_SHOTS),
        "seed": int(cfg.SEED),
        "subsample": cfg.DATASET.SUBSAMPLE_CLASSES,
        "backbone": cfg.MODEL.BACKBONE.NAME,
        "projection_sha256": projection_digest(backbone.text_projection),
        "epoch": int(epoch),
    }


def save_enhanced_base(path: str, weight: torch.Tensor, provenance: dict[str, Any]) -> None:
    """Write `weight` [embed_dim, width] as an enhanced-base file (atomically)."""
    state = {
        "state_dict": {"weight": weight.detach().float().cpu()},
        "epoch": provenance["epoch"],
        BUILT_BY: provenance,
    }
    with atomic_write(path, "wb") as f:
        torch.save(state, f)
    print(f"Enhanced base (text projection {tuple(weight.shape)}) written to {path}")


def read_enhanced_base(path: str) -> tuple[torch.Tensor, dict[str, Any] | None]:
    """The weight [embed_dim, width] of an enhanced-base file and its provenance (None for
    upstream's released files, which carry none)."""
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'TRAINER.TaskRes.ENHANCED_BASE (--enhanced-base) is "{path}", which is not a file. '
            "Fix: give the path of an enhanced-base checkpoint (a torch.save'd dict with "
            'state_dict["weight"], as TextProjectionTuning writes to <run>/'
            f'{FILE_NAME}), or "none" for the regular base.'
        )
    checkpoint = load_checkpoint(path)
    state_dict = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict) or "weight" not in state_dict:
        raise KeyError(
            f'"{path}" has no state_dict["weight"], so it is not an enhanced-base checkpoint; '
            "pass the file holding the fine-tuned text projection."
        )
    provenance = checkpoint.get(BUILT_BY)
    return state_dict["weight"], provenance if isinstance(provenance, dict) else None


def load_enhanced_projection(path: str, backbone: ClipBackbone, cfg: CN) -> torch.Tensor:
    """The text projection [width, D] of an enhanced base: the checkpoint's weight, transposed.

    A base built here must come from this backbone's projection (else it is refused); one built
    on another dataset, shot count or seed than this run is used, and the log says so."""
    weight, provenance = read_enhanced_base(path)
    own = backbone.text_projection
    if own is None:
        raise ValueError(
            f"TRAINER.TaskRes.ENHANCED_BASE is set, but the text tower of backbone "
            f"{backbone.name!r} has no projection matrix for it to replace. Fix: set it to "
            '"none" (the regular base), or use a backbone whose text tower ends in a projection.'
        )
    projection = weight.t()
    expected = tuple(own.shape)
    if tuple(projection.shape) != expected:
        raise ValueError(
            f'The weight in "{path}" has shape {tuple(weight.shape)}; transposed it '
            f"must match this backbone's text projection {expected}. Use the enhanced base made "
            "for this backbone."
        )
    if provenance is not None:
        _check_provenance(path, provenance, backbone, cfg)
    print(f"Enhanced base: text projection ({projection.numel()} parameters) from {path}")
    return projection


def _check_provenance(
    path: str, provenance: dict[str, Any], backbone: ClipBackbone, cfg: CN
) -> None:
    if provenance.get("projection_sha256") != projection_digest(backbone.text_projection):
        raise ValueError(
            f'The enhanced base "{path}" was tuned from the text projection of backbone '
            f"{provenance.get('backbone')!r}, not from this run's {cfg.MODEL.BACKBONE.NAME!r} "
            "(the weights differ). Fix: build the base with this backbone (TextProjectionTuning "
            "with the same MODEL.BACKBONE.NAME), or pass the base built for it."
        )
    ours = {"dataset": cfg.DATASET.NAME, "shots": int(cfg.DATASET.NUM_SHOTS), "seed": cfg.SEED}
    differing = [f"{k} {provenance.get(k)} (this run: {v})" for k, v in ours.items()
                 if provenance.get(k) != v]  # fmt: skip
    if differing:
        print(f"Note: the enhanced base was built with another {', '.join(differing)}")
