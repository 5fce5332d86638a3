"""StanfordCars: devkit .mat annotations (read with scipy), images in cars_train/ and cars_test/."""

import json

import numpy as np
import pytest
from scipy.io import savemat

from datasets.check import main as check_main
from datasets.stanford_cars import StanfordCars
from tests.datasets.conftest import (
    SplitCase,
    build,
    build_from_split_file,
    impaths,
    remove,
    trainval_counts,
    write_image,
    write_split_file,
)

MODELS = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Audi TTS Coupe 2012"]
EXPECTED_NAMES = ["2000 AM General Hummer SUV", "2012 Acura RL Sedan", "2012 Audi TTS Coupe"]
TRAIN_PER_CLASS, TEST_PER_CLASS = 5, 2


def write_annos(path, records):
    """A struct array "annotations" with the official fields; "class" is 1-based."""
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    annos = np.zeros((1, len(records)), dtype=[(f, "O") for f in fields])
    for i, (fname, class_id) in enumerate(records):
        for f in fields[:4]:
            annos[0, i][f] = np.array([[1]], dtype=np.uint8)
        annos[0, i]["class"] = np.array([[class_id]], dtype=np.uint8)
        annos[0, i]["fname"] = fname
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {"annotations": annos})


def write_cars(root):
    ds_dir = root / "stanford_cars"
    train, test = [], []
    for class_id in range(1, len(MODELS) + 1):
        train += [(f"{len(train) + i + 1:05d}.jpg", class_id) for i in range(TRAIN_PER_CLASS)]
        test += [(f"{len(test) + i + 1:05d}.jpg", class_id) for i in range(TEST_PER_CLASS)]
    for folder, records in (("cars_train", train), ("cars_test", test)):
        for fname, class_id in records:
            write_image(ds_dir / folder / fname, shade=class_id)
    write_annos(ds_dir / "devkit" / "cars_train_annos.mat", train)
    write_annos(ds_dir / "cars_test_annos_withlabels.mat", test)
    names = np.empty((1, len(MODELS)), dtype=object)
    names[0, :] = MODELS
    savemat(ds_dir / "devkit" / "cars_meta.mat", {"class_names": names})
    return ds_dir


def test_labels_come_from_the_1_based_mat_classes(tmp_path):
    ds_dir = write_cars(tmp_path)
    ds = build(StanfordCars, tmp_path)
    # test image 00003.jpg is the first of class 2 (0-based label 1)
    assert [d.label for d in ds.test if d.impath.endswith("cars_test/00003.jpg")] == [1]
    split = json.loads((ds_dir / "split_zhou_StanfordCars.json").read_text())
    assert ["cars_test/00003.jpg", 1, "2012 Acura RL Sedan"] in split["test"]


def test_reads_split_file_relative_to_dataset_folder(tmp_path):
    ds_dir = write_cars(tmp_path)
    entries = [["cars_train/00001.jpg", 0, "x"], ["cars_test/00001.jpg", 0, "x"]]
    write_split_file(ds_dir / "split_zhou_StanfordCars.json", entries[:1], entries[:1], entries[1:])
    ds = build_from_split_file(StanfordCars, tmp_path)
    assert impaths(ds.train_x) == [str(ds_dir / "cars_train" / "00001.jpg")]
    assert impaths(ds.test) == [str(ds_dir / "cars_test" / "00001.jpg")]


def test_missing_test_images_folder_names_it_even_with_split_file(tmp_path):
    ds_dir = write_cars(tmp_path)
    build(StanfordCars, tmp_path)
    (ds_dir / "cars_test").rename(ds_dir / "elsewhere")
    with pytest.raises(FileNotFoundError, match="cars_test"):
        build(StanfordCars, tmp_path)


def test_split_using_only_cars_train_needs_no_cars_test(tmp_path, capsys):
    """Today StanfordCars demands cars_test/ even when every split path is under cars_train/."""
    ds_dir = write_cars(tmp_path)
    # cars_train/ holds 5 images of each of 3 classes; the split uses classes 0 and 1
    entries = [[f"cars_train/{i:05d}.jpg", (i - 1) // 5, f"m{(i - 1) // 5}"] for i in range(1, 11)]
    split = ds_dir / "split_zhou_StanfordCars.json"
    write_split_file(split, entries[0::5] + entries[1::5], entries[2::5], entries[3::5])
    remove(ds_dir / "cars_test")
    ds = build_from_split_file(StanfordCars, tmp_path)
    assert len(ds.train_x) == 4 and all("/cars_train/" in p for p in impaths(ds.test))
    assert ds.classnames == ["m0", "m1"]

    # the layout checker agrees
    assert check_main(["--root", str(tmp_path), "StanfordCars"]) == 0
    assert "[OK] StanfordCars (stanford_cars): 2 classes; train 4, val 2, test 2" in (
        capsys.readouterr().out
    )


def test_checker_says_building_the_split_needs_both_image_folders(tmp_path, capsys):
    ds_dir = write_cars(tmp_path)
    (ds_dir / "cars_test").rename(ds_dir / "elsewhere")
    assert check_main(["--root", str(tmp_path), "StanfordCars"]) == 1
    what = "cars_test (to build the absent split_zhou_StanfordCars.json)"
    assert f"{what}: {ds_dir / 'cars_test'}" in capsys.readouterr().out


CASE = SplitCase(
    StanfordCars, write_cars, EXPECTED_NAMES,
    (*trainval_counts([TRAIN_PER_CLASS] * 3), dict.fromkeys(range(3), TEST_PER_CLASS)),
    missing=("devkit/cars_meta.mat", "cars_test"), shots=1,
)
