"""Split files and split building, in the format and with the semantics of CoOp's datasets.

A split file (``split_zhou_<Name>.json``) is ``{"train": [[relpath, label, classname], ...],
"val": ..., "test": ...}`` with paths relative to the dataset's image folder. Researchers share
these files so that every run sees the same images; the builders here only run when a split file
is absent, and use their own seeded RNG so that a generated split does not depend on ``SEED`` or on
the order in which the file system lists images.
"""

import math
import os
import random
from collections.abc import Mapping, Sequence

from dassl.data.datasets import DatasetBase, Datum
from dassl.utils import listdir_nohidden, read_json, write_json

SPLIT_SEED = 1  # seed of generated splits; fixed so that every run writes the same file
SUBSAMPLE_CHOICES = ("all", "base", "new")
_SPLIT_KEYS = ("train", "val", "test")
DEFAULT_SPLIT_FIX = "re-download it, or delete it if the dataset can rebuild it from the raw files"


def read_split(
    filepath: str, path_prefix: str, fix: str = DEFAULT_SPLIT_FIX
) -> tuple[list[Datum], list[Datum], list[Datum]]:
    """Read a split file; image paths in it are relative to ``path_prefix``.

    A truncated, corrupt or wrongly shaped file raises a ValueError naming the file and ``fix``
    (what to do about it, which depends on whether the dataset can rebuild the file).
    """
    print(f"Reading split from {filepath}")
    try:
        split = read_json(filepath)
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError: truncated or corrupt
        raise ValueError(
            f'Split file "{filepath}" is not valid JSON (truncated or corrupt: {err}); {fix}'
        ) from err
    if not isinstance(split, Mapping) or any(key not in split for key in _SPLIT_KEYS):
        raise ValueError(
            f'Split file "{filepath}" must be a JSON object with the keys {list(_SPLIT_KEYS)}; '
            f"{fix}"
        )

    def _convert(key: str) -> list[Datum]:
        if not isinstance(split[key], list):
            raise ValueError(f'Split file "{filepath}": "{key}" is not a list; {fix}')
        items = []
        for entry in split[key]:
            if not _is_split_row(entry):
                raise ValueError(
                    f'Split file "{filepath}": entry {entry!r} of "{key}" is not '
                    f"[relpath, label, classname] (string, integer, string); {fix}"
                )
            impath, label, classname = entry
            items.append(
                Datum(impath=os.path.join(path_prefix, impath), label=label, classname=classname)
            )
        return items

    train, val, test = (_convert(key) for key in _SPLIT_KEYS)
    return train, val, test


def _is_split_row(entry: object) -> bool:
    """Whether ``entry`` is a ``[relpath, label, classname]`` row as CoOp writes it."""
    if not isinstance(entry, list) or len(entry) != 3:
        return False
    relpath, label, classname = entry
    return (
        isinstance(relpath, str)
        and bool(relpath)
        and isinstance(label, int)
        and not isinstance(label, bool)
        and label >= 0
        and isinstance(classname, str)
    )


def save_split(
    train: Sequence[Datum],
    val: Sequence[Datum],
    test: Sequence[Datum],
    filepath: str,
    path_prefix: str,
) -> None:
    """Write a split file (atomically), storing paths relative to ``path_prefix``."""
    prefix = os.path.join(os.path.abspath(path_prefix), "")

    def _extract(items: Sequence[Datum]) -> list[list]:
        out = []
        for item in items:
            impath = os.path.abspath(item.impath)
            if not impath.startswith(prefix):
                raise ValueError(
                    f'Image "{impath}" is not under the split\'s image folder {prefix}'
                )
            out.append([impath[len(prefix) :], item.label, item.classname])
        return out

    write_json(
        {key: _extract(items) for key, items in zip(_SPLIT_KEYS, (train, val, test))}, filepath
    )
    print(f"Saved split to {filepath}")


def split_trainval(
    trainval: Sequence[Datum], p_val: float = 0.2, seed: int = SPLIT_SEED
) -> tuple[list[Datum], list[Datum]]:
    """Split each class of ``trainval`` into train and val (``round(n * p_val)`` val items).

    Upstream asserts that every class gets a val item; here a class of two or more items gets at
    least one, and a single-item class stays in train with a warning, so tiny custom datasets work.
    """
    print(f"Splitting trainval into {1 - p_val:.0%} train and {p_val:.0%} val")
    rng = random.Random(seed)
    train, val = [], []
    for label, items in DatasetBase.split_dataset_by_label(trainval).items():
        n_val = round(len(items) * p_val)
        if n_val == 0 and len(items) >= 2:
            n_val = 1
        elif n_val == 0:
            print(f"Warning: class {label} ({items[0].classname}) has 1 item; it gets no val item")
        items = list(items)
        rng.shuffle(items)
        val.extend(items[:n_val])
        train.extend(items[n_val:])
    return train, val


class ClassTooSmallError(ValueError):
    """A class has too few items to give train, val and test at least one each."""

    def __init__(self, label: int, count: int, p_trn: float, p_val: float) -> None:
        self.label, self.count = label, count
        super().__init__(
            f"class {label} has {count} images, too few to split into {p_trn:.0%}/{p_val:.0%}/"
            f"{1 - p_trn - p_val:.0%} train/val/test with at least one image each"
        )


def split_per_class(
    items_by_label: Mapping[int, Sequence[Datum]],
    p_trn: float = 0.5,
    p_val: float = 0.2,
    seed: int = SPLIT_SEED,
) -> tuple[list[Datum], list[Datum], list[Datum]]:
    """CoOp's per-class split: in label order, shuffle each class with one seeded RNG and cut it
    into ``round(n * p_trn)`` train, ``round(n * p_val)`` val and the rest test.

    The RNG is shared across classes, so the result depends on every class's size and on the
    order of the items given; a class that cannot give each part one item raises
    ``ClassTooSmallError`` (callers add where the class comes from and the fix).
    """
    print(f"Splitting into {p_trn:.0%} train, {p_val:.0%} val, and {1 - p_trn - p_val:.0%} test")
    rng = random.Random(seed)
    train, val, test = [], [], []
    for label in sorted(items_by_label):
        items = list(items_by_label[label])
        rng.shuffle(items)
        n_train, n_val = round(len(items) * p_trn), round(len(items) * p_val)
        if min(n_train, n_val, len(items) - n_train - n_val) < 1:
            raise ClassTooSmallError(label, len(items), p_trn, p_val)
        train += items[:n_train]
        val += items[n_train : n_train + n_val]
        test += items[n_train + n_val :]
    return train, val, test


def read_and_split_data(
    image_dir: str,
    p_trn: float = 0.5,
    p_val: float = 0.2,
    ignored: Sequence[str] = (),
    new_cnames: Mapping[str, str] | None = None,
    seed: int = SPLIT_SEED,
) -> tuple[list[Datum], list[Datum], list[Datum]]:
    """Split an ``image_dir/<class>/<image>`` folder per class into train/val/test.

    Labels follow the sorted class-folder names (minus ``ignored``); ``new_cnames`` renames a
    folder's class name (e.g. Caltech101's "airplanes" -> "airplane").
    """
    categories = sorted(c for c in listdir_nohidden(image_dir) if c not in ignored)
    categories = [c for c in categories if os.path.isdir(os.path.join(image_dir, c))]
    new_cnames = new_cnames or {}
    items_by_label = {}
    for label, category in enumerate(categories):
        category_dir = os.path.join(image_dir, category)
        classname = new_cnames.get(category, category)
        items_by_label[label] = [
            Datum(impath=os.path.join(category_dir, im), label=label, classname=classname)
            for im in listdir_nohidden(category_dir, sort=True)
        ]
    try:
        return split_per_class(items_by_label, p_trn, p_val, seed)
    except ClassTooSmallError as err:
        category_dir = os.path.join(image_dir, categories[err.label])
        raise ValueError(
            f'Class folder "{category_dir}": {err}: add images, or remove the folder if it is '
            "not a class"
        ) from err


def subsample_classes(*datasets: Sequence[Datum], subsample: str = "all") -> list[list[Datum]]:
    """Keep the base (first ``ceil(n/2)`` labels) or new (the rest, relabelled from 0) classes.

    Labels are taken from the first dataset, as upstream CoOp does for base-to-new experiments.
    """
    if subsample not in SUBSAMPLE_CHOICES:
        raise ValueError(
            f'DATASET.SUBSAMPLE_CLASSES must be one of {SUBSAMPLE_CHOICES}, got "{subsample}"'
        )
    if subsample == "all":
        return [list(dataset) for dataset in datasets]

    labels = sorted({item.label for item in datasets[0]})
    m = math.ceil(len(labels) / 2)
    selected = labels[:m] if subsample == "base" else labels[m:]
    relabel = {y: y_new for y_new, y in enumerate(selected)}
    print(f"SUBSAMPLE {subsample.upper()} CLASSES!")
    return [
        [
            Datum(
                impath=item.impath,
                label=relabel[item.label],
                domain=item.domain,
                classname=item.classname,
            )
            for item in dataset
            if item.label in relabel
        ]
        for dataset in datasets
    ]
