"""EuroSAT: eurosat/2750/<CamelCaseClass>/*.jpg; class names are CoOp's descriptive renames."""

import json

import pytest

from datasets.benchmark import DatasetLayoutError
from datasets.eurosat import EuroSAT
from tests.datasets.conftest import (
    impaths,
    make_cfg,
    per_class,
    write_class_folders,
    write_image,
    write_split_file,
)

COUNTS = {"AnnualCrop": 10, "Highway": 7, "SeaLake": 12}  # sorted folder order = label order
RENAMED = ["Annual Crop Land", "Highway or Road", "Sea or Lake"]
SPLIT_NAME = "split_zhou_EuroSAT.json"


def write_eurosat(root):
    ds_dir = root / "eurosat"
    write_class_folders(ds_dir / "2750", COUNTS)
    return ds_dir


def expected(p):
    return {y: round(n * p) for y, n in enumerate(COUNTS.values())}


def test_builds_split_with_renamed_classes_and_writes_it(tmp_path):
    ds_dir = write_eurosat(tmp_path)
    ds = EuroSAT(make_cfg(tmp_path, "EuroSAT"))
    assert ds.classnames == RENAMED
    assert per_class(ds.train_x) == expected(0.5)
    assert per_class(ds.val) == expected(0.2)
    assert per_class(ds.test) == {
        y: n - expected(0.5)[y] - expected(0.2)[y] for y, n in enumerate(COUNTS.values())
    }
    folders = list(COUNTS)
    for item in ds.train_x + ds.val + ds.test:
        assert item.impath.startswith(str(ds_dir / "2750" / folders[item.label]) + "/")

    split = json.loads((ds_dir / SPLIT_NAME).read_text())
    # paths keep the folder names; the stored class names are the renamed ones
    assert {(rel.split("/")[0], name) for rel, _, name in split["test"]} == set(
        zip(folders, RENAMED)
    )


def test_generated_split_is_deterministic_and_read_back(tmp_path, monkeypatch):
    a, b = write_eurosat(tmp_path / "a"), write_eurosat(tmp_path / "b")
    EuroSAT(make_cfg(tmp_path / "a", "EuroSAT", seed=1))
    EuroSAT(make_cfg(tmp_path / "b", "EuroSAT", seed=2))
    assert (a / SPLIT_NAME).read_text() == (b / SPLIT_NAME).read_text()

    monkeypatch.setattr(EuroSAT, "build_split", lambda self: pytest.fail("split not read"))
    ds = EuroSAT(make_cfg(tmp_path / "a", "EuroSAT"))
    assert ds.classnames == RENAMED


def test_split_file_fewshot_and_cache(tmp_path, monkeypatch):
    ds_dir = tmp_path / "eurosat"
    split = {"train": [], "val": [], "test": []}
    for label, (folder, name) in enumerate(zip(COUNTS, RENAMED)):
        for key, count in zip(split, (8, 6, 1)):
            for i in range(count):
                rel = f"{folder}/{folder}_{key}{i}.jpg"
                write_image(ds_dir / "2750" / rel, shade=i)
                split[key].append([rel, label, name])
    write_split_file(ds_dir / SPLIT_NAME, split["train"], split["val"], split["test"])

    ds = EuroSAT(make_cfg(tmp_path, "EuroSAT", num_shots=8, seed=1))
    assert ds.classnames == RENAMED
    assert per_class(ds.train_x) == {0: 8, 1: 8, 2: 8}
    assert per_class(ds.val) == {0: 4, 1: 4, 2: 4}  # min(8, 4)
    assert len(ds.test) == 3
    assert (ds_dir / "split_fewshot" / "shot_8-seed_1.pkl").is_file()

    monkeypatch.setattr(EuroSAT, "generate_fewshot_dataset", lambda *a, **k: pytest.fail())
    again = EuroSAT(make_cfg(tmp_path, "EuroSAT", num_shots=8, seed=1))
    assert impaths(again.val) == impaths(ds.val)


def test_missing_image_folder_names_path_and_section(tmp_path):
    write_class_folders(tmp_path / "eurosat" / "EuroSAT_RGB", COUNTS)  # a mirror's folder name
    with pytest.raises(DatasetLayoutError) as err:
        EuroSAT(make_cfg(tmp_path, "EuroSAT"))
    assert str(tmp_path / "eurosat" / "2750") in str(err.value)
    assert "DATASETS.md#eurosat" in str(err.value)


def test_base_and_new_halves_keep_the_renamed_class_names(tmp_path):
    write_eurosat(tmp_path)
    base = EuroSAT(make_cfg(tmp_path, "EuroSAT", subsample="base"))
    new = EuroSAT(make_cfg(tmp_path, "EuroSAT", subsample="new"))
    assert base.classnames == RENAMED[:2]  # ceil(3 / 2) base classes
    assert new.classnames == RENAMED[2:]
    assert per_class(new.test) == {0: COUNTS["SeaLake"] - expected(0.5)[2] - expected(0.2)[2]}
