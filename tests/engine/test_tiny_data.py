"""The tiny dataset: CoOp-format split, distinct classes, DATASET.NUM_SHOTS honoured."""

import json
from pathlib import Path

import numpy as np
from PIL import Image

from datasets.synthetic import TinyImages, write_tiny_image_dataset
from tests.support.tiny_run import full_cfg


def test_split_file_and_images(tmp_path: Path) -> None:
    dataset_dir = write_tiny_image_dataset(tmp_path, num_classes=4, per_class=(3, 1, 2))
    split = json.loads((dataset_dir / "split_tiny.json").read_text())
    assert [len(split[k]) for k in ("train", "val", "test")] == [12, 4, 8]
    relpath, label, classname = split["train"][0]
    assert (label, classname) == (0, "class_0")
    with Image.open(dataset_dir / "images" / relpath) as image:
        assert image.size == (32, 32) and image.mode == "RGB"
    # Classes differ in mean colour far more than images within a class do.
    means = {}
    for relpath, label, _ in split["train"]:
        with Image.open(dataset_dir / "images" / relpath) as image:
            pixels = np.asarray(image, dtype=float)
        means.setdefault(label, []).append(pixels.mean(axis=(0, 1)))
    centres = np.stack([np.mean(v, axis=0) for v in means.values()])
    spread = max(np.abs(np.stack(v) - c).max() for v, c in zip(means.values(), centres))
    gaps = [np.abs(a - b).max() for i, a in enumerate(centres) for b in centres[i + 1 :]]
    assert min(gaps) > 5 * spread


def test_dataset_honours_num_shots(tmp_path: Path) -> None:
    write_tiny_image_dataset(tmp_path, num_classes=3, per_class=(4, 2, 3))
    cfg = full_cfg({"DATASET.ROOT": str(tmp_path)})
    full = TinyImages(cfg)
    assert (len(full.train_x), len(full.val), len(full.test)) == (12, 6, 9)
    assert full.num_classes == 3 and full.classnames == ["class_0", "class_1", "class_2"]
    assert Path(full.train_x[0].impath).is_file()

    cfg.DATASET.NUM_SHOTS = 1
    few = TinyImages(cfg)
    assert sorted(item.label for item in few.train_x) == [0, 1, 2]
    assert sorted(item.label for item in few.val) == [0, 1, 2]
    assert len(few.test) == 9
