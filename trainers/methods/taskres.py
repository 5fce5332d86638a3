"""TaskRes: Task Residual Tuning of vision-language models (Yu et al., CVPR 2023).

Keep CLIP's text classifier `t` (K x D, the base) frozen and learn a residual `x` of the same
shape, initialised to zero; classify with `t' = t + alpha * x`. The image-side variant of the
paper instead adds one learned D-vector to every image feature (TRAINER.TaskRes.RESIDUAL_SIDE).
"""

import os
from pathlib import Path

import torch
from torch import nn
from yacs.config import CfgNode as CN

from clip.backbone import ClipBackbone
from dassl.config import register_cfg_extension
from dassl.engine import TRAINER_REGISTRY
from dassl.utils.tools import remembered_sha256
from trainers.clip_base import ClipTrainer
from trainers.enhanced_base import load_enhanced_projection
from trainers.method_kind import MethodKind
from trainers.templates import taskres_templates
from trainers.text import encode_class_prompts, normalize

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
    # the base is computed ("enhanced base"; TextProjectionTuning builds one), or "none".
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

    TRAINS = MethodKind.HEAD
    CFG_NODE = "TaskRes"
    CFG_CHOICES = {**ClipTrainer.CFG_CHOICES, "RESIDUAL_SIDE": RESIDUAL_SIDES}
    MODEL_NAME = "prompt_learner"
    PER_CLASS_KEYS = {"base_text_features": 0, "text_feature_residuals": 0}
    CLI_FLAGS = {
        "--enhanced-base": (
            "ENHANCED_BASE",
            'TaskRes: path to an enhanced base classifier ("none", the default: the CLIP text '
            "classifier)",
        )
    }

    @classmethod
    def content_digests(cls, cfg: CN) -> dict[str, dict[str, str]]:
        """The backbone's, and the enhanced base by its content: a base rebuilt in place makes
        the finished TaskRes* runs that used the old one another run."""
        digests = super().content_digests(cfg)
        base = cfg.TRAINER.TaskRes.ENHANCED_BASE
        if base.lower() != "none" and os.path.isfile(base):
            digests["TRAINER.TaskRes.ENHANCED_BASE"] = {"file": remembered_sha256(base)}
        return digests

    @classmethod
    def missing_inputs(cls, cfg: CN, workdir: Path) -> str:
        """What a run cannot start without (the grid's BLOCKED state): an enhanced base that
        is not there yet (relative paths are taken from ``workdir``, where train.py runs)."""
        base = cfg.TRAINER.TaskRes.ENHANCED_BASE
        if base.lower() == "none" or (workdir / base).is_file():
            return ""
        return (
            f"enhanced base {base} not found. A base built here comes from its grid's \"base\" "
            "stage (a failed or unfinished build leaves it missing: see that cell's log); "
            "released ones: download the enhanced bases released with TaskRes into strong_base/ "
            "at the repository root, or point the grid at them with --var strong_base_dir=DIR."
        )

    def build_head(self, backbone: ClipBackbone, classnames: list[str]) -> nn.Module:
        tcfg = self.cfg.TRAINER.TaskRes
        projection = None
        if tcfg.ENHANCED_BASE.lower() != "none":
            print(">> Use enhanced base!")
            projection = load_enhanced_projection(tcfg.ENHANCED_BASE, backbone, self.cfg)
        else:
            print(">> Use regular base!")
        base = taskres_base(backbone, classnames, self.cfg.DATASET.NAME, projection)
        print(f">> Residual scale (alpha): {tcfg.RESIDUAL_SCALE}, side: {tcfg.RESIDUAL_SIDE}")
        return TaskResHead(base, tcfg.RESIDUAL_SCALE, self.logit_scale, tcfg.RESIDUAL_SIDE)
