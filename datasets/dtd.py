"""Describable Textures (DTD): 47 texture classes; CoOp ignores the official labels/ splits and
splits each class folder 50/20/30 when the split file is absent."""

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .benchmark import BenchmarkDataset
from .splits import read_and_split_data


@DATASET_REGISTRY.register()
class DescribableTextures(BenchmarkDataset):
    dataset_dir = "dtd"
    split_file = "split_zhou_DescribableTextures.json"
    image_folder = "images"

    def build_split(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        return read_and_split_data(self.image_dir)
