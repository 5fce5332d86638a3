"""Caltech101: 100 object classes (the background and the duplicate "Faces_easy" are dropped),
split per class 50/20/30 when the split file is absent."""

from dassl.data.datasets import DATASET_REGISTRY

from .benchmark import ClassFolderDataset


@DATASET_REGISTRY.register()
class Caltech101(ClassFolderDataset):
    dataset_dir = "caltech-101"
    split_file = "split_zhou_Caltech101.json"
    image_folder = "101_ObjectCategories"
    ignored_folders = ("BACKGROUND_Google", "Faces_easy")
    new_cnames = {
        "airplanes": "airplane",
        "Faces": "face",
        "Leopards": "leopard",
        "Motorbikes": "motorbike",
    }
