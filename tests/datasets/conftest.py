"""Helpers for the dataset tests: tiny JPEGs, split files, configs and the checks every dataset
shares (few-shot caching, generated split files, layout errors).

Import the plain functions with ``from tests.datasets.conftest import write_image, ...``. Images
are 8x8 so that writing a miniature copy of a dataset layout takes milliseconds. A dataset whose
split is built from its raw files describes itself with a ``SplitCase`` (next to its layout
writer); test_split_flow.py runs the flow they all share on each one.
"""

import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from yacs.config import CfgNode

import datasets  # noqa: F401  (registers the datasets and the DATASET.SUBSAMPLE_CLASSES key)
from dassl.data.datasets import DatasetBase, Datum
from datasets.benchmark import DatasetLayoutError
from tests.support.tiny_run import full_cfg

IMAGE_SIZE = 8


def write_image(path: str | os.PathLike, shade: int = 0) -> Path:
    """Write a tiny RGB JPEG (creating parent folders) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (shade % 256, 64, 128)).save(path, "JPEG")
    return path


def write_class_folders(image_dir: str | os.PathLike, counts: dict[str, int]) -> dict[str, list]:
    """``image_dir/<class>/<class>_<i>.jpg`` for each class; returns class -> image names."""
    names = {}
    for c, n in counts.items():
        names[c] = [f"{c}_{i:03d}.jpg" for i in range(n)]
        for i, name in enumerate(names[c]):
            write_image(Path(image_dir, c, name), shade=i)
    return names


def write_split_file(
    path: str | os.PathLike, train: Sequence, val: Sequence, test: Sequence
) -> Path:
    """A CoOp split file from ``[relpath, label, classname]`` entries."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"train": list(train), "val": list(val), "test": list(test)}))
    return path


def split_relpath(folder: str, key: str, i: int) -> str:
    """Where ``write_split_dataset`` puts image ``i`` of a class folder's ``key`` part."""
    return f"{folder}/{key}_{i}.jpg"


def write_split_dataset(
    image_dir: str | os.PathLike,
    split_path: str | os.PathLike,
    sizes: dict[str, tuple[int, int, int]],
    names: Sequence[str] | None = None,
    relpath: Callable[[str, str, int], str] = split_relpath,
) -> dict[str, list]:
    """Images plus a CoOp split file listing them, for datasets read from their split file.

    ``sizes`` maps each class folder (in label order) to its (train, val, test) image counts;
    ``names`` gives the class names stored in the file (default: the folder names) and
    ``relpath(folder, split, i)`` the image path under ``image_dir``. Returns the split as written.
    """
    split = {"train": [], "val": [], "test": []}
    for label, (folder, counts) in enumerate(sizes.items()):
        name = folder if names is None else names[label]
        for key, n in zip(split, counts):
            for i in range(n):
                rel = relpath(folder, key, i)
                write_image(Path(image_dir, rel), shade=i)
                split[key].append([rel, label, name])
    write_split_file(split_path, split["train"], split["val"], split["test"])
    return split


def make_cfg(
    root: str | os.PathLike,
    name: str,
    num_shots: int = -1,
    seed: int = 1,
    subsample: str = "all",
) -> CfgNode:
    """The config a run would build (``full_cfg``) for dataset ``name`` under ``root``."""
    keys = {"DATASET.NAME": name, "DATASET.NUM_SHOTS": num_shots, "SEED": seed}
    return full_cfg({**keys, "DATASET.ROOT": str(root), "DATASET.SUBSAMPLE_CLASSES": subsample})


def per_class(items: Iterable[Datum] | None) -> Counter:
    """Label -> number of items."""
    return Counter(item.label for item in items or [])


def impaths(items: Iterable[Datum] | None) -> list[str]:
    return [item.impath for item in items or []]


def split_counts(
    counts: Iterable[int], p_trn: float = 0.5, p_val: float = 0.2
) -> tuple[dict[int, int], dict[int, int], dict[int, int]]:
    """Label -> expected train, val and test sizes of a per-class split of ``counts`` images."""
    counts = list(counts)
    train = {y: round(n * p_trn) for y, n in enumerate(counts)}
    val = {y: round(n * p_val) for y, n in enumerate(counts)}
    test = {y: n - train[y] - val[y] for y, n in enumerate(counts)}
    return train, val, test


def trainval_counts(
    counts: Iterable[int], p_val: float = 0.2
) -> tuple[dict[int, int], dict[int, int]]:
    """Label -> expected train and val sizes when p_val of an official train list becomes val."""
    counts = list(counts)
    val = {y: round(n * p_val) for y, n in enumerate(counts)}
    return {y: n - val[y] for y, n in enumerate(counts)}, val


def per_split(ds: DatasetBase) -> tuple[Counter, Counter, Counter]:
    """Label -> number of items in train_x, val and test."""
    return per_class(ds.train_x), per_class(ds.val), per_class(ds.test)


def build(cls: type[DatasetBase], root: str | os.PathLike, **cfg_args) -> DatasetBase:
    """``cls`` built from ``root`` under its own registered name (= its class name)."""
    return cls(make_cfg(root, cls.__name__, **cfg_args))


def check_fewshot_cache(
    cls: type[DatasetBase],
    ds_dir: Path,
    num_shots: int,
    seed: int,
    train: dict[int, int],
    val: dict[int, int],
) -> tuple[DatasetBase, DatasetBase]:
    """Few-shot build of the dataset in ``ds_dir`` (its folder under the root): expected per-class
    train and val counts, the cache file, and a second build that reads that cache instead of
    sampling again. Returns both builds."""
    first = build(cls, ds_dir.parent, num_shots=num_shots, seed=seed)
    assert per_class(first.train_x) == train
    assert per_class(first.val) == val
    assert (ds_dir / "split_fewshot" / f"shot_{num_shots}-seed_{seed}.pkl").is_file()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cls, "generate_fewshot_dataset", lambda *a, **k: pytest.fail("cache not read"))
        again = build(cls, ds_dir.parent, num_shots=num_shots, seed=seed)
    assert impaths(again.train_x) == impaths(first.train_x)
    assert impaths(again.val) == impaths(first.val)
    return first, again


def check_split_file_is_deterministic(
    cls: type[DatasetBase],
    write: Callable[[Path], Path],
    root: Path,
    split_name: str,
    seeds: tuple[int, int],
) -> Path:
    """Two copies of a raw layout (``write(root)`` returns the dataset folder), built under
    different seeds, get identical generated split files. Returns the first copy's folder (whose
    root is ``root / "a"``)."""
    a, b = write(root / "a"), write(root / "b")
    build(cls, root / "a", seed=seeds[0])
    build(cls, root / "b", seed=seeds[1])
    assert (a / split_name).read_text() == (b / split_name).read_text()
    return a


def build_from_split_file(cls: type[DatasetBase], root: str | os.PathLike) -> DatasetBase:
    """Build with ``build_split`` made to fail, proving the split file on disk was read."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cls, "build_split", lambda self: pytest.fail("split not read"))
        return build(cls, root)


def check_layout_error(
    cls: type[DatasetBase], root: str | os.PathLike, path: str | os.PathLike, section: str
) -> DatasetLayoutError:
    """Building ``cls`` fails with a layout error naming ``path`` and its DATASETS.md section."""
    with pytest.raises(DatasetLayoutError) as err:
        build(cls, root)
    assert str(path) in str(err.value)
    assert f"DATASETS.md#{section}" in str(err.value)
    return err.value


def remove(path: Path) -> None:
    """Delete a file, or a folder with everything in it."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


@dataclass(frozen=True)
class SplitCase:
    """What the shared split-file tests (test_split_flow.py) need to know about one dataset.

    ``write(root)`` writes the raw layout (no split file) and returns the dataset folder;
    ``classnames`` and ``sizes`` (label -> train, val and test count) are what building from it
    must give. ``missing`` lists pieces of that layout (relative to the dataset folder) whose
    absence is a layout error. Few-shot sampling is tried with K = ``shots`` on the raw layout, or
    on ``published``: a split file written by ``write_split_dataset`` from these class folders
    and (train, val, test) counts, for a dataset whose raw layout has too few images for that K.
    """

    cls: type[DatasetBase]
    write: Callable[[Path], Path]
    classnames: list[str]
    sizes: tuple[dict[int, int], dict[int, int], dict[int, int]]
    missing: tuple[str, ...]
    shots: int
    published: dict[str, tuple[int, int, int]] | None = None
    relpath: Callable[[str, str, int], str] = split_relpath
