"""Text projection tuning: build TaskRes's enhanced base on the few-shot data.

TaskRes* (Yu et al., CVPR 2023) starts its residual from an *enhanced base*: the class text
embeddings computed through a text projection that was first tuned on the task. This method does
that tuning: CLIP's text projection W [width, D] becomes learnable, everything else stays frozen,
and the classifier is TaskRes's base computed through it (the same templates and class names, the
plain mean over templates), trained with cross-entropy on the run's few-shot train set. The tower's
output before the projection does not change, so it is encoded once; the mean over templates
commutes with the (linear) projection, so the classifier is `mean_t(pooled) @ W (+ bias)`.

The learned projection is an `nn.Linear(width, D, bias=False)` registered as `text_projection`, so
its checkpoints hold `state_dict["weight"]` [D, width], upstream's enhanced-base layout. Before the
final test the run writes the model it tests to `OUTPUT_DIR/enhanced_base.pth.tar` (with its
provenance, trainers/enhanced_base.py), which `--enhanced-base` takes.
"""

import os

import torch
from torch import nn
from yacs.config import CfgNode as CN

from clip.backbone import ClipBackbone
from dassl.config import register_cfg_extension
from dassl.engine import TRAINER_REGISTRY
from dassl.engine.trainer import model_file_path
from dassl.utils import load_checkpoint
from trainers.clip_base import ClipTrainer
from trainers.enhanced_base import FILE_NAME, built_by, save_enhanced_base
from trainers.method_kind import MethodKind
from trainers.templates import taskres_templates
from trainers.text import normalize


@register_cfg_extension
def _text_projection_tuning_keys(cfg: CN) -> None:
    cfg.TRAINER.TextProjectionTuning = CN()
    cfg.TRAINER.TextProjectionTuning.PREC = "fp16"  # fp16, fp32 or amp (the projection is fp32)


class ProjectionHead(nn.Module):
    """Cosine logits [N, K] of image features [N, D] against `projection(pooled text)`."""

    def __init__(
        self,
        pooled_text: torch.Tensor,
        text_projection: torch.Tensor,
        bias: torch.Tensor | None,
        logit_scale: float,
    ) -> None:
        super().__init__()
        width, dim = text_projection.shape
        # [K, width]: per class, the mean over templates of the text tower's output before its
        # projection; rebuilt from the class names, never saved.
        self.register_buffer("pooled_text", pooled_text.float(), persistent=False)
        self.projection = nn.Linear(width, dim, bias=False)  # weight [D, width] = W.t()
        with torch.no_grad():
            self.projection.weight.copy_(text_projection.t().float())
        # A biased projection (some OpenCLIP towers) keeps its bias fixed: upstream's file format
        # holds the weight only.
        self.register_buffer(
            "bias", None if bias is None else bias.detach().float(), persistent=False
        )
        self.logit_scale = logit_scale

    def class_features(self) -> torch.Tensor:
        """The classifier [K, D]: TaskRes's base through the current projection."""
        text = self.projection(self.pooled_text)
        return text if self.bias is None else text + self.bias

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.logit_scale * normalize(image_features) @ normalize(self.class_features()).t()


@torch.no_grad()
def pooled_class_prompts(
    backbone: ClipBackbone, classnames: list[str], templates: list[str], batch_size: int = 256
) -> torch.Tensor:
    """The text tower's output before its projection [K, width], averaged over the templates."""
    texts = [template.format(name) for name in classnames for template in templates]
    chunks = []
    for start in range(0, len(texts), batch_size):
        tokens = backbone.tokenize(texts[start : start + batch_size]).to(backbone.device)
        chunks.append(backbone.encode_text_pooled(tokens).float())
    pooled = torch.cat(chunks)  # [K*T, width]
    return pooled.view(len(classnames), len(templates), -1).mean(dim=1)  # -> [K, width]


@TRAINER_REGISTRY.register()
class TextProjectionTuning(ClipTrainer):
    """Tunes CLIP's text projection on the few-shot data: TaskRes's enhanced base."""

    TRAINS = MethodKind.TEXT_TOWER  # the projection matrix that ends the text tower
    CFG_NODE = "TextProjectionTuning"
    MODEL_NAME = "text_projection"

    def check_backbone(self, backbone: ClipBackbone) -> None:
        if backbone.text_projection is None:
            raise ValueError(
                f"TextProjectionTuning tunes the text tower's projection matrix, and the text "
                f"tower of backbone {backbone.name!r} ends in none (its projection, if any, is "
                "not a single matrix). Fix: use a backbone whose text tower ends in a projection "
                "matrix (OpenAI's CLIP models, OpenCLIP's built-in text transformers), or TaskRes "
                "with the regular base (--enhanced-base none)."
            )
        # Token ids -> pooled features must work here too (OpenCLIP's towers in CLIP's layout).
        backbone.encode_text_pooled(backbone.tokenize([""]).to(backbone.device))

    def build_head(self, backbone: ClipBackbone, classnames: list[str]) -> nn.Module:
        templates = taskres_templates(self.cfg.DATASET.NAME)
        print(f"Prompt templates (n={len(templates)}): {templates}")
        pooled = pooled_class_prompts(backbone, classnames, templates)
        projection = backbone.text_projection
        print(f"Tuning the text projection {tuple(projection.shape)} ({projection.numel()} "
              "parameters)")  # fmt: skip
        return ProjectionHead(pooled, projection, backbone.text_projection_bias, self.logit_scale)

    def learnable(self) -> nn.Module:
        return self.head.projection

    def after_train(self) -> None:
        """Write the enhanced base before the final test: a run counts as finished once its test
        result is logged, so every finished run holds its base."""
        self.export_enhanced_base()
        super().after_train()

    def export_enhanced_base(self) -> None:
        """`OUTPUT_DIR/enhanced_base.pth.tar`: the projection the final test evaluates (the
        best-val checkpoint under TEST.FINAL_MODEL best_val, else the last epoch's)."""
        cfg = self.cfg
        best = cfg.TEST.FINAL_MODEL == "best_val" and not cfg.TEST.NO_TEST
        path = model_file_path(self.output_dir, self.MODEL_NAME, None if best else self.max_epoch)
        checkpoint = load_checkpoint(path)
        weight = checkpoint["state_dict"]["weight"]
        provenance = built_by(cfg, self.backbone, checkpoint["epoch"])
        save_enhanced_base(os.path.join(self.output_dir, FILE_NAME), weight, provenance)
