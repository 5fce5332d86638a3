"""Image transforms, at upstream's module path ``dassl.data.transforms.transforms``."""

from .transforms import (
    AVAI_CHOICES,
    INTERPOLATION_MODES,
    build_transform,
    eval_view_identity,
    interpolation_mode,
)

__all__ = [
    "AVAI_CHOICES",
    "INTERPOLATION_MODES",
    "build_transform",
    "interpolation_mode",
    "eval_view_identity",
]
