"""Caltech101: 100 object classes (the background and the duplicate "Faces_easy" are dropped),
split per class 50/20/30 when the split file is absent."""

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .benchmark import BenchmarkDataset
from .splits import read_and_split_data

IGNORED = ("BACKGROUND_Google", "Faces_easy")
NEW_CNAMES = {
    "airplanes": "airplane",
    "Faces": "face",
    "Leopards": "leopard",
    "Motorbikes": "motorbike",
}


@DATASET_REGISTRY.register()
class Caltech101(BenchmarkDataset):
    dataset_dir = "caltech-101"
    split_file = "split_zhou_Caltech101.json"
    image_folder = "101_ObjectCategories"

    def build_split(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        return read_and_split_data(self.image_dir, ignored=IGNORED, new_cnames=NEW_CNAMES)
