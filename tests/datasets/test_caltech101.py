"""Caltech101: class folders under 101_ObjectCategories, two of them ignored, four renamed."""

import json

from datasets.caltech101 import Caltech101
from tests.datasets.conftest import (
    build_from_split_file,
    check_fewshot_cache,
    check_layout_error,
    check_split_file_is_deterministic,
    impaths,
    make_cfg,
    per_class,
    write_class_folders,
)

IMAGES_PER_CLASS = 10  # -> 5 train, 2 val, 3 test
FOLDERS = ["BACKGROUND_Google", "Faces_easy", "Faces", "accordion", "airplanes"]
# sorted kept folders: "Faces", "accordion", "airplanes" (upper case sorts first)
EXPECTED_NAMES = ["face", "accordion", "airplane"]


def write_caltech(root):
    ds_dir = root / "caltech-101"
    write_class_folders(ds_dir / "101_ObjectCategories", dict.fromkeys(FOLDERS, IMAGES_PER_CLASS))
    return ds_dir


def test_generated_split_ignores_background_and_renames_classes(tmp_path):
    ds_dir = write_caltech(tmp_path)
    ds = Caltech101(make_cfg(tmp_path, "Caltech101"))
    assert ds.classnames == EXPECTED_NAMES
    assert per_class(ds.train_x) == {k: 5 for k in range(3)}
    assert per_class(ds.val) == {k: 2 for k in range(3)}
    assert per_class(ds.test) == {k: 3 for k in range(3)}
    assert not any("BACKGROUND" in p or "Faces_easy" in p for p in impaths(ds.test))
    split = json.loads((ds_dir / "split_zhou_Caltech101.json").read_text())
    assert all(rel.startswith(("Faces/", "accordion/", "airplanes/")) for rel, _, _ in split["val"])


def test_generated_split_is_deterministic_and_read_back(tmp_path):
    check_split_file_is_deterministic(
        Caltech101, write_caltech, tmp_path, "split_zhou_Caltech101.json", (1, 3)
    )
    assert len(build_from_split_file(Caltech101, tmp_path / "a").test) == 9


def test_fewshot_k_train_min_k_4_val_and_cache(tmp_path):
    ds_dir = write_caltech(tmp_path)
    two_each = {k: 2 for k in range(3)}
    check_fewshot_cache(Caltech101, ds_dir, 2, 2, train=two_each, val=two_each)


def test_missing_image_folder_gives_the_promised_error(tmp_path):
    (tmp_path / "caltech-101").mkdir()
    folder = tmp_path / "caltech-101" / "101_ObjectCategories"
    check_layout_error(Caltech101, tmp_path, folder, "caltech101")
