"""SUN397: 397 scene classes; without the split file, the first official partition is used
(Training_01.txt split 80/20 into train/val, Testing_01.txt as test)."""

import os
import posixpath

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .benchmark import BenchmarkDataset
from .splits import parse_list_file, split_trainval


@DATASET_REGISTRY.register()
class SUN397(BenchmarkDataset):
    dataset_dir = "sun397"
    split_file = "split_zhou_SUN397.json"
    image_folder = "SUN397"
    raw_files = ("ClassName.txt", "Training_01.txt", "Testing_01.txt")

    def build_split(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        class_list = os.path.join(self.dataset_dir, "ClassName.txt")
        folders = parse_list_file(class_list, lambda text: text.removeprefix("/"))
        label_of = {folder: label for label, folder in enumerate(folders)}
        trainval = self.read_partition("Training_01.txt", label_of)
        test = self.read_partition("Testing_01.txt", label_of)
        train, val = split_trainval(trainval)
        return train, val, test

    def read_partition(self, list_file: str, label_of: dict[str, int]) -> list[Datum]:
        """Lines "/<letter>/<scene>[/<kind>]/<image>.jpg", e.g. "/a/abbey/sun_aaa.jpg"."""

        def item(text: str) -> Datum | None:
            relpath = text.removeprefix("/")
            if not relpath:
                return None
            folder = posixpath.dirname(relpath)
            if folder not in label_of:
                raise ValueError(
                    f'folder "/{folder}" is not listed in ClassName.txt; both files must come '
                    f"from the same Partitions.zip (see {self.docs_section()})"
                )
            impath = os.path.join(self.image_dir, *relpath.split("/"))
            return Datum(impath=impath, label=label_of[folder], classname=scene_name(folder))

        return parse_list_file(os.path.join(self.dataset_dir, list_file), item)


def scene_name(folder: str) -> str:
    """Drop the letter folder and read the rest backwards, so the qualifier comes first:
    "a/abbey" -> "abbey", "a/apartment_building/outdoor" -> "outdoor apartment_building"."""
    return " ".join(reversed(folder.split("/")[1:]))
