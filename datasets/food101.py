"""Food-101: 101 dishes, 1,000 photos each; CoOp ignores the official meta/ lists and splits each
class folder 50/20/30 when the split file is absent."""

from dassl.data.datasets import DATASET_REGISTRY

from .benchmark import ClassFolderDataset


@DATASET_REGISTRY.register()
class Food101(ClassFolderDataset):
    dataset_dir = "food-101"
    split_file = "split_zhou_Food101.json"
    image_folder = "images"
