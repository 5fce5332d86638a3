"""Data side of the engine: datasets, transforms, samplers and loaders (upstream Dassl names)."""

from .data_manager import DataManager, DatasetWrapper, build_data_loader

__all__ = ["DataManager", "DatasetWrapper", "build_data_loader"]
