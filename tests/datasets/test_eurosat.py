"""EuroSAT: eurosat/2750/<CamelCaseClass>/*.jpg; class names are CoOp's descriptive renames."""

import json

from datasets.eurosat import EuroSAT
from tests.datasets.conftest import (
    SplitCase,
    build,
    check_layout_error,
    per_class,
    split_counts,
    write_class_folders,
)

COUNTS = {"AnnualCrop": 10, "Highway": 7, "SeaLake": 12}  # sorted folder order = label order
RENAMED = ["Annual Crop Land", "Highway or Road", "Sea or Lake"]
SPLIT_NAME = "split_zhou_EuroSAT.json"


def write_eurosat(root):
    ds_dir = root / "eurosat"
    write_class_folders(ds_dir / "2750", COUNTS)
    return ds_dir


def test_paths_keep_the_folder_names_and_the_split_file_the_renamed_classes(tmp_path):
    ds_dir = write_eurosat(tmp_path)
    ds = build(EuroSAT, tmp_path)
    folders = list(COUNTS)
    for item in ds.train_x + ds.val + ds.test:
        assert item.impath.startswith(str(ds_dir / "2750" / folders[item.label]) + "/")

    split = json.loads((ds_dir / SPLIT_NAME).read_text())
    assert {(rel.split("/")[0], name) for rel, _, name in split["test"]} == set(
        zip(folders, RENAMED)
    )


def test_mirror_folder_name_is_not_read_and_the_error_names_2750(tmp_path):
    write_class_folders(tmp_path / "eurosat" / "EuroSAT_RGB", COUNTS)  # a mirror's folder name
    check_layout_error(EuroSAT, tmp_path, tmp_path / "eurosat" / "2750", "eurosat")


def test_base_and_new_halves_keep_the_renamed_class_names(tmp_path):
    write_eurosat(tmp_path)
    base = build(EuroSAT, tmp_path, subsample="base")
    new = build(EuroSAT, tmp_path, subsample="new")
    assert base.classnames == RENAMED[:2]  # ceil(3 / 2) base classes
    assert new.classnames == RENAMED[2:]
    _, _, test = split_counts(COUNTS.values())
    assert per_class(new.test) == {0: test[2]}  # SeaLake, label 2 before relabelling


CASE = SplitCase(
    EuroSAT, write_eurosat, RENAMED, split_counts(COUNTS.values()),
    missing=("2750",), shots=8, published=dict.fromkeys(COUNTS, (8, 6, 1)),
)
