"""SUN397: SUN397/<letter>/<scene>[/<kind>]/*.jpg, ClassName.txt, Training_01/Testing_01.txt."""

import json

import pytest

from datasets.benchmark import DatasetLayoutError
from datasets.sun397 import SUN397
from tests.datasets.conftest import impaths, make_cfg, per_class, write_image, write_split_file

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


def test_builds_split_from_first_partition_and_writes_it(tmp_path):
    ds_dir = write_sun(tmp_path)
    ds = SUN397(make_cfg(tmp_path, "SUN397"))
    assert ds.classnames == NAMES
    n_val = [round(n * 0.2) for n in TRAINING]
    assert per_class(ds.train_x) == {y: n - n_val[y] for y, n in enumerate(TRAINING)}
    assert per_class(ds.val) == dict(enumerate(n_val))
    assert per_class(ds.test) == dict(enumerate(TESTING))
    # the image path keeps the full folder; unlisted images are not used
    shop = ds_dir / "SUN397" / "b" / "bakery" / "shop"
    assert str(shop / f"sun_{TRAINING[2]:04d}.jpg") in impaths(ds.test)
    last = TRAINING[2] + TESTING[2]
    assert str(shop / f"sun_{last:04d}.jpg") not in impaths(ds.train_x + ds.val + ds.test)

    split = json.loads((ds_dir / SPLIT_NAME).read_text())
    assert [f"b/bakery/shop/sun_{TRAINING[2]:04d}.jpg", 2, "shop bakery"] in split["test"]


def test_generated_split_is_deterministic_and_read_back(tmp_path, monkeypatch):
    a, b = write_sun(tmp_path / "a"), write_sun(tmp_path / "b")
    SUN397(make_cfg(tmp_path / "a", "SUN397", seed=1))
    SUN397(make_cfg(tmp_path / "b", "SUN397", seed=4))
    assert (a / SPLIT_NAME).read_text() == (b / SPLIT_NAME).read_text()

    (a / "ClassName.txt").unlink()  # not needed once the split file exists
    monkeypatch.setattr(SUN397, "build_split", lambda self: pytest.fail("split not read"))
    ds = SUN397(make_cfg(tmp_path / "a", "SUN397"))
    assert ds.classnames == NAMES


def test_split_file_fewshot_and_cache(tmp_path, monkeypatch):
    ds_dir = tmp_path / "sun397"
    split = {"train": [], "val": [], "test": []}
    for label, (folder, name) in enumerate(zip(FOLDERS, NAMES)):
        for key, count in zip(split, (3, 2, 1)):
            for i in range(count):
                rel = f"{folder.lstrip('/')}/sun_{key}{i}.jpg"
                write_image(ds_dir / "SUN397" / rel, shade=i)
                split[key].append([rel, label, name])
    write_split_file(ds_dir / SPLIT_NAME, split["train"], split["val"], split["test"])

    ds = SUN397(make_cfg(tmp_path, "SUN397", num_shots=1, seed=1))
    assert per_class(ds.train_x) == {0: 1, 1: 1, 2: 1}
    assert per_class(ds.val) == {0: 1, 1: 1, 2: 1}  # min(1, 4)
    assert (ds_dir / "split_fewshot" / "shot_1-seed_1.pkl").is_file()

    monkeypatch.setattr(SUN397, "generate_fewshot_dataset", lambda *a, **k: pytest.fail())
    again = SUN397(make_cfg(tmp_path, "SUN397", num_shots=1, seed=1))
    assert impaths(again.train_x) == impaths(ds.train_x)
    assert impaths(again.val) == impaths(ds.val)


@pytest.mark.parametrize("missing", ["ClassName.txt", "Testing_01.txt"])
def test_missing_partition_file_names_path_and_section(tmp_path, missing):
    ds_dir = write_sun(tmp_path)
    (ds_dir / missing).unlink()
    with pytest.raises(DatasetLayoutError) as err:
        SUN397(make_cfg(tmp_path, "SUN397"))
    assert str(ds_dir / missing) in str(err.value)
    assert "DATASETS.md#sun397" in str(err.value)
    assert not (ds_dir / SPLIT_NAME).exists()


def test_missing_image_folder_names_path(tmp_path):
    (tmp_path / "sun397").mkdir()
    write_split_file(tmp_path / "sun397" / SPLIT_NAME, [], [], [])
    with pytest.raises(DatasetLayoutError, match="image folder") as err:
        SUN397(make_cfg(tmp_path, "SUN397"))
    assert str(tmp_path / "sun397" / "SUN397") in str(err.value)


def test_partition_folder_missing_from_classname_txt_is_named(tmp_path):
    ds_dir = write_sun(tmp_path)
    (ds_dir / "ClassName.txt").write_text("\n".join(FOLDERS[:2]) + "\n")
    with pytest.raises(ValueError, match=r'Training_01.txt:\d+: folder "/b/bakery/shop"'):
        SUN397(make_cfg(tmp_path, "SUN397"))
