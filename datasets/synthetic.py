"""Synthetic image datasets that a tiny model learns in a few epochs, written to disk in a real
dataset's layout, so the tests, the demo and the benchmarks run the real readers with nothing
downloaded.

One writer, ``write_synthetic_dataset``, draws each class's images and writes them with a
CoOp-format split file (``{"train": [[relpath, label, classname], ...], "val": ..., "test": ...}``)
in a ``Layout``. Two families of classes and two layouts cover the uses:

- ``stripe_classes(n)``: a per-class hue with stripes, in the ``TINY_IMAGES`` layout that the
  ``TinyImages`` dataset below reads (the engine and method tests, the cost benchmarks);
- ``SHAPE_CLASSES``: five coloured shapes, in ``CALTECH101``'s layout so that the real
  ``Caltech101`` reader runs (the demo, the script and sweep tests, the protocol benchmark).

``TinyImages`` is registered when this module is imported (the benchmark datasets are not
affected); it honours ``DATASET.NUM_SHOTS`` (val gets min(K, 4) shots, as CoOp's datasets).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, ImageDraw
from yacs.config import CfgNode

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase
from dassl.utils.tools import file_sha256

from .splits import read_split

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Layout:
    """Where a dataset's files go: ``<root>/<dataset_dir>/<image_folder>/<class folder>/<image>``
    and ``<root>/<dataset_dir>/<split_file>``; ``image_name`` is formatted with the image's index
    within its class (its suffix picks the file format)."""

    dataset_dir: str
    image_folder: str
    split_file: str
    image_name: str


TINY_IMAGES = Layout("tiny_images", "images", "split_tiny.json", "{:03d}.png")
CALTECH101 = Layout(
    "caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json", "image_{:04d}.jpg"
)


class SyntheticClass(Protocol):
    """One class: its folder, the class name written in the split file, and how its images look."""

    folder: str
    classname: str

    def draw(self, size: int, rng: np.random.Generator) -> Image.Image: ...


@dataclass(frozen=True)
class StripeClass:
    """A per-class hue with vertical stripes every (label + 2) pixels, plus noise."""

    label: int
    num_classes: int

    @property
    def folder(self) -> str:
        return f"class_{self.label}"

    @property
    def classname(self) -> str:
        return self.folder

    def draw(self, size: int, rng: np.random.Generator) -> Image.Image:
        hue = self.label / max(self.num_classes, 1)
        base = 255 * np.array([abs(np.sin(np.pi * (hue + k / 3))) for k in range(3)])
        stripes = (np.arange(size) // (self.label + 2)) % 2  # (size,)
        pattern = np.where(stripes[None, :, None] == 1, 1.0, 0.6)  # (1, size, 1)
        img = base[None, None, :] * pattern + rng.normal(0, 12, (size, size, 3))
        return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def stripe_classes(num_classes: int) -> tuple[StripeClass, ...]:
    return tuple(StripeClass(label, num_classes) for label in range(num_classes))


@dataclass(frozen=True)
class ShapeClass:
    """A shape in a colour (both jittered per image) on a noisy grey background."""

    folder: str
    colour: tuple[int, int, int]
    shape: str

    @property
    def classname(self) -> str:
        return self.folder.replace("_", " ")

    def draw(self, size: int, rng: np.random.Generator) -> Image.Image:
        background = rng.integers(90, 160) + rng.normal(0, 18, (size, size, 3))
        img = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        colour = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in self.colour)
        half = size * rng.uniform(0.25, 0.38)
        cx, cy = size / 2 + rng.uniform(-3, 3, size=2)
        box = (cx - half, cy - half, cx + half, cy + half)
        if self.shape == "circle":
            draw.ellipse(box, fill=colour)
        elif self.shape == "square":
            draw.rectangle(box, fill=colour)
        elif self.shape == "triangle":
            corners = [(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)]
            draw.polygon(corners, fill=colour)
        elif self.shape == "cross":
            bar = half / 3
            draw.rectangle((cx - half, cy - bar, cx + half, cy + bar), fill=colour)
            draw.rectangle((cx - bar, cy - half, cx + bar, cy + half), fill=colour)
        elif self.shape == "ring":
            draw.ellipse(box, outline=colour, width=max(2, int(half / 2.5)))
        else:
            raise ValueError(
                f"unknown shape {self.shape!r} for class {self.folder!r}; "
                "use circle, square, triangle, cross or ring"
            )
        return img


SHAPE_CLASSES = (
    ShapeClass("red_circle", (220, 40, 40), "circle"),
    ShapeClass("green_square", (40, 190, 60), "square"),
    ShapeClass("blue_triangle", (40, 70, 230), "triangle"),
    ShapeClass("yellow_cross", (235, 215, 40), "cross"),
    ShapeClass("purple_ring", (150, 50, 190), "ring"),
)


def write_synthetic_dataset(
    root: str | os.PathLike,
    classes: Sequence[SyntheticClass],
    layout: Layout,
    per_class: tuple[int, int, int],
    image_size: int,
    seed: int = 0,
) -> Path:
    """Write ``per_class`` (train, val, test) images of each class and the split file listing
    them under ``root`` in ``layout``; returns the dataset folder. The same arguments write the
    same files."""
    dataset_dir = Path(root) / layout.dataset_dir
    image_dir = dataset_dir / layout.image_folder
    rng = np.random.default_rng(seed)
    split: dict[str, list[list]] = {name: [] for name in SPLITS}
    for label, spec in enumerate(classes):
        (image_dir / spec.folder).mkdir(parents=True, exist_ok=True)
        index = 0
        for name, count in zip(SPLITS, per_class):
            for _ in range(count):
                relpath = f"{spec.folder}/{layout.image_name.format(index)}"
                spec.draw(image_size, rng).save(image_dir / relpath, quality=95)
                split[name].append([relpath, label, spec.classname])
                index += 1
    (dataset_dir / layout.split_file).write_text(json.dumps(split))
    return dataset_dir


def write_tiny_image_dataset(
    root: str | os.PathLike,
    num_classes: int = 3,
    per_class: tuple[int, int, int] = (4, 2, 3),
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """The ``TinyImages`` dataset (stripe classes, PNG) under ``root``; returns its folder."""
    classes = stripe_classes(num_classes)
    return write_synthetic_dataset(root, classes, TINY_IMAGES, per_class, image_size, seed)


@DATASET_REGISTRY.register()
class TinyImages(DatasetBase):
    """Reads what ``write_tiny_image_dataset`` wrote under DATASET.ROOT."""

    dataset_dir = TINY_IMAGES.dataset_dir

    @classmethod
    def content_digests(cls, cfg: CfgNode) -> dict[str, dict[str, str]]:
        """DATASET.ROOT by its split file's content (its few-shot subset is drawn from the split
        with SEED, both compared), as ``BenchmarkDataset.content_digests``."""
        root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))
        path = os.path.join(root, cls.dataset_dir, TINY_IMAGES.split_file)
        return {"DATASET.ROOT": {"split": file_sha256(path)}} if os.path.isfile(path) else {}

    def __init__(self, cfg: CfgNode) -> None:
        root = os.path.join(os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT)), self.dataset_dir)
        split_path = os.path.join(root, TINY_IMAGES.split_file)
        if not os.path.isfile(split_path):
            raise FileNotFoundError(
                f'No tiny dataset at "{root}": call '
                "datasets.synthetic.write_tiny_image_dataset(DATASET.ROOT) first"
            )
        image_dir = os.path.join(root, TINY_IMAGES.image_folder)
        train, val, test = read_split(split_path, image_dir)
        num_shots = cfg.DATASET.NUM_SHOTS
        if num_shots >= 1:
            train = self.generate_fewshot_dataset(train, num_shots=num_shots)
            val = self.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
        super().__init__(train_x=train, val=val, test=test)
