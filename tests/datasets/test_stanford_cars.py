"""StanfordCars: devkit .mat annotations (read with scipy), images in cars_train/ and cars_test/."""

import json

import numpy as np
import pytest
from scipy.io import savemat

from datasets.benchmark import DatasetLayoutError
from datasets.stanford_cars import StanfordCars
from tests.datasets.conftest import impaths, make_cfg, per_class, write_image, write_split_file

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


def test_builds_split_from_mat_files_with_year_first_names(tmp_path):
    ds_dir = write_cars(tmp_path)
    ds = StanfordCars(make_cfg(tmp_path, "StanfordCars"))
    assert ds.classnames == EXPECTED_NAMES
    n_val = round(TRAIN_PER_CLASS * 0.2)
    assert per_class(ds.train_x) == {k: TRAIN_PER_CLASS - n_val for k in range(3)}
    assert per_class(ds.val) == {k: n_val for k in range(3)}
    assert per_class(ds.test) == {k: TEST_PER_CLASS for k in range(3)}
    # test image 00003.jpg is the first of class 2 (0-based label 1)
    assert [d.label for d in ds.test if d.impath.endswith("cars_test/00003.jpg")] == [1]

    split = json.loads((ds_dir / "split_zhou_StanfordCars.json").read_text())
    assert ["cars_test/00003.jpg", 1, "2012 Acura RL Sedan"] in split["test"]


def test_generated_split_is_deterministic(tmp_path):
    a, b = write_cars(tmp_path / "a"), write_cars(tmp_path / "b")
    StanfordCars(make_cfg(tmp_path / "a", "StanfordCars", seed=1))
    StanfordCars(make_cfg(tmp_path / "b", "StanfordCars", seed=5))
    name = "split_zhou_StanfordCars.json"
    assert (a / name).read_text() == (b / name).read_text()


def test_reads_split_file_relative_to_dataset_folder(tmp_path, monkeypatch):
    ds_dir = write_cars(tmp_path)
    entries = [["cars_train/00001.jpg", 0, EXPECTED_NAMES[0]], ["cars_test/00001.jpg", 0, "x"]]
    write_split_file(ds_dir / "split_zhou_StanfordCars.json", entries[:1], entries[:1], entries)
    monkeypatch.setattr(StanfordCars, "build_split", lambda self: pytest.fail("split not read"))
    ds = StanfordCars(make_cfg(tmp_path, "StanfordCars"))
    assert impaths(ds.test) == [str(ds_dir / rel) for rel, _, _ in entries]


def test_fewshot_and_cache_reuse(tmp_path, monkeypatch):
    write_cars(tmp_path)
    ds = StanfordCars(make_cfg(tmp_path, "StanfordCars", num_shots=1))
    assert per_class(ds.train_x) == {k: 1 for k in range(3)}
    assert per_class(ds.val) == {k: 1 for k in range(3)}
    monkeypatch.setattr(StanfordCars, "generate_fewshot_dataset", lambda *a, **k: pytest.fail())
    again = StanfordCars(make_cfg(tmp_path, "StanfordCars", num_shots=1))
    assert impaths(again.train_x) == impaths(ds.train_x)


def test_missing_meta_file_names_it(tmp_path):
    ds_dir = write_cars(tmp_path)
    (ds_dir / "devkit" / "cars_meta.mat").unlink()
    with pytest.raises(DatasetLayoutError) as err:
        StanfordCars(make_cfg(tmp_path, "StanfordCars"))
    assert str(ds_dir / "devkit" / "cars_meta.mat") in str(err.value)
    assert "DATASETS.md#stanfordcars" in str(err.value)


def test_missing_test_images_folder_names_it_even_with_split_file(tmp_path):
    ds_dir = write_cars(tmp_path)
    StanfordCars(make_cfg(tmp_path, "StanfordCars"))
    (ds_dir / "cars_test").rename(ds_dir / "elsewhere")
    with pytest.raises(FileNotFoundError, match="cars_test"):
        StanfordCars(make_cfg(tmp_path, "StanfordCars"))
