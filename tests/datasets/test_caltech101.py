"""Caltech101: class folders under 101_ObjectCategories, two of them ignored, four renamed."""

import json

from datasets.caltech101 import Caltech101
from tests.datasets.conftest import SplitCase, build, impaths, split_counts, write_class_folders

IMAGES_PER_CLASS = 10  # -> 5 train, 2 val, 3 test
FOLDERS = ["BACKGROUND_Google", "Faces_easy", "Faces", "accordion", "airplanes"]
# sorted kept folders: "Faces", "accordion", "airplanes" (upper case sorts first)
EXPECTED_NAMES = ["face", "accordion", "airplane"]


def write_caltech(root):
    ds_dir = root / "caltech-101"
    write_class_folders(ds_dir / "101_ObjectCategories", dict.fromkeys(FOLDERS, IMAGES_PER_CLASS))
    return ds_dir


def test_generated_split_ignores_background_and_duplicate_faces(tmp_path):
    ds_dir = write_caltech(tmp_path)
    ds = build(Caltech101, tmp_path)
    assert not any("BACKGROUND" in p or "Faces_easy" in p for p in impaths(ds.test))
    split = json.loads((ds_dir / "split_zhou_Caltech101.json").read_text())
    assert all(rel.startswith(("Faces/", "accordion/", "airplanes/")) for rel, _, _ in split["val"])


CASE = SplitCase(
    Caltech101, write_caltech, EXPECTED_NAMES, split_counts([IMAGES_PER_CLASS] * 3),
    missing=("101_ObjectCategories",), shots=2,
)
