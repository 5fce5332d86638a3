"""Food101: images/<dish>/<id>.jpg, split per class 50/20/30 when the split file is absent."""

import json

from datasets.food101 import Food101
from tests.datasets.conftest import (
    build_from_split_file,
    check_fewshot_cache,
    check_layout_error,
    check_split_file_is_deterministic,
    make_cfg,
    per_class,
    per_split,
    split_counts,
    write_class_folders,
    write_split_dataset,
)

COUNTS = {"apple_pie": 10, "baby_back_ribs": 7, "beignets": 12}  # folder names sort in this order
SPLIT_NAME = "split_zhou_Food101.json"


def write_food(root):
    ds_dir = root / "food-101"
    write_class_folders(ds_dir / "images", COUNTS)
    (ds_dir / "meta").mkdir()  # shipped with the archive, not read
    return ds_dir


def test_builds_split_from_class_folders_and_writes_it(tmp_path):
    ds_dir = write_food(tmp_path)
    ds = Food101(make_cfg(tmp_path, "Food101"))
    assert ds.classnames == list(COUNTS)
    assert per_split(ds) == split_counts(COUNTS.values())
    for item in ds.train_x + ds.val + ds.test:
        assert item.impath.startswith(str(ds_dir / "images" / item.classname) + "/")

    split = json.loads((ds_dir / SPLIT_NAME).read_text())
    assert len(split["train"]) == sum(split_counts(COUNTS.values())[0].values())
    assert all(rel.split("/")[0] == name for rel, _, name in split["val"])


def test_generated_split_is_deterministic_and_read_back(tmp_path):
    check_split_file_is_deterministic(Food101, write_food, tmp_path, SPLIT_NAME, (1, 2))
    ds = build_from_split_file(Food101, tmp_path / "a")
    assert len(ds.test) == sum(COUNTS.values()) - len(ds.train_x) - len(ds.val)


def test_split_file_fewshot_and_cache(tmp_path):
    ds_dir = tmp_path / "food-101"
    write_split_dataset(ds_dir / "images", ds_dir / SPLIT_NAME, dict.fromkeys(COUNTS, (6, 5, 2)))
    # K = 5 train and min(5, 4) val per class
    ds, _ = check_fewshot_cache(Food101, ds_dir, 5, 1, {0: 5, 1: 5, 2: 5}, {0: 4, 1: 4, 2: 4})
    assert per_class(ds.test) == {0: 2, 1: 2, 2: 2}


def test_missing_image_folder_names_path_and_section(tmp_path):
    (tmp_path / "food-101" / "meta").mkdir(parents=True)
    check_layout_error(Food101, tmp_path, tmp_path / "food-101" / "images", "food101")
