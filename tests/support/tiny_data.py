"""A tiny, learnable image dataset for engine and method tests.

``write_tiny_image_dataset`` writes ``<root>/tiny_images/images/<class>/<n>.png`` (each class a
distinct colour and stripe pattern, plus noise, so a small model learns it in a few epochs) and
a CoOp-format split file ``split_tiny.json``. ``TinyImages`` is a registered ``DatasetBase``
reading it; it honours ``DATASET.NUM_SHOTS`` (val gets min(K, 4) shots, as CoOp's datasets).
"""

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image
from yacs.config import CfgNode

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum

DATASET_DIR = "tiny_images"
IMAGE_DIR = "images"
SPLIT_FILE = "split_tiny.json"
SPLITS = ("train", "val", "test")


def _class_image(label: int, num_classes: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) uint8: a per-class hue with stripes every (label + 2) pixels, plus noise."""
    hue = label / max(num_classes, 1)
    base = 255 * np.array([abs(np.sin(np.pi * (hue + k / 3))) for k in range(3)])
    stripes = (np.arange(size) // (label + 2)) % 2  # (size,)
    pattern = np.where(stripes[None, :, None] == 1, 1.0, 0.6)  # (1, size, 1)
    img = base[None, None, :] * pattern + rng.normal(0, 12, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_tiny_image_dataset(
    root: str | os.PathLike,
    num_classes: int = 3,
    per_class: tuple[int, int, int] = (4, 2, 3),
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """Write the images and the split file under ``root``/tiny_images; returns that folder."""
    dataset_dir = Path(root) / DATASET_DIR
    rng = np.random.default_rng(seed)
    split: dict[str, list[list]] = {name: [] for name in SPLITS}
    for label in range(num_classes):
        classname = f"class_{label}"
        (dataset_dir / IMAGE_DIR / classname).mkdir(parents=True, exist_ok=True)
        index = 0
        for name, count in zip(SPLITS, per_class):
            for _ in range(count):
                relpath = f"{classname}/{index:03d}.png"
                img = _class_image(label, num_classes, image_size, rng)
                Image.fromarray(img).save(dataset_dir / IMAGE_DIR / relpath)
                split[name].append([relpath, label, classname])
                index += 1
    with open(dataset_dir / SPLIT_FILE, "w") as f:
        json.dump(split, f)
    return dataset_dir


@DATASET_REGISTRY.register(force=True)
class TinyImages(DatasetBase):
    dataset_dir = DATASET_DIR

    def __init__(self, cfg: CfgNode) -> None:
        root = os.path.join(os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT)), DATASET_DIR)
        split_path = os.path.join(root, SPLIT_FILE)
        if not os.path.isfile(split_path):
            raise FileNotFoundError(
                f'No tiny dataset at "{root}": call write_tiny_image_dataset(DATASET.ROOT) first'
            )
        with open(split_path) as f:
            split = json.load(f)
        image_dir = os.path.join(root, IMAGE_DIR)
        train, val, test = (
            [Datum(os.path.join(image_dir, p), int(y), 0, c) for p, y, c in split[name]]
            for name in SPLITS
        )
        num_shots = cfg.DATASET.NUM_SHOTS
        if num_shots >= 1:
            train = self.generate_fewshot_dataset(train, num_shots=num_shots)
            val = self.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
        super().__init__(train_x=train, val=val, test=test)
