"""The dataset registry: ``DATASET.NAME`` picks a registered DatasetBase subclass."""

from yacs.config import CfgNode

from dassl.utils.registry import Registry

from .base_dataset import DatasetBase

DATASET_REGISTRY = Registry("DATASET")


def build_dataset(cfg: CfgNode) -> DatasetBase:
    if not cfg.DATASET.NAME:
        raise ValueError(
            "DATASET.NAME is empty: pass --dataset-config-file configs/datasets/<name>.yaml "
            f"or DATASET.NAME <name>. Registered datasets: "
            f"{', '.join(DATASET_REGISTRY.registered_names())}"
        )
    if cfg.VERBOSE:
        print(f"Loading dataset: {cfg.DATASET.NAME}")
    return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)
