"""The benchmark datasets. Importing the package imports every module in it, which registers each
dataset in DATASET_REGISTRY (a new dataset is a new file here), and declares
``DATASET.SUBSAMPLE_CLASSES`` (base-to-new experiments) in the config."""

from yacs.config import CfgNode

from dassl.config import register_cfg_extension
from dassl.utils.registry import import_submodules

import_submodules(__name__, __path__)


@register_cfg_extension
def add_dataset_config(cfg: CfgNode) -> None:
    """all: every class; base: the first half of the labels; new: the second half, relabelled."""
    if "SUBSAMPLE_CLASSES" not in cfg.DATASET:
        cfg.DATASET.SUBSAMPLE_CLASSES = "all"
    # The few-shot val split's images per class: "min4" min(K, 4), CoOp's (the default); "shots"
    # K, as LP++ validates (a draw of its own, cached beside the default one).
    if "VAL_SHOTS" not in cfg.DATASET:
        cfg.DATASET.VAL_SHOTS = "min4"
