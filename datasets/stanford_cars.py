"""Stanford Cars: 196 models, official train/test from the devkit .mat files; val is split off
train. Split paths are relative to the dataset folder ("cars_train/00001.jpg")."""

import os

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .benchmark import BenchmarkDataset
from .splits import split_trainval

TRAIN_ANNOS = "devkit/cars_train_annos.mat"
TEST_ANNOS = "cars_test_annos_withlabels.mat"
META = "devkit/cars_meta.mat"


@DATASET_REGISTRY.register()
class StanfordCars(BenchmarkDataset):
    dataset_dir = "stanford_cars"
    split_file = "split_zhou_StanfordCars.json"
    # With the split file, only the folders its paths use are needed (BenchmarkDataset checks
    # them); building the split needs both image folders.
    raw_files = (TRAIN_ANNOS, TEST_ANNOS, META, "cars_train", "cars_test")

    def build_split(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        from scipy.io import loadmat  # only to build the split: SciPy takes seconds to import

        meta = self.require(os.path.join(self.dataset_dir, META), META)
        classnames = [year_first(str(entry[0])) for entry in loadmat(meta)["class_names"][0]]
        trainval = self.read_annotations("cars_train", TRAIN_ANNOS, classnames)
        test = self.read_annotations("cars_test", TEST_ANNOS, classnames)
        train, val = split_trainval(trainval)
        return train, val, test

    def read_annotations(
        self, image_folder: str, anno_file: str, classnames: list[str]
    ) -> list[Datum]:
        """Each record of the struct array "annotations" has "fname" and a 1-based "class"."""
        from scipy.io import loadmat

        path = self.require(os.path.join(self.dataset_dir, anno_file), anno_file)
        items = []
        for record in loadmat(path)["annotations"][0]:
            label = int(record["class"][0, 0]) - 1
            impath = os.path.join(self.dataset_dir, image_folder, str(record["fname"][0]))
            items.append(Datum(impath=impath, label=label, classname=classnames[label]))
        return items


def year_first(name: str) -> str:
    """ "AM General Hummer SUV 2000" -> "2000 AM General Hummer SUV", as CoOp names the classes."""
    *model, year = name.split(" ")
    return " ".join([year, *model])
