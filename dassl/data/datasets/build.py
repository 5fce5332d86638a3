"""The dataset registry: ``DATASET.NAME`` picks a registered DatasetBase subclass."""

from yacs.config import CfgNode

from dassl.utils.registry import Registry

from .base_dataset import DatasetBase

DATASET_REGISTRY = Registry(
    "DATASET",
    how_to_set="pass --dataset-config-file configs/datasets/<name>.yaml or DATASET.NAME <name>",
)


def build_dataset(cfg: CfgNode) -> DatasetBase:
    """Instantiate the dataset ``cfg.DATASET.NAME`` (upstream's entry point)."""
    return DATASET_REGISTRY.build(cfg.DATASET.NAME, cfg, verbose=cfg.VERBOSE)
