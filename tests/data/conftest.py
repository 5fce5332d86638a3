"""Shared set-up for the data tests: a tiny image folder under tmp_path and a config for it."""

import pytest

from datasets.synthetic import write_tiny_image_dataset
from tests.support.tiny_run import tiny_run_cfg


@pytest.fixture
def tiny_root(tmp_path):
    """3 classes x (4 train, 2 val, 3 test) 32 px PNGs: 12 / 6 / 9 items."""
    write_tiny_image_dataset(tmp_path)
    return tmp_path


@pytest.fixture
def cfg(tiny_root):
    """A tiny CPU run's config (32 px TinyImages, in-process loading) with small batches."""
    return tiny_run_cfg(
        {
            "DATASET.ROOT": str(tiny_root),
            "INPUT.TRANSFORMS": ("random_resized_crop", "random_flip", "normalize"),
            "DATALOADER.TRAIN_X.BATCH_SIZE": 5,
            "DATALOADER.TEST.BATCH_SIZE": 4,
        }
    )
