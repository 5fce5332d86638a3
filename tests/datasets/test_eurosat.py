"""EuroSAT: eurosat/2750/<CamelCaseClass>/*.jpg; class names are CoOp's descriptive renames."""

import json

from datasets.eurosat import EuroSAT
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

COUNTS = {"AnnualCrop": 10, "Highway": 7, "SeaLake": 12}  # sorted folder order = label order
RENAMED = ["Annual Crop Land", "Highway or Road", "Sea or Lake"]
SPLIT_NAME = "split_zhou_EuroSAT.json"


def write_eurosat(root):
    ds_dir = root / "eurosat"
    write_class_folders(ds_dir / "2750", COUNTS)
    return ds_dir


def test_builds_split_with_renamed_classes_and_writes_it(tmp_path):
    ds_dir = write_eurosat(tmp_path)
    ds = EuroSAT(make_cfg(tmp_path, "EuroSAT"))
    assert ds.classnames == RENAMED
    assert per_split(ds) == split_counts(COUNTS.values())
    folders = list(COUNTS)
    for item in ds.train_x + ds.val + ds.test:
        assert item.impath.startswith(str(ds_dir / "2750" / folders[item.label]) + "/")

    split = json.loads((ds_dir / SPLIT_NAME).read_text())
    # paths keep the folder names; the stored class names are the renamed ones
    assert {(rel.split("/")[0], name) for rel, _, name in split["test"]} == set(
        zip(folders, RENAMED)
    )


def test_generated_split_is_deterministic_and_read_back(tmp_path):
    check_split_file_is_deterministic(EuroSAT, write_eurosat, tmp_path, SPLIT_NAME, (1, 2))
    assert build_from_split_file(EuroSAT, tmp_path / "a").classnames == RENAMED


def test_split_file_fewshot_and_cache(tmp_path):
    ds_dir = tmp_path / "eurosat"
    sizes = dict.fromkeys(COUNTS, (8, 6, 1))
    write_split_dataset(ds_dir / "2750", ds_dir / SPLIT_NAME, sizes, names=RENAMED)
    # K = 8 train and min(8, 4) val per class
    ds, _ = check_fewshot_cache(EuroSAT, ds_dir, 8, 1, {0: 8, 1: 8, 2: 8}, {0: 4, 1: 4, 2: 4})
    assert ds.classnames == RENAMED
    assert len(ds.test) == 3


def test_missing_image_folder_names_path_and_section(tmp_path):
    write_class_folders(tmp_path / "eurosat" / "EuroSAT_RGB", COUNTS)  # a mirror's folder name
    check_layout_error(EuroSAT, tmp_path, tmp_path / "eurosat" / "2750", "eurosat")


def test_base_and_new_halves_keep_the_renamed_class_names(tmp_path):
    write_eurosat(tmp_path)
    base = EuroSAT(make_cfg(tmp_path, "EuroSAT", subsample="base"))
    new = EuroSAT(make_cfg(tmp_path, "EuroSAT", subsample="new"))
    assert base.classnames == RENAMED[:2]  # ceil(3 / 2) base classes
    assert new.classnames == RENAMED[2:]
    _, _, test = split_counts(COUNTS.values())
    assert per_class(new.test) == {0: test[2]}  # SeaLake, label 2 before relabelling
