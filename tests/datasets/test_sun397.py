"""SUN397: SUN397/<letter>/<scene>[/<kind>]/*.jpg, ClassName.txt, Training_01/Testing_01.txt."""

import json

import pytest

from datasets.benchmark import DatasetLayoutError
from datasets.sun397 import SUN397
from tests.datasets.conftest import (
    SplitCase,
    build,
    impaths,
    trainval_counts,
    write_image,
    write_split_file,
)

# ClassName.txt entries (label order), the class names CoOp derives, partition sizes per class
FOLDERS = ["/a/abbey", "/a/apartment_building/outdoor", "/b/bakery/shop"]
NAMES = ["abbey", "outdoor apartment_building", "shop bakery"]
TRAINING, TESTING, UNLISTED = [10, 7, 12], [3, 2, 4], 2
SPLIT_NAME = "split_zhou_SUN397.json"


def write_sun(root):
    ds_dir = root / "sun397"
    ds_dir.mkdir(parents=True)
    (ds_dir / "ClassName.txt").write_text("\n".join(FOLDERS) + "\n")
    lists = {"Training_01.txt": [], "Testing_01.txt": []}
    for folder, n_train, n_test in zip(FOLDERS, TRAINING, TESTING):
        for i in range(n_train + n_test + UNLISTED):
            entry = f"{folder}/sun_{i:04d}.jpg"
            write_image(ds_dir / "SUN397" / entry.lstrip("/"), shade=i)
            if i < n_train:
                lists["Training_01.txt"].append(entry)
            elif i < n_train + n_test:
                lists["Testing_01.txt"].append(entry)
    for name, entries in lists.items():
        (ds_dir / name).write_text("\n".join(entries) + "\n")
    (ds_dir / "Training_02.txt").write_text("/a/abbey/sun_0000.jpg\n")  # other partitions: unused
    return ds_dir


def test_paths_keep_the_full_folder_and_unlisted_images_are_not_used(tmp_path):
    ds_dir = write_sun(tmp_path)
    ds = build(SUN397, tmp_path)
    shop = ds_dir / "SUN397" / "b" / "bakery" / "shop"
    assert str(shop / f"sun_{TRAINING[2]:04d}.jpg") in impaths(ds.test)
    last = TRAINING[2] + TESTING[2]
    assert str(shop / f"sun_{last:04d}.jpg") not in impaths(ds.train_x + ds.val + ds.test)

    split = json.loads((ds_dir / SPLIT_NAME).read_text())
    assert [f"b/bakery/shop/sun_{TRAINING[2]:04d}.jpg", 2, "shop bakery"] in split["test"]


def test_missing_image_folder_names_path(tmp_path):
    (tmp_path / "sun397").mkdir()
    write_split_file(tmp_path / "sun397" / SPLIT_NAME, [], [], [])
    with pytest.raises(DatasetLayoutError, match="image folder") as err:
        build(SUN397, tmp_path)
    assert str(tmp_path / "sun397" / "SUN397") in str(err.value)


def test_partition_folder_missing_from_classname_txt_is_named(tmp_path):
    ds_dir = write_sun(tmp_path)
    (ds_dir / "ClassName.txt").write_text("\n".join(FOLDERS[:2]) + "\n")
    with pytest.raises(ValueError, match=r'Training_01.txt:\d+: folder "/b/bakery/shop"'):
        build(SUN397, tmp_path)


CASE = SplitCase(
    SUN397, write_sun, NAMES, (*trainval_counts(TRAINING), dict(enumerate(TESTING))),
    missing=("ClassName.txt", "Testing_01.txt"), shots=1,
    published={folder.lstrip("/"): (3, 2, 1) for folder in FOLDERS},
)
