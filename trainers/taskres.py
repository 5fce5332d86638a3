"""TaskRes: Task Residual Tuning of vision-language models (Yu et al., CVPR 2023).

Keep CLIP's text classifier `t` (K x D, the base) frozen and learn a residual `x` of the same
shape, initialised to zero; classify with `t' = t + alpha * x`. The image-side variant of the
paper instead adds one learned D-vector to every image feature (TRAINER.TaskRes.RESIDUAL_SIDE).
"""

import os.path as osp
from pathlib import Path

import torch
from torch import nn
from yacs.config import CfgNode as CN

from clip.backbone import ClipBackbone
from dassl.config import register_cfg_extension
from dassl.engine import TRAINER_REGISTRY
from dassl.utils import load_checkpoint

from .clip_base import ClipTrainer
from .templates import taskres_templates
from .text import encode_class_prompts, normalize

RESIDUAL_SIDES = ("text", "image")


@register_cfg_extension
def _taskres_keys(cfg: CN) -> None:
    cfg.TRAINER.TaskRes = CN()
    # N_CTX, CSC, CTX_INIT and CLASS_TOKEN_POSITION are unused by TaskRes; they exist because the
    # upstream configs and scripts set them.
    cfg.TRAINER.TaskRes.N_CTX = 16
    cfg.TRAINER.TaskRes.CSC = False
    cfg.TRAINER.TaskRes.CTX_INIT = ""
    cfg.TRAINER.TaskRes.PREC = "fp16"  # fp16, fp32 or amp
    cfg.TRAINER.TaskRes.CLASS_TOKEN_POSITION = "end"
    cfg.TRAINER.TaskRes.RESIDUAL_SCALE = 1.0  # alpha
    # Path of a checkpoint whose state_dict["weight"].t() replaces CLIP's text projection before
    # the base is computed ("enhanced base"), or "none".
    cfg.TRAINER.TaskRes.ENHANCED_BASE = "none"
    # "text": residual on the K x D classifier (the paper's TaskRes); "image": one 1 x D residual
    # added to every image feature (the paper's image-side variant).
    cfg.TRAINER.TaskRes.RESIDUAL_SIDE = "text"


class TaskResHead(nn.Module):
    """Logits from a frozen base classifier plus a scaled learned residual.

    State-dict keys are upstream's: `base_text_features` [K, D] and `text_feature_residuals`
    ([K, D] on the text side, [1, D] on the image side).
    """

    def __init__(
        self,
        base_text_features: torch.Tensor,
        alpha: float,
        logit_scale: float,
        side: str = "text",
    ) -> None:
        super().__init__()
        self.alpha = alpha
        self.logit_scale = logit_scale
        self.side = side
        self.register_buffer("base_text_features", base_text_features.float())
        # One residual per class (text) or one shared by every image; `side` is one of
        # RESIDUAL_SIDES (the trainer checks TRAINER.TaskRes.RESIDUAL_SIDE before any work).
        shape = {"text": base_text_features.shape, "image": (1, base_text_features.shape[1])}
        self.text_feature_residuals = nn.Parameter(torch.zeros(shape[side]))

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        text_features = self.base_text_features
        if self.side == "text":
            text_features = text_features + self.alpha * self.text_feature_residuals  # t + a * x
        else:
            image_features = image_features + self.alpha * self.text_feature_residuals
        return self.logit_scale * normalize(image_features) @ normalize(text_features).t()


def load_enhanced_projection(path: str, backbone: ClipBackbone) -> torch.Tensor:
    """The text projection [width, D] of an enhanced base: the checkpoint's weight, transposed."""
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'TRAINER.TaskRes.ENHANCED_BASE (--enhanced-base) is "{path}", which is not a file. '
            "Fix: give the path of an enhanced-base checkpoint (a torch.save'd dict with "
            'state_dict["weight"]), or "none" for the regular base.'
        )
    checkpoint = load_checkpoint(path)
    state_dict = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict) or "weight" not in state_dict:
        raise KeyError(
            f'"{path}" has no state_dict["weight"], so it is not an enhanced-base checkpoint; '
            "pass the file holding the fine-tuned text projection."
        )
    own = backbone.text_projection
    if own is None:
        raise ValueError(
            f"TRAINER.TaskRes.ENHANCED_BASE is set, but the text tower of backbone "
            f"{backbone.name!r} has no projection matrix for it to replace. Fix: set it to "
            '"none" (the regular base), or use a backbone whose text tower ends in a projection.'
        )
    projection = state_dict["weight"].t()
    expected = tuple(own.shape)
    if tuple(projection.shape) != expected:
        raise ValueError(
            f'The weight in "{path}" has shape {tuple(state_dict["weight"].shape)}; transposed it '
            f"must match this backbone's text projection {expected}. Use the enhanced base made "
            "for this backbone."
        )
    print(f"Enhanced base: text projection ({projection.numel()} parameters) from {path}")
    return projection


def taskres_base(
    backbone: ClipBackbone,
    classnames: list[str],
    dataset_name: str,
    text_projection: torch.Tensor | None = None,
) -> torch.Tensor:
    """Base classifier [K, D]: the plain (unnormalised) mean over the templates, as upstream."""
    templates = taskres_templates(dataset_name)
    embeddings = encode_class_prompts(backbone, classnames, templates, text_projection)
    return embeddings.mean(dim=1)  # [K, T, D] -> [K, D]


@TRAINER_REGISTRY.register()
class TaskRes(ClipTrainer):
    """Task Residual Tuning (https://arxiv.org/abs/2211.10277)."""

    CFG_NODE = "TaskRes"
    CFG_CHOICES = {**ClipTrainer.CFG_CHOICES, "RESIDUAL_SIDE": RESIDUAL_SIDES}
    MODEL_NAME = "prompt_learner"
    PER_CLASS_KEYS = ("base_text_features", "text_feature_residuals")
    CLI_FLAGS = {
        "--enhanced-base": (
            "ENHANCED_BASE",
            'TaskRes: path to an enhanced base classifier ("none", the default: the CLIP text '
            "classifier)",
        )
    }

    @classmethod
    def missing_inputs(cls, cfg: CN, workdir: Path) -> str:
        """What a run cannot start without (the grid's BLOCKED state): an enhanced base that
        is not there yet (relative paths are taken from ``workdir``, where train.py runs)."""
        base = cfg.TRAINER.TaskRes.ENHANCED_BASE
        if base.lower() == "none" or (workdir / base).is_file():
            return ""
        return (
            f"enhanced base {base} not found. Download the enhanced bases released with TaskRes "
            "into strong_base/ at the repository root, or point the grid at them with "
            "--var strong_base_dir=DIR."
        )

    def build_head(self, backbone: ClipBackbone, classnames: list[str]) -> nn.Module:
        tcfg = self.cfg.TRAINER.TaskRes
        projection = None
        if tcfg.ENHANCED_BASE.lower() != "none":
            print(">> Use enhanced base!")
            projection = load_enhanced_projection(tcfg.ENHANCED_BASE, backbone)
        else:
            print(">> Use regular base!")
        base = taskres_base(backbone, classnames, self.cfg.DATASET.NAME, projection)
        print(f">> Residual scale (alpha): {tcfg.RESIDUAL_SCALE}, side: {tcfg.RESIDUAL_SIDE}")
        return TaskResHead(base, tcfg.RESIDUAL_SCALE, self.logit_scale, tcfg.RESIDUAL_SIDE)
