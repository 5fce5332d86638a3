"""DescribableTextures: dtd/images/<texture>/*.jpg, split per class 50/20/30 without split file."""

import json

import pytest

from datasets.benchmark import DatasetLayoutError
from datasets.dtd import DescribableTextures
from tests.datasets.conftest import (
    build_from_split_file,
    check_fewshot_cache,
    check_layout_error,
    check_split_file_is_deterministic,
    impaths,
    make_cfg,
    per_class,
    per_split,
    split_counts,
    write_class_folders,
    write_split_dataset,
)

COUNTS = {"banded": 12, "blotchy": 10, "braided": 7}
SPLIT_NAME = "split_zhou_DescribableTextures.json"


def write_dtd(root, counts=COUNTS):
    ds_dir = root / "dtd"
    write_class_folders(ds_dir / "images", counts)
    (ds_dir / "labels").mkdir()  # the official splits, not read
    (ds_dir / "imdb").mkdir()
    return ds_dir


def test_builds_split_from_class_folders_and_writes_it(tmp_path):
    ds_dir = write_dtd(tmp_path)
    ds = DescribableTextures(make_cfg(tmp_path, "DescribableTextures"))
    assert ds.classnames == list(COUNTS)
    assert ds.num_classes == len(COUNTS)
    assert per_split(ds) == split_counts(COUNTS.values())
    everything = impaths(ds.train_x + ds.val + ds.test)
    assert len(set(everything)) == sum(COUNTS.values())

    split = json.loads((ds_dir / SPLIT_NAME).read_text())
    assert sorted(rel for rel, _, _ in split["train"] + split["val"] + split["test"]) == sorted(
        f"{name}/{name}_{i:03d}.jpg" for name, n in COUNTS.items() for i in range(n)
    )


def test_generated_split_is_deterministic_and_read_back(tmp_path):
    check_split_file_is_deterministic(DescribableTextures, write_dtd, tmp_path, SPLIT_NAME, (1, 9))
    ds = build_from_split_file(DescribableTextures, tmp_path / "a")
    assert per_class(ds.val) == split_counts(COUNTS.values())[1]


def test_split_file_fewshot_and_cache(tmp_path):
    ds_dir = tmp_path / "dtd"
    write_split_dataset(ds_dir / "images", ds_dir / SPLIT_NAME, dict.fromkeys(COUNTS, (3, 5, 2)))
    # K = 2 train and min(2, 4) val per class
    check_fewshot_cache(DescribableTextures, ds_dir, 2, 4, {0: 2, 1: 2, 2: 2}, {0: 2, 1: 2, 2: 2})


def test_missing_image_folder_names_path_and_section(tmp_path):
    (tmp_path / "dtd" / "labels").mkdir(parents=True)
    check_layout_error(
        DescribableTextures, tmp_path, tmp_path / "dtd" / "images", "describabletextures"
    )


def test_class_too_small_to_split_is_named_and_nothing_is_written(tmp_path):
    ds_dir = write_dtd(tmp_path, counts={"banded": 10, "bubbly": 2})
    with pytest.raises(ValueError, match="bubbly"):
        DescribableTextures(make_cfg(tmp_path, "DescribableTextures"))
    assert not (ds_dir / SPLIT_NAME).exists()


def test_empty_image_folder_writes_no_split_file_and_recovers(tmp_path):
    """An empty dtd/images/ is refused before the split file is written, so adding the images
    afterwards is enough (no stale empty split file to delete)."""
    image_dir = tmp_path / "dtd" / "images"
    image_dir.mkdir(parents=True)
    with pytest.raises(DatasetLayoutError) as err:
        DescribableTextures(make_cfg(tmp_path, "DescribableTextures"))
    assert str(image_dir) in str(err.value)
    assert "DATASETS.md#describabletextures" in str(err.value)
    assert not (tmp_path / "dtd" / SPLIT_NAME).exists()

    write_class_folders(image_dir, COUNTS)
    ds = DescribableTextures(make_cfg(tmp_path, "DescribableTextures"))
    assert per_class(ds.train_x) == split_counts(COUNTS.values())[0]
    assert (tmp_path / "dtd" / SPLIT_NAME).is_file()


def test_truncated_split_file_says_delete_or_redownload(tmp_path):
    ds_dir = write_dtd(tmp_path)
    (ds_dir / SPLIT_NAME).write_text('{"train": [["banded/banded_000.jpg", 0, "ban')
    with pytest.raises(ValueError, match="truncated or corrupt") as err:
        DescribableTextures(make_cfg(tmp_path, "DescribableTextures"))
    assert str(ds_dir / SPLIT_NAME) in str(err.value)
    assert "delete it" in str(err.value) and "re-download" in str(err.value)
