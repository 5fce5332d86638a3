"""KgCoOp: Knowledge-guided Context Optimization (Yao et al., CVPR 2023).

CoOp whose loss adds W times the distance between the learned prompts' class text features and
those of the hand-written prompt: 1 - the mean over classes of their cosine similarity. The
learned context then stays near CLIP's general knowledge, which helps on unseen classes.

As upstream (htyao89/KgCoOp), the hand-written prompts are the dataset's template filled with
each class name, encoded once by CLIP in fp16 whatever PREC (upstream encodes them with a second
CLIP that it never converts from its default fp16), and the context starts from "a photo of a".
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode as CN

from clip.backbone import ClipBackbone
from dassl.config import register_cfg_extension
from dassl.engine import TRAINER_REGISTRY
from trainers.methods.coop import CoOp, CoOpHead, PromptLearner, prompt_keys
from trainers.templates import custom_template
from trainers.text import encode_class_prompts, normalize, spaced

# Where KgCoOp's hand-written template differs from CoOp's (trainers/templates.py).
KGCOOP_TEMPLATES = {"DescribableTextures": "a photo of a {}, a type of texture."}


@register_cfg_extension
def _kgcoop_keys(cfg: CN) -> None:
    cfg.TRAINER.KGCOOP = prompt_keys()
    cfg.TRAINER.KGCOOP.CTX_INIT = "a photo of a"  # upstream's CTX_INIT True (sets N_CTX to 4)
    cfg.TRAINER.KGCOOP.W = 8.0  # weight of the distance (every published run; train.py's is 1.0)


def hand_written_features(
    backbone: ClipBackbone, classnames: list[str], template: str
) -> torch.Tensor:
    """Normalised fp16 text features [K, D] of ``template`` filled with each class name, by the
    backbone's weights in fp16 (a converted copy when the run's CLIP is not fp16)."""
    tower = backbone
    if backbone.dtype != torch.float16:
        tower = copy.deepcopy(backbone)
        tower.half_()
    # The full context, as upstream's encode_text: in fp16 the padding changes the rounding.
    features = encode_class_prompts(tower, spaced(classnames), [template], full_context=True)
    features = features[:, 0]  # [K, 1, D] -> [K, D]
    # Normalised twice, in fp16, as upstream (once when built, again in its forward).
    return normalize(normalize(features))


class KgCoOpHead(CoOpHead):
    """CoOp's head holding the hand-written prompts' features [K, D] (rebuilt, never saved)."""

    def __init__(
        self, prompt_learner: PromptLearner, backbone: ClipBackbone, hand_features: torch.Tensor
    ) -> None:
        super().__init__(prompt_learner, backbone)
        self.register_buffer("hand_features", hand_features, persistent=False)

    def knowledge_distance(self, text_features: torch.Tensor) -> torch.Tensor:
        """1 - mean cosine similarity between the learned [K, D] and hand-written features."""
        cosine = F.cosine_similarity(text_features, self.hand_features, dim=1, eps=1e-7)
        return 1.0 - torch.mean(cosine)


@TRAINER_REGISTRY.register()
class KgCoOp(CoOp):
    """Knowledge-guided Context Optimization (https://arxiv.org/abs/2303.13283)."""

    CFG_NODE = "KGCOOP"

    def build_head(self, backbone: ClipBackbone, classnames: list[str]) -> nn.Module:
        name = self.cfg.DATASET.NAME
        template = KGCOOP_TEMPLATES.get(name) or custom_template(name)
        print(f'Hand-written prompt: "{template}"')
        hand = hand_written_features(backbone, classnames, template)
        return KgCoOpHead(self.prompt_learner(backbone, classnames), backbone, hand)

    def training_loss(
        self, features: torch.Tensor, label: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        text_features = self.head.text_features()  # [K, D], the one text pass of the step
        output = self.head.logits(features.float(), text_features)
        distance = self.head.knowledge_distance(text_features)
        return F.cross_entropy(output, label) + self.method_cfg().W * distance, output
