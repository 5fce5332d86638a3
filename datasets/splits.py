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
from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter
from typing import TypeVar

from dassl.data.datasets import DatasetBase, Datum
from dassl.utils import listdir_nohidden, read_json, write_json

SPLIT_SEED = 1  # seed of generated splits; fixed so that every run writes the same file
SUBSAMPLE_CHOICES = ("all", "base", "new")
_SPLIT_KEYS = ("train", "val", "test")
DEFAULT_SPLIT_FIX = "re-download it, or delete it if the dataset can rebuild it from the raw files"
SHOWN_PROBLEMS = 8  # problems listed in one split error; the rest are counted
T = TypeVar("T")


class SplitError(ValueError):
    """A split whose labels, class names or rows are inconsistent; the message lists them."""


def parse_list_file(path: str, parse: Callable[[str], T | None]) -> list[T]:
    """``parse`` of each non-blank line (stripped) of a dataset's text list, skipping the lines it
    maps to None. A ValueError it raises comes back prefixed with ``path:lineno``, so every
    list file's errors point at the line to fix."""
    values = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            text = line.strip()
            if not text:
                continue
            try:
                value = parse(text)
            except ValueError as err:
                raise ValueError(f"{path}:{lineno}: {err}") from err
            if value is not None:
                values.append(value)
    return values


def read_split(
    filepath: str, path_prefix: str, fix: str = DEFAULT_SPLIT_FIX, check: bool = True
) -> tuple[list[Datum], list[Datum], list[Datum]]:
    """Read a split file; image paths in it are relative to ``path_prefix``.

    A truncated, corrupt or wrongly shaped file, or a row whose path leaves ``path_prefix``
    (absolute, or with ``..``), raises a ValueError naming the file, the row and ``fix`` (what to
    do about it, which depends on whether the dataset can rebuild the file). With ``check`` the
    rows are also checked with ``check_split`` (warnings are printed); BenchmarkDataset passes
    False because it checks every dataset's items itself, split file or not.
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
        for row, entry in enumerate(split[key]):
            if not _is_split_row(entry):
                raise ValueError(
                    f'Split file "{filepath}": entry {entry!r} of "{key}" is not '
                    f"[relpath, label, classname] (string, integer, string); {fix}"
                )
            impath, label, classname = entry
            if leaves_folder(impath):
                raise ValueError(
                    f'Split file "{filepath}": row {key}[{row}] {entry!r} has a path that leaves '
                    f"the image folder {path_prefix} (absolute, or with '..'); paths must be "
                    f"relative to that folder: fix the row, or {fix}"
                )
            items.append(
                Datum(impath=os.path.join(path_prefix, impath), label=label, classname=classname)
            )
        return items

    train, val, test = (_convert(key) for key in _SPLIT_KEYS)
    if check:
        parts = dict(zip(_SPLIT_KEYS, (train, val, test)))
        for warning in check_split(parts, f'Split file "{filepath}"', fix, path_prefix):
            print(f"Warning: {warning}")
    return train, val, test


def leaves_folder(relpath: str) -> bool:
    """Whether a split path is absolute or climbs out with ``..`` (either separator)."""
    return os.path.isabs(relpath) or ".." in relpath.replace("\\", "/").split("/")


def check_split(
    parts: Mapping[str, Sequence[Datum]],
    source: str,
    fix: str,
    image_dir: str,
    label_part: str = "train",
    unique_classnames: bool = True,
) -> list[str]:
    """Check a split's items before anything trains on them; return the warnings.

    Errors (one SplitError lists them all, up to ``SHOWN_PROBLEMS``, each naming the part and
    row, then ``fix``): the labels of ``label_part`` are not 0..K-1 with every label present;
    another part holds a label that ``label_part`` lacks (today's symptoms: a test label scored as
    a wrong prediction, a train label crashing mid-run); a label carries two class names, or,
    with ``unique_classnames``, a class name two labels; an image repeated within a part.
    Warning: images in both train and test, which inflates the test accuracy. Rows are shown as
    ``part[index] [path relative to image_dir, label, classname]``, the split file's own row.
    A valid split costs a few set operations per item (about a second for ImageNet's 1.3M); the
    rows are walked one by one only to name the problems once there are some.
    """
    prefix = os.path.join(image_dir, "")

    def row(part: str, index: int) -> str:
        item = parts[part][index]
        path = item.impath.removeprefix(prefix)
        return f'{part}[{index}] ["{path}", {item.label}, "{item.classname}"]'

    problems: list[str] = []
    labels = set(map(attrgetter("label"), parts[label_part]))
    num_classes = len(labels)
    gaps = sorted(set(range(num_classes)) - labels)
    if gaps:
        extra = sorted(labels - set(range(num_classes)))
        first = next(i for i, item in enumerate(parts[label_part]) if item.label == extra[0])
        problems.append(
            f'the "{label_part}" labels must run 0..{num_classes - 1} without gaps (one label per '
            f"class, {num_classes} classes), but label(s) {_listed(gaps)} have no {label_part} "
            f"images and label(s) {_listed(extra)} are beyond, e.g. {row(label_part, first)}"
        )
    paths = {part: set(map(attrgetter("impath"), items)) for part, items in parts.items()}
    pairs = set().union(*(map(attrgetter("label", "classname"), items) for items in parts.values()))
    named_labels = {label for label, _ in pairs}
    if (
        any(len(paths[part]) < len(items) for part, items in parts.items())
        or not named_labels <= labels
        or len(named_labels) < len(pairs)
        or (unique_classnames and len({name for _, name in pairs}) < len(pairs))
    ):
        problems += _row_problems(parts, labels, label_part, unique_classnames, row)
    if problems:
        shown = "\n".join(f"  - {p}" for p in problems[:SHOWN_PROBLEMS])
        more = len(problems) - SHOWN_PROBLEMS
        more_line = f"\n  ... and {more} more" if more > 0 else ""
        raise SplitError(
            f"{source} is inconsistent ({len(problems)} problem(s)):\n{shown}{more_line}\n"
            f"Fix: {fix}"
        )

    warnings = []
    if "train" in parts and "test" in parts and not paths["train"].isdisjoint(paths["test"]):
        test_rows = {item.impath: index for index, item in enumerate(parts["test"])}
        both = [
            (i, test_rows[item.impath])
            for i, item in enumerate(parts["train"])
            if item.impath in test_rows
        ]
        warnings.append(
            f"{source}: {len(both)} image(s) are in both train and test, e.g. "
            f"{row('train', both[0][0])} and {row('test', both[0][1])}; the test accuracy "
            "then counts images the model trained on: remove them from one part"
        )
    return warnings


def _row_problems(
    parts: Mapping[str, Sequence[Datum]],
    labels: set[int],
    label_part: str,
    unique_classnames: bool,
    row: Callable[[str, int], str],
) -> list[str]:
    """The rows behind ``check_split``'s errors, each against the first row it disagrees with."""
    problems = []
    name_of: dict[int, tuple[str, int]] = {}
    label_of: dict[str, tuple[int, str, int]] = {}
    for part, items in parts.items():
        seen: dict[str, int] = {}
        for index, item in enumerate(items):
            first_name = name_of.setdefault(item.label, (part, index))
            first_label = label_of.setdefault(item.classname, (item.label, part, index))
            if item.label not in labels:  # its class name then disagrees too: said once
                problems.append(
                    f"{row(part, index)}: label {item.label} has no {label_part} images, so it "
                    f"is not a class of this split (0..{len(labels) - 1})"
                )
            elif parts[first_name[0]][first_name[1]].classname != item.classname:
                problems.append(
                    f"{row(part, index)}: label {item.label} has another class name in "
                    f"{row(*first_name)}; one label, one class name"
                )
            elif unique_classnames and first_label[0] != item.label:
                problems.append(
                    f'{row(part, index)}: class name "{item.classname}" has another label in '
                    f"{row(*first_label[1:])}; one class name, one label"
                )
            repeated = seen.setdefault(item.impath, index)
            if repeated != index:
                problems.append(f"{row(part, index)} repeats {row(part, repeated)}")
    return problems


def _listed(values: Sequence[int], shown: int = 5) -> str:
    """ "3, 7, 9" or "3, 7, 9, 11, 12, ... (8 in all)"."""
    head = ", ".join(str(v) for v in values[:shown])
    return head if len(values) <= shown else f"{head}, ... ({len(values)} in all)"


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
