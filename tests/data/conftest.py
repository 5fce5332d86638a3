"""Shared set-up for the data tests: a tiny image folder under tmp_path and a config for it."""

import pytest

from dassl.config import get_cfg_default
from datasets.synthetic import write_tiny_image_dataset


@pytest.fixture
def tiny_root(tmp_path):
    """3 classes x (4 train, 2 val, 3 test) 32 px PNGs: 12 / 6 / 9 items."""
    write_tiny_image_dataset(tmp_path)
    return tmp_path


@pytest.fixture
def cfg(tiny_root):
    cfg = get_cfg_default()
    cfg.DATASET.NAME = "TinyImages"
    cfg.DATASET.ROOT = str(tiny_root)
    cfg.INPUT.SIZE = (32, 32)
    cfg.INPUT.TRANSFORMS = ("random_resized_crop", "random_flip", "normalize")
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 5
    cfg.DATALOADER.TEST.BATCH_SIZE = 4
    cfg.USE_CUDA = False
    return cfg
