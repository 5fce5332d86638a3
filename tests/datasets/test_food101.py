"""Food101: images/<dish>/<id>.jpg, split per class 50/20/30 when the split file is absent."""

import json

import pytest

from datasets.benchmark import DatasetLayoutError
from datasets.food101 import Food101
from tests.datasets.conftest import (
    impaths,
    make_cfg,
    per_class,
    write_class_folders,
    write_image,
    write_split_file,
)

COUNTS = {"apple_pie": 10, "baby_back_ribs": 7, "beignets": 12}  # folder names sort in this order
SPLIT_NAME = "split_zhou_Food101.json"


def write_food(root):
    ds_dir = root / "food-101"
    write_class_folders(ds_dir / "images", COUNTS)
    (ds_dir / "meta").mkdir()  # shipped with the archive, not read
    return ds_dir


def expected(p):
    return {y: round(n * p) for y, n in enumerate(COUNTS.values())}


def test_builds_split_from_class_folders_and_writes_it(tmp_path):
    ds_dir = write_food(tmp_path)
    ds = Food101(make_cfg(tmp_path, "Food101"))
    assert ds.classnames == list(COUNTS)
    assert per_class(ds.train_x) == expected(0.5)
    assert per_class(ds.val) == expected(0.2)
    assert per_class(ds.test) == {
        y: n - expected(0.5)[y] - expected(0.2)[y] for y, n in enumerate(COUNTS.values())
    }
    for item in ds.train_x + ds.val + ds.test:
        assert item.impath.startswith(str(ds_dir / "images" / item.classname) + "/")

    split = json.loads((ds_dir / SPLIT_NAME).read_text())
    assert len(split["train"]) == sum(expected(0.5).values())
    assert all(rel.split("/")[0] == name for rel, _, name in split["val"])


def test_generated_split_is_deterministic_and_read_back(tmp_path, monkeypatch):
    a, b = write_food(tmp_path / "a"), write_food(tmp_path / "b")
    Food101(make_cfg(tmp_path / "a", "Food101", seed=1))
    Food101(make_cfg(tmp_path / "b", "Food101", seed=2))
    assert (a / SPLIT_NAME).read_text() == (b / SPLIT_NAME).read_text()

    monkeypatch.setattr(Food101, "build_split", lambda self: pytest.fail("split not read"))
    ds = Food101(make_cfg(tmp_path / "a", "Food101"))
    assert len(ds.test) == sum(COUNTS.values()) - len(ds.train_x) - len(ds.val)


def test_split_file_fewshot_and_cache(tmp_path, monkeypatch):
    ds_dir = tmp_path / "food-101"
    split = {"train": [], "val": [], "test": []}
    for label, name in enumerate(COUNTS):
        for key, count in zip(split, (6, 5, 2)):
            for i in range(count):
                rel = f"{name}/{key}{i}.jpg"
                write_image(ds_dir / "images" / rel, shade=i)
                split[key].append([rel, label, name])
    write_split_file(ds_dir / SPLIT_NAME, split["train"], split["val"], split["test"])

    ds = Food101(make_cfg(tmp_path, "Food101", num_shots=5, seed=1))
    assert per_class(ds.train_x) == {0: 5, 1: 5, 2: 5}
    assert per_class(ds.val) == {0: 4, 1: 4, 2: 4}  # min(5, 4)
    assert per_class(ds.test) == {0: 2, 1: 2, 2: 2}
    assert (ds_dir / "split_fewshot" / "shot_5-seed_1.pkl").is_file()

    monkeypatch.setattr(Food101, "generate_fewshot_dataset", lambda *a, **k: pytest.fail())
    again = Food101(make_cfg(tmp_path, "Food101", num_shots=5, seed=1))
    assert impaths(again.train_x) == impaths(ds.train_x)
    assert impaths(again.val) == impaths(ds.val)


def test_missing_image_folder_names_path_and_section(tmp_path):
    (tmp_path / "food-101" / "meta").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError) as err:
        Food101(make_cfg(tmp_path, "Food101"))
    assert str(tmp_path / "food-101" / "images") in str(err.value)
    assert "DATASETS.md#food101" in str(err.value)
