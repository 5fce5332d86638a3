"""OxfordFlowers: jpg/image_<i>.jpg, labels in imagelabels.mat, names in cat_to_name.json."""

import json

import numpy as np
import pytest
from scipy.io import savemat

from datasets.oxford_flowers import OxfordFlowers
from tests.datasets.conftest import (
    SplitCase,
    build,
    impaths,
    per_class,
    split_counts,
    write_image,
    write_split_file,
)

NAMES = {"1": "pink primrose", "2": "hard-leaved pocket orchid", "3": "canterbury bells"}
# the .mat label of image_00001.jpg, image_00002.jpg, ...: interleaved, 10 / 7 / 12 per class
LABELS = [1, 2, 3] * 7 + [1, 3] * 3 + [3, 3]
SPLIT_NAME = "split_zhou_OxfordFlowers.json"


def write_flowers(root, names=NAMES):
    """The official jpg/ folder and imagelabels.mat, plus CoOp's cat_to_name.json."""
    ds_dir = root / "oxford_flowers"
    for i in range(1, len(LABELS) + 1):
        write_image(ds_dir / "jpg" / f"image_{i:05d}.jpg", shade=i)
    # stored as a 1 x N uint8 row, like the real file
    savemat(ds_dir / "imagelabels.mat", {"labels": np.array([LABELS], dtype=np.uint8)})
    (ds_dir / "cat_to_name.json").write_text(json.dumps(names))
    return ds_dir


# images per label (0-based), computed from the fixture
COUNTS = [LABELS.count(y) for y in (1, 2, 3)]

def test_every_image_gets_the_label_and_name_the_mat_file_gives_it(tmp_path):
    ds_dir = write_flowers(tmp_path)
    ds = build(OxfordFlowers, tmp_path)
    # every image lands in exactly one split, with the label the .mat gives it (0-based)
    all_items = ds.train_x + ds.val + ds.test
    assert sorted(impaths(all_items)) == sorted(
        str(ds_dir / "jpg" / f"image_{i:05d}.jpg") for i in range(1, len(LABELS) + 1)
    )
    for item in all_items:
        i = int(item.impath[-9:-4])
        assert item.label == LABELS[i - 1] - 1
        assert item.classname == NAMES[str(LABELS[i - 1])]


def test_reads_published_split_file_without_raw_annotations(tmp_path):
    """With the split file, jpg/ and the file are enough; K train, min(K, 4) val, then cached."""
    ds_dir = tmp_path / "oxford_flowers"
    split = {"train": [], "val": [], "test": []}
    n = 0
    for label, name in enumerate(NAMES.values()):
        for key, count in zip(split, (6, 5, 2)):
            for _ in range(count):
                n += 1
                write_image(ds_dir / "jpg" / f"image_{n:05d}.jpg", shade=n)
                split[key].append([f"image_{n:05d}.jpg", label, name])
    write_split_file(ds_dir / SPLIT_NAME, split["train"], split["val"], split["test"])

    ds = build(OxfordFlowers, tmp_path)
    assert ds.classnames == list(NAMES.values())
    assert (len(ds.train_x), len(ds.val), len(ds.test)) == (18, 15, 6)
    assert impaths(ds.test)[0] == str(ds_dir / "jpg" / split["test"][0][0])

    fewshot = build(OxfordFlowers, tmp_path, num_shots=5)
    assert per_class(fewshot.train_x) == {0: 5, 1: 5, 2: 5}
    assert per_class(fewshot.val) == {0: 4, 1: 4, 2: 4}
    assert (ds_dir / "split_fewshot" / "shot_5-seed_1.pkl").is_file()


def test_label_without_a_name_is_reported(tmp_path):
    ds_dir = write_flowers(tmp_path, names={"1": "pink primrose", "2": "hard-leaved pocket orchid"})
    with pytest.raises(ValueError, match='no name for label "3"'):
        build(OxfordFlowers, tmp_path)
    assert not (ds_dir / SPLIT_NAME).exists()


@pytest.mark.parametrize(
    ("name", "content"),
    [("imagelabels.mat", b""), ("imagelabels.mat", b"x" * 200), ("cat_to_name.json", b"{1: ")],
)
def test_corrupt_annotation_file_is_named(tmp_path, name, content):
    ds_dir = write_flowers(tmp_path)
    (ds_dir / name).write_bytes(content)
    with pytest.raises(ValueError, match="re-download it") as err:
        build(OxfordFlowers, tmp_path)
    assert str(ds_dir / name) in str(err.value)
    assert not (ds_dir / SPLIT_NAME).exists()


def test_mat_without_labels_array_is_named(tmp_path):
    ds_dir = write_flowers(tmp_path)
    savemat(ds_dir / "imagelabels.mat", {"setid": np.array([[1, 2]])})
    with pytest.raises(ValueError, match='"labels" array'):
        build(OxfordFlowers, tmp_path)


def test_class_too_small_to_split_names_the_label_and_the_published_file(tmp_path):
    ds_dir = write_flowers(tmp_path)
    # a fourth class with 2 images: too few for 50/20/30 with one image in each part
    write_image(ds_dir / "jpg" / f"image_{len(LABELS) + 1:05d}.jpg")
    write_image(ds_dir / "jpg" / f"image_{len(LABELS) + 2:05d}.jpg")
    savemat(ds_dir / "imagelabels.mat", {"labels": np.array([LABELS + [4, 4]], dtype=np.uint8)})
    (ds_dir / "cat_to_name.json").write_text(json.dumps({**NAMES, "4": "sweet pea"}))
    with pytest.raises(ValueError, match="2 images") as err:
        build(OxfordFlowers, tmp_path)
    assert "label 4" in str(err.value) and SPLIT_NAME in str(err.value)
    assert not (ds_dir / SPLIT_NAME).exists()


CASE = SplitCase(
    OxfordFlowers, write_flowers, list(NAMES.values()), split_counts(COUNTS),
    missing=("imagelabels.mat", "cat_to_name.json", "jpg"), shots=2,
)
