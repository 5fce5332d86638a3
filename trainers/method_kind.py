"""What a CLIP method trains, declared once per method as ``ClipTrainer.TRAINS``.

The shared base (trainers/clip_base.py) derives the rest from this declaration: whether image
features may come from the feature store, whether eval features may be kept across epochs,
whether images are encoded with gradients, and which training protocols make sense. A method
never re-implements any of it (docs/architecture.md, "Method kinds").
"""

from enum import Enum


class MethodKind(Enum):
    """The part of CLIP a method learns."""

    # A head over image features (TaskRes, CLIP-Adapter, linear probe, Tip-Adapter, zero-shot):
    # both towers frozen, image features come from the store.
    HEAD = "a head over image features"
    # Inputs of a frozen tower, with gradients flowing through it (CoOp's context, CoCoOp's
    # meta-net): the image tower is unchanged, so image features still come from the store.
    FROZEN_TOWER_INPUTS = "inputs of a frozen tower"
    # Parameters inside the text tower (text LoRA, text prompts deep in the tower): image
    # features are unchanged; text features must be computed in the head's forward.
    TEXT_TOWER = "parameters inside the text tower"
    # Parameters inside the image tower (visual LoRA, deep vision prompts, norm or bias tuning).
    IMAGE_TOWER = "parameters inside the image tower"
    # Parameters inside both towers (MaPLe, CLIP-LoRA on both encoders).
    BOTH_TOWERS = "parameters inside the image and the text tower"

    @property
    def image_tower_learns(self) -> bool:
        """Whether the image features change as training goes: then they are computed live,
        with gradients, re-encoded for every evaluation, and never reach the feature store."""
        return self in (MethodKind.IMAGE_TOWER, MethodKind.BOTH_TOWERS)

    @property
    def text_tower_learns(self) -> bool:
        return self in (MethodKind.TEXT_TOWER, MethodKind.BOTH_TOWERS)

    @property
    def image_features_fixed(self) -> bool:
        """Whether an image's features are a pure function of (weights, precision, view, image):
        the store may serve them and an evaluation split is encoded once per run."""
        return not self.image_tower_learns

    def with_image_tower_learning(self) -> "MethodKind":
        """This kind, with the image tower learning too (what a method that changes the image
        tower without declaring it is treated as)."""
        return MethodKind.BOTH_TOWERS if self.text_tower_learns else MethodKind.IMAGE_TOWER
