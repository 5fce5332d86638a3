"""Oxford 102 Flowers: labels from imagelabels.mat, names from cat_to_name.json; like CoOp, each
class is split 50/20/30 when the split file is absent (the dataset's own setid.mat is not used)."""

import os
import random
from collections import defaultdict

import numpy as np
from scipy.io import loadmat
from scipy.io.matlab import MatReadError

from dassl.data.datasets import DATASET_REGISTRY, Datum
from dassl.utils import read_json

from .benchmark import BenchmarkDataset
from .splits import SPLIT_SEED

P_TRAIN, P_VAL = 0.5, 0.2


@DATASET_REGISTRY.register()
class OxfordFlowers(BenchmarkDataset):
    dataset_dir = "oxford_flowers"
    split_file = "split_zhou_OxfordFlowers.json"
    image_folder = "jpg"
    raw_files = ("imagelabels.mat", "cat_to_name.json")

    def build_split(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        cat_to_name = self.read_names()
        by_label: dict[int, list[str]] = defaultdict(list)
        for i, label in enumerate(self.read_labels(), 1):
            by_label[label].append(os.path.join(self.image_dir, f"image_{i:05d}.jpg"))

        p_test = 1 - P_TRAIN - P_VAL
        print(f"Splitting into {P_TRAIN:.0%} train, {P_VAL:.0%} val, and {p_test:.0%} test")
        rng = random.Random(SPLIT_SEED)
        train, val, test = [], [], []
        for label in sorted(by_label):
            if str(label) not in cat_to_name:
                raise ValueError(
                    f'cat_to_name.json has no name for label "{label}" used in imagelabels.mat; '
                    f"re-download both files (see {self.docs_section()})"
                )
            images = by_label[label]
            rng.shuffle(images)
            n_train, n_val = round(len(images) * P_TRAIN), round(len(images) * P_VAL)
            if min(n_train, n_val, len(images) - n_train - n_val) < 1:
                raise ValueError(
                    f"Class {label} of imagelabels.mat has {len(images)} images, too few to split "
                    "into train/val/test with at least one image each; use the published "
                    f"split_zhou_OxfordFlowers.json (see {self.docs_section()})"
                )
            classname = cat_to_name[str(label)]
            parts = (images[:n_train], images[n_train : n_train + n_val], images[n_train + n_val :])
            for out, part in zip((train, val, test), parts):
                # the .mat labels count from 1
                out.extend(Datum(impath=im, label=label - 1, classname=classname) for im in part)
        return train, val, test

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
        path = os.path.join(self.dataset_dir, "imagelabels.mat")
        try:
            labels = loadmat(path)["labels"]
        except (ValueError, KeyError, MatReadError) as err:
            raise ValueError(
                f'Cannot read the "labels" array of "{path}" ({err!r}); re-download it (see '
                f"{self.docs_section()})"
            ) from err
        return [int(label) for label in np.asarray(labels).ravel()]
