"""Describable Textures (DTD): 47 texture classes; CoOp ignores the official labels/ splits and
splits each class folder 50/20/30 when the split file is absent."""

from dassl.data.datasets import DATASET_REGISTRY

from .benchmark import ClassFolderDataset


@DATASET_REGISTRY.register()
class DescribableTextures(ClassFolderDataset):
    dataset_dir = "dtd"
    split_file = "split_zhou_DescribableTextures.json"
    image_folder = "images"
