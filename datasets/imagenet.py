"""ImageNet (train folders for training, the official val set as val and test, as upstream), and
what its four shift sets share: classnames.txt and folders named by WordNet id.

Listing 1.28M training images is slow, so the parsed lists are cached in ``preprocessed.pkl``
(upstream's file and format: ``{"train": [Datum...], "test": [Datum...]}``).
"""

import os
from collections import OrderedDict

from dassl.data.datasets import DATASET_REGISTRY, Datum
from dassl.utils import listdir_nohidden, save_pickle

from .benchmark import BenchmarkDataset, LayoutItem
from .splits import parse_list_file

CLASSNAMES_FILE = "classnames.txt"


def read_classnames(path: str) -> "OrderedDict[str, str]":
    """WordNet id -> CLIP class name, from lines like "n01440764 tench", in file order."""

    def entry(text: str) -> tuple[str, str]:
        fields = text.split(" ", 1)
        if len(fields) != 2:
            raise ValueError(f'expected "<wnid> <class name>", got {text!r}')
        return fields[0], fields[1].strip()

    return OrderedDict(parse_list_file(path, entry))


def read_wnid_folders(
    image_dir: str, classnames: "OrderedDict[str, str]", source: str
) -> list[Datum]:
    """Images of ``image_dir/<wnid>/``, labelled by the sorted order of the wnid folders."""
    folders = [
        f
        for f in listdir_nohidden(image_dir, sort=True)
        if os.path.isdir(os.path.join(image_dir, f))
    ]
    items = []
    for label, folder in enumerate(folders):
        if folder not in classnames:
            raise ValueError(
                f'Class folder "{os.path.join(image_dir, folder)}" is not a WordNet id listed in '
                f"{source}: remove the folder or use ImageNet's classnames.txt"
            )
        class_dir = os.path.join(image_dir, folder)
        items += [
            Datum(impath=os.path.join(class_dir, im), label=label, classname=classnames[folder])
            for im in listdir_nohidden(class_dir, sort=True)
        ]
    return items


@DATASET_REGISTRY.register()
class ImageNet(BenchmarkDataset):
    dataset_dir = "imagenet"
    image_folder = "images"
    fewshot_val = False  # upstream evaluates and selects on the full val set
    unique_classnames = False  # CLIP's names repeat some ("missile"); labels come from wnids
    cache_file = "preprocessed.pkl"

    @classmethod
    def expected_layout(cls, root: str) -> list[LayoutItem]:
        items = super().expected_layout(root)
        dataset_dir = os.path.join(root, cls.dataset_dir)
        if not os.path.isfile(os.path.join(dataset_dir, cls.cache_file)):
            items += [
                LayoutItem(os.path.join(dataset_dir, cls.image_folder, "train"), "train images"),
                LayoutItem(os.path.join(dataset_dir, cls.image_folder, "val"), "val images"),
                LayoutItem(os.path.join(dataset_dir, CLASSNAMES_FILE), CLASSNAMES_FILE),
            ]
        return items

    def load_split(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        cache = os.path.join(self.dataset_dir, self.cache_file)
        if os.path.isfile(cache):
            data = self.load_cache(cache, ("train", "test"))
            return data["train"], data["test"], data["test"]
        classnames_path = os.path.join(self.dataset_dir, CLASSNAMES_FILE)
        classnames = read_classnames(classnames_path)
        train = read_wnid_folders(
            os.path.join(self.image_dir, "train"), classnames, classnames_path
        )
        test = read_wnid_folders(os.path.join(self.image_dir, "val"), classnames, classnames_path)
        self.require_built(train=train, test=test)
        if self.persist:
            save_pickle({"train": train, "test": test}, cache)
        return train, test, test


class ImageNetVariant(BenchmarkDataset):
    """A test-only ImageNet shift set with ImageNet's class names (its own copy of classnames.txt,
    as DATASETS.md says, or else the one in the ImageNet folder)."""

    test_only = True
    unique_classnames = False  # ImageNet's names, as above

    @classmethod
    def classnames_path(cls, root: str) -> str:
        own = os.path.join(root, cls.dataset_dir, CLASSNAMES_FILE)
        fallback = os.path.join(root, ImageNet.dataset_dir, CLASSNAMES_FILE)
        return fallback if not os.path.isfile(own) and os.path.isfile(fallback) else own

    @classmethod
    def expected_layout(cls, root: str) -> list[LayoutItem]:
        what = f"{CLASSNAMES_FILE} (a copy of imagenet/{CLASSNAMES_FILE})"
        return [*super().expected_layout(root), LayoutItem(cls.classnames_path(root), what)]

    def load_split(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        source = self.classnames_path(self.root)
        test = read_wnid_folders(self.image_dir, read_classnames(source), source)
        return [], [], test
