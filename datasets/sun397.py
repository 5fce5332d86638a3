"""SUN397: 397 scene classes; without the split file, the first official partition is used
(Training_01.txt split 80/20 into train/val, Testing_01.txt as test)."""

import os
import posixpath

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .benchmark import BenchmarkDataset
from .splits import split_trainval


@DATASET_REGISTRY.register()
class SUN397(BenchmarkDataset):
    dataset_dir = "sun397"
    split_file = "split_zhou_SUN397.json"
    image_folder = "SUN397"
    raw_files = ("ClassName.txt", "Training_01.txt", "Testing_01.txt")

    def build_split(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        with open(os.path.join(self.dataset_dir, "ClassName.txt")) as f:
            folders = [line.strip().removeprefix("/") for line in f if line.strip()]
        label_of = {folder: label for label, folder in enumerate(folders)}
        trainval = self.read_partition("Training_01.txt", label_of)
        test = self.read_partition("Testing_01.txt", label_of)
        train, val = split_trainval(trainval)
        return train, val, test

    def read_partition(self, list_file: str, label_of: dict[str, int]) -> list[Datum]:
        """Lines "/<letter>/<scene>[/<kind>]/<image>.jpg", e.g. "/a/abbey/sun_aaa.jpg"."""
        path = os.path.join(self.dataset_dir, list_file)
        items = []
        with open(path) as f:
            for lineno, line in enumerate(f, 1):
                relpath = line.strip().removeprefix("/")
                if not relpath:
                    continue
                folder = posixpath.dirname(relpath)
                if folder not in label_of:
                    raise ValueError(
                        f'{path}:{lineno}: folder "/{folder}" is not listed in ClassName.txt; both '
                        f"files must come from the same Partitions.zip (see {self.docs_section()})"
                    )
                impath = os.path.join(self.image_dir, *relpath.split("/"))
                label, classname = label_of[folder], scene_name(folder)
                items.append(Datum(impath=impath, label=label, classname=classname))
        return items


def scene_name(folder: str) -> str:
    """Drop the letter folder and read the rest backwards, so the qualifier comes first:
    "a/abbey" -> "abbey", "a/apartment_building/outdoor" -> "outdoor apartment_building"."""
    return " ".join(reversed(folder.split("/")[1:]))
