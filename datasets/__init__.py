"""The benchmark datasets. Importing the package registers every dataset in DATASET_REGISTRY and
declares ``DATASET.SUBSAMPLE_CLASSES`` (base-to-new experiments) in the config."""

from yacs.config import CfgNode

from dassl.config import register_cfg_extension

from . import (
    caltech101,
    dtd,
    eurosat,
    fgvc_aircraft,
    food101,
    imagenet,
    imagenet_a,
    imagenet_r,
    imagenet_sketch,
    imagenetv2,
    oxford_flowers,
    oxford_pets,
    stanford_cars,
    sun397,
    ucf101,
)


@register_cfg_extension
def add_dataset_config(cfg: CfgNode) -> None:
    """all: every class; base: the first half of the labels; new: the second half, relabelled."""
    if "SUBSAMPLE_CLASSES" not in cfg.DATASET:
        cfg.DATASET.SUBSAMPLE_CLASSES = "all"
