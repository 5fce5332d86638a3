"""DescribableTextures: dtd/images/<texture>/*.jpg, split per class 50/20/30 without split file."""

import json

import pytest

from datasets.dtd import DescribableTextures
from tests.datasets.conftest import (
    SplitCase,
    build,
    check_layout_error,
    impaths,
    per_class,
    split_counts,
    write_class_folders,
)

COUNTS = {"banded": 12, "blotchy": 10, "braided": 7}
SPLIT_NAME = "split_zhou_DescribableTextures.json"


def write_dtd(root, counts=COUNTS):
    ds_dir = root / "dtd"
    write_class_folders(ds_dir / "images", counts)
    (ds_dir / "labels").mkdir()  # the official splits, not read
    (ds_dir / "imdb").mkdir()
    return ds_dir


def test_split_covers_every_image_once(tmp_path):
    ds_dir = write_dtd(tmp_path)
    ds = build(DescribableTextures, tmp_path)
    everything = impaths(ds.train_x + ds.val + ds.test)
    assert len(set(everything)) == sum(COUNTS.values())

    split = json.loads((ds_dir / SPLIT_NAME).read_text())
    assert sorted(rel for rel, _, _ in split["train"] + split["val"] + split["test"]) == sorted(
        f"{name}/{name}_{i:03d}.jpg" for name, n in COUNTS.items() for i in range(n)
    )


def test_class_too_small_to_split_is_named_and_nothing_is_written(tmp_path):
    ds_dir = write_dtd(tmp_path, counts={"banded": 10, "bubbly": 2})
    with pytest.raises(ValueError, match="bubbly"):
        build(DescribableTextures, tmp_path)
    assert not (ds_dir / SPLIT_NAME).exists()


def test_empty_image_folder_writes_no_split_file_and_recovers(tmp_path):
    """An empty dtd/images/ is refused before the split file is written, so adding the images
    afterwards is enough (no stale empty split file to delete)."""
    image_dir = tmp_path / "dtd" / "images"
    image_dir.mkdir(parents=True)
    check_layout_error(DescribableTextures, tmp_path, image_dir, "describabletextures")
    assert not (tmp_path / "dtd" / SPLIT_NAME).exists()

    write_class_folders(image_dir, COUNTS)
    ds = build(DescribableTextures, tmp_path)
    assert per_class(ds.train_x) == split_counts(COUNTS.values())[0]
    assert (tmp_path / "dtd" / SPLIT_NAME).is_file()


def test_truncated_split_file_says_delete_or_redownload(tmp_path):
    ds_dir = write_dtd(tmp_path)
    (ds_dir / SPLIT_NAME).write_text('{"train": [["banded/banded_000.jpg", 0, "ban')
    with pytest.raises(ValueError, match="truncated or corrupt") as err:
        build(DescribableTextures, tmp_path)
    assert str(ds_dir / SPLIT_NAME) in str(err.value)
    assert "delete it" in str(err.value) and "re-download" in str(err.value)


CASE = SplitCase(
    DescribableTextures, write_dtd, list(COUNTS), split_counts(COUNTS.values()),
    missing=("images",), shots=2, published=dict.fromkeys(COUNTS, (3, 5, 2)),
)
