"""ProGrad: Prompt-aligned Gradient (Zhu et al., ICCV 2023).

CoOp whose update keeps only the part of the cross-entropy gradient that agrees with zero-shot
CLIP: per tensor, where it points against the gradient of the distillation loss to zero-shot
CLIP's predictions (cross-entropy to its softened probabilities at temperature T, times T^2),
LAMBDA times its component along that gradient is removed (the engine's
``prograd_backward_and_update``).

As upstream (BeierZhu/Prompt-align): zero-shot CLIP classifies with ProGrad's own hand-written
template of the dataset; with CTX_INIT True the context starts from that template's words, placed
in the last of N_CTX slots, the slots before them zero; LAMBDA 1.0, T 1.0. Upstream's zero-shot
CLIP always runs in fp32; here it is the run's CLIP, so the two agree exactly under PREC fp32.
"""

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode as CN

from clip.backbone import ClipBackbone
from dassl.config import register_cfg_extension
from dassl.engine import TRAINER_REGISTRY
from dassl.metrics import compute_accuracy
from trainers.methods.coop import CoOp, CoOpHead, PromptLearner, prompt_keys
from trainers.templates import custom_template
from trainers.text import encode_class_prompts, normalize, spaced

# Where ProGrad's hand-written template differs from CoOp's (trainers/templates.py).
PROGRAD_TEMPLATES = {
    "OxfordPets": "a type of pet, a photo of a {}.",
    "OxfordFlowers": "a type of flower, a photo of a {}.",
    "FGVCAircraft": "a type of aircraft, a photo of a {}.",
    "DescribableTextures": "a texture of {}.",
    "Food101": "a type of food, a photo of {}.",
}


@register_cfg_extension
def _prograd_keys(cfg: CN) -> None:
    cfg.TRAINER.PROGRAD = prompt_keys()
    # True: the context starts from the words of the dataset's template (upstream's configs);
    # False: random, as CoOp.
    cfg.TRAINER.PROGRAD.CTX_INIT = True
    cfg.TRAINER.PROGRAD.LAMBDA = 1.0  # how much of the conflicting component is removed
    cfg.TRAINER.PROGRAD.T = 1.0  # temperature of the distillation loss


def prograd_template(dataset_name: str) -> str:
    return PROGRAD_TEMPLATES.get(dataset_name) or custom_template(dataset_name)


def template_words(template: str) -> str:
    """The template without its class slot ("a photo of a {}." -> "a photo of a")."""
    return template.replace(" {}.", "").replace("_", " ")


class ProGradPromptLearner(PromptLearner):
    """CoOp's learner; initial words take the last of the n_ctx slots, the others start at 0."""

    def initial_context(
        self, backbone: ClipBackbone, n_cls: int, n_ctx: int, ctx_init: str, csc: bool
    ) -> tuple[torch.Tensor, str]:
        if not ctx_init:
            return super().initial_context(backbone, n_cls, n_ctx, ctx_init, csc)
        n_words = len(ctx_init.split(" "))
        embed = backbone.token_embedding
        with torch.no_grad():
            init = embed(backbone.tokenize([ctx_init]).to(embed.weight.device))
        ctx_vectors = torch.zeros(n_ctx, backbone.text_width, device=embed.weight.device)
        ctx_vectors[n_ctx - n_words :] = init[0, 1 : 1 + n_words].float()  # words after SOS
        return ctx_vectors, " ".join(["X"] * (n_ctx - n_words) + [ctx_init])


class ProGradHead(CoOpHead):
    """CoOp's head, plus zero-shot CLIP's classifier [K, D] (rebuilt, never saved)."""

    def __init__(
        self, prompt_learner: PromptLearner, backbone: ClipBackbone, zero_shot: torch.Tensor
    ) -> None:
        super().__init__(prompt_learner, backbone)
        self.register_buffer("zero_shot", zero_shot, persistent=False)

    def zero_shot_logits(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.logit_scale * normalize(image_features) @ self.zero_shot.t()


def prograd_losses(
    logits: torch.Tensor, zero_shot_logits: torch.Tensor, label: torch.Tensor, t: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy to the labels, and to zero-shot CLIP's probabilities at temperature ``t``
    (times t^2), of logits [N, K]."""
    ce = F.cross_entropy(logits, label)
    teacher = F.softmax(zero_shot_logits / t, dim=-1)
    distillation = (-teacher * F.log_softmax(logits / t, -1) * t * t).sum(1).mean()
    return ce, distillation


@TRAINER_REGISTRY.register()
class ProGrad(CoOp):
    """Prompt-aligned Gradient (https://arxiv.org/abs/2205.14865)."""

    CFG_NODE = "PROGRAD"

    def check_cfg(self, cfg: CN) -> None:
        super().check_cfg(cfg)
        node = self.method_cfg(cfg)
        words = template_words(prograd_template(cfg.DATASET.NAME))
        if node.CTX_INIT and len(words.split(" ")) > node.N_CTX:
            raise ValueError(
                f"TRAINER.PROGRAD.N_CTX is {node.N_CTX}, fewer than the {len(words.split(' '))} "
                f'words of the initial context "{words}". Fix: set N_CTX to at least that.'
            )

    def prompt_learner(self, backbone: ClipBackbone, classnames: list[str]) -> PromptLearner:
        c = self.method_cfg()
        words = template_words(prograd_template(self.cfg.DATASET.NAME)) if c.CTX_INIT else ""
        return ProGradPromptLearner(
            backbone, classnames, c.N_CTX, words, c.CSC, c.CLASS_TOKEN_POSITION
        )

    def build_head(self, backbone: ClipBackbone, classnames: list[str]) -> nn.Module:
        template = prograd_template(self.cfg.DATASET.NAME)
        print(f'Zero-shot prompt: "{template}"')
        zero_shot = encode_class_prompts(backbone, spaced(classnames), [template])[:, 0]
        zero_shot = normalize(zero_shot.float())  # [K, D]
        return ProGradHead(self.prompt_learner(backbone, classnames), backbone, zero_shot)

    def forward_backward(self, batch: dict) -> dict[str, float]:
        c = self.method_cfg()
        with self.training_autocast():
            features, label = self.parse_batch_train(batch)
            output = self.model(features)
            with torch.no_grad():
                zero_shot = self.head.zero_shot_logits(features.float())
            ce, distillation = prograd_losses(output, zero_shot, label, c.T)
        self.prograd_backward_and_update(ce, distillation, c.LAMBDA)
        return {
            "xe_loss": ce.item(),
            "kl_loss": distillation.item(),
            "acc": compute_accuracy(output, label)[0].item(),
        }
