"""Helpers for the dataset tests: tiny JPEGs, split files and configs.

Import the plain functions with ``from tests.datasets.conftest import write_image, ...``. Images
are 8x8 so that writing a miniature copy of a dataset layout takes milliseconds.
"""

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from PIL import Image
from yacs.config import CfgNode

import datasets  # noqa: F401  (registers the datasets and the DATASET.SUBSAMPLE_CLASSES key)
from dassl.config import extend_cfg, get_cfg_default
from dassl.data.datasets import Datum

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


def make_cfg(
    root: str | os.PathLike,
    name: str,
    num_shots: int = -1,
    seed: int = 1,
    subsample: str = "all",
) -> CfgNode:
    """The config a run would build: upstream defaults plus the registered extensions."""
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = num_shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.SEED = seed
    return cfg


def per_class(items: Iterable[Datum] | None) -> Counter:
    """Label -> number of items."""
    return Counter(item.label for item in items or [])


def impaths(items: Iterable[Datum] | None) -> list[str]:
    return [item.impath for item in items or []]
