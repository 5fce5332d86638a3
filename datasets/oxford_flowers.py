"""Oxford 102 Flowers: labels from imagelabels.mat, names from cat_to_name.json; like CoOp, each
class is split 50/20/30 when the split file is absent (the dataset's own setid.mat is not used)."""

import os

import numpy as np

from dassl.data.datasets import DATASET_REGISTRY, Datum
from dassl.utils import read_json

from .benchmark import BenchmarkDataset
from .splits import ClassTooSmallError, split_per_class

P_TRAIN, P_VAL = 0.5, 0.2


@DATASET_REGISTRY.register()
class OxfordFlowers(BenchmarkDataset):
    dataset_dir = "oxford_flowers"
    split_file = "split_zhou_OxfordFlowers.json"
    image_folder = "jpg"
    raw_files = ("imagelabels.mat", "cat_to_name.json")

    def build_split(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        cat_to_name = self.read_names()
        items = []
        for i, label in enumerate(self.read_labels(), 1):
            if str(label) not in cat_to_name:
                raise ValueError(
                    f'cat_to_name.json has no name for label "{label}" used in imagelabels.mat; '
                    f"re-download both files (see {self.docs_section()})"
                )
            impath = os.path.join(self.image_dir, f"image_{i:05d}.jpg")
            # the .mat labels count from 1
            items.append(Datum(impath, label - 1, classname=cat_to_name[str(label)]))
        try:
            return split_per_class(self.split_dataset_by_label(items), P_TRAIN, P_VAL)
        except ClassTooSmallError as err:
            raise ValueError(
                f"imagelabels.mat: {err} (label {err.label + 1} in the file); use the published "
                f"{self.split_file} (see {self.docs_section()})"
            ) from err

    def read_names(self) -> dict[str, str]:
        """Label ("1".."102") -> flower name."""
        path = os.path.join(self.dataset_dir, "cat_to_name.json")
        try:
            return read_json(path)
        except ValueError as err:
            raise ValueError(
                f'"{path}" is not valid JSON ({err}); re-download it (see {self.docs_section()})'
            ) from err

    def read_labels(self) -> list[int]:
        """Label (1..102) of image_<i>.jpg at position i - 1."""
        from scipy.io import loadmat  # only to build the split: SciPy takes seconds to import
        from scipy.io.matlab import MatReadError

        path = os.path.join(self.dataset_dir, "imagelabels.mat")
        try:
            labels = loadmat(path)["labels"]
        except (ValueError, KeyError, MatReadError) as err:
            raise ValueError(
                f'Cannot read the "labels" array of "{path}" ({err!r}); re-download it (see '
                f"{self.docs_section()})"
            ) from err
        return [int(label) for label in np.asarray(labels).ravel()]
