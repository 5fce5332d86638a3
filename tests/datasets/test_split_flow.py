"""The flow every dataset with a generated split file shares, run on each one's ``SplitCase``:
build from the raw layout and write the split, the same file under any seed and read back without
the raw files, few-shot sampling with its cache, and layout errors that name the missing piece.

What is particular to a dataset (its class-name renames, label mapping, path quirks, parse errors)
is tested in its own test_<dataset>.py, where its layout writer and ``CASE`` live.
"""

import importlib
import json
import os

import pytest

from tests.datasets.conftest import (
    SplitCase,
    build,
    build_from_split_file,
    check_fewshot_cache,
    check_layout_error,
    check_split_file_is_deterministic,
    per_class,
    per_split,
    remove,
    write_split_dataset,
)

DATASET_TESTS = (
    "test_caltech101",
    "test_dtd",
    "test_eurosat",
    "test_food101",
    "test_oxford_flowers",
    "test_oxford_pets",
    "test_stanford_cars",
    "test_sun397",
    "test_ucf101",
)
CASES = [importlib.import_module(f"tests.datasets.{name}").CASE for name in DATASET_TESTS]
SEEDS = (1, 7)  # two runs differing only in SEED must write the same split file
FEWSHOT_SEED = 2


@pytest.fixture(params=CASES, ids=lambda case: case.cls.__name__)
def case(request) -> SplitCase:
    return request.param


def test_builds_split_from_raw_files_and_writes_what_it_built(tmp_path, case):
    ds_dir = case.write(tmp_path)
    assert not (ds_dir / case.cls.split_file).exists()
    ds = build(case.cls, tmp_path)
    assert ds.classnames == case.classnames
    assert ds.num_classes == len(case.classnames)
    assert per_split(ds) == case.sizes

    # the file lists exactly the items of each part, relative to the image folder
    split = json.loads((ds_dir / case.cls.split_file).read_text())
    image_dir = ds_dir / case.cls.image_folder
    for key, items in zip(("train", "val", "test"), (ds.train_x, ds.val, ds.test)):
        written = sorted((os.path.join(image_dir, rel), y, name) for rel, y, name in split[key])
        assert written == sorted((d.impath, d.label, d.classname) for d in items)


def test_generated_split_is_deterministic_and_read_back_without_raw_files(tmp_path, case):
    ds_dir = check_split_file_is_deterministic(
        case.cls, case.write, tmp_path, case.cls.split_file, SEEDS
    )
    # raw files are only needed to build the split; image folders stay, the split lists them
    for rel in case.cls.raw_files:
        if (ds_dir / rel).is_file():
            (ds_dir / rel).unlink()
    ds = build_from_split_file(case.cls, tmp_path / "a")
    assert ds.classnames == case.classnames
    assert per_split(ds) == case.sizes


def test_fewshot_sampling_and_cache(tmp_path, case):
    """K train and min(K, 4) val images per class, as far as the class has them; test untouched."""
    if case.published is None:
        ds_dir, (train, val, test) = case.write(tmp_path), case.sizes
    else:
        ds_dir = tmp_path / case.cls.dataset_dir
        image_dir, split_file = ds_dir / case.cls.image_folder, ds_dir / case.cls.split_file
        write_split_dataset(image_dir, split_file, case.published, case.classnames, case.relpath)
        train, val, test = (dict(enumerate(part)) for part in zip(*case.published.values()))
    k = case.shots
    expected_train = {y: min(k, n) for y, n in train.items()}
    expected_val = {y: min(k, 4, n) for y, n in val.items()}
    ds, _ = check_fewshot_cache(case.cls, ds_dir, k, FEWSHOT_SEED, expected_train, expected_val)
    assert ds.classnames == case.classnames
    assert per_class(ds.test) == test


@pytest.mark.parametrize(
    ("case", "missing"),
    [(case, missing) for case in CASES for missing in case.missing],
    ids=lambda value: value.cls.__name__ if isinstance(value, SplitCase) else value,
)
def test_missing_piece_names_path_and_section_and_writes_nothing(tmp_path, case, missing):
    ds_dir = case.write(tmp_path)
    remove(ds_dir / missing)
    check_layout_error(case.cls, tmp_path, ds_dir / missing, case.cls.__name__.lower())
    assert not (ds_dir / case.cls.split_file).exists()
