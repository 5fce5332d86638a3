"""OxfordPets: official trainval/test lists in annotations/, or split_zhou_OxfordPets.json."""

import json

import pytest

from datasets.oxford_pets import OxfordPets
from datasets.splits import SplitError
from tests.datasets.conftest import (
    SplitCase,
    build,
    build_from_split_file,
    impaths,
    trainval_counts,
    write_image,
    write_split_file,
)

# image-name prefix, class id (1-based), species (1 cat, 2 dog); names sort unlike the ids
BREEDS = [("Abyssinian", 1, 1), ("american_bulldog", 2, 2), ("Bengal", 3, 1)]
TRAINVAL_PER_CLASS, TEST_PER_CLASS = 10, 3


def write_pets(root):
    """images/<Breed>_<n>.jpg and annotations/{trainval,test}.txt as in the official archive."""
    ds_dir = root / "oxford_pets"
    lines = {"trainval.txt": [], "test.txt": []}
    for prefix, class_id, species in BREEDS:
        for n in range(1, TRAINVAL_PER_CLASS + TEST_PER_CLASS + 1):
            imname = f"{prefix}_{n}"
            write_image(ds_dir / "images" / f"{imname}.jpg", shade=n)
            which = "trainval.txt" if n <= TRAINVAL_PER_CLASS else "test.txt"
            lines[which].append(f"{imname} {class_id} {species} {n}")
    (ds_dir / "annotations").mkdir()
    for name, entries in lines.items():
        (ds_dir / "annotations" / name).write_text("\n".join(entries) + "\n")
    return ds_dir


def test_test_list_images_keep_their_names_and_breed_label(tmp_path):
    ds_dir = write_pets(tmp_path)
    ds = build(OxfordPets, tmp_path)
    assert str(ds_dir / "images" / "Bengal_11.jpg") in impaths(ds.test)
    split = json.loads((ds_dir / "split_zhou_OxfordPets.json").read_text())
    assert ["Bengal_11.jpg", 2, "bengal"] in split["test"]


def test_reads_existing_split_file_instead_of_annotations(tmp_path):
    ds_dir = write_pets(tmp_path)
    # a split of two classes, unlike the three-breed annotations: the file is what is read
    train = [["Abyssinian_1.jpg", 0, "abyssinian"], ["Bengal_1.jpg", 1, "bengal"]]
    test = [["Abyssinian_2.jpg", 0, "abyssinian"], ["Bengal_2.jpg", 1, "bengal"]]
    write_split_file(ds_dir / "split_zhou_OxfordPets.json", train, train[:1], test)
    ds = build_from_split_file(OxfordPets, tmp_path)
    assert impaths(ds.train_x) == [str(ds_dir / "images" / rel) for rel, _, _ in train]
    assert ds.num_classes == 2 and len(ds.val) == 1


def test_missing_image_folder_names_it(tmp_path):
    (tmp_path / "oxford_pets").mkdir()
    with pytest.raises(FileNotFoundError, match="image folder") as err:
        build(OxfordPets, tmp_path)
    assert str(tmp_path / "oxford_pets" / "images") in str(err.value)


def test_malformed_annotation_line_is_named(tmp_path):
    ds_dir = write_pets(tmp_path)
    (ds_dir / "annotations" / "test.txt").write_text("Bengal_11 3\n")
    with pytest.raises(ValueError, match="test.txt:1"):
        build(OxfordPets, tmp_path)


def test_annotation_class_without_trainval_images_stops_before_writing(tmp_path):
    """test.txt naming a class id that trainval.txt lacks: the built split is refused, unsaved."""
    ds_dir = write_pets(tmp_path)
    test_list = ds_dir / "annotations" / "test.txt"
    test_list.write_text(test_list.read_text() + "Bengal_1 9 1 1\n")
    with pytest.raises(SplitError) as err:
        build(OxfordPets, tmp_path)
    assert '"Bengal_1.jpg", 8, "bengal"]: label 8 has no train images' in str(err.value)
    assert f"the split read from the files under {ds_dir}" in str(err.value)
    assert "DATASETS.md#oxfordpets" in str(err.value)
    assert not (ds_dir / "split_zhou_OxfordPets.json").exists()


CASE = SplitCase(
    OxfordPets, write_pets, ["abyssinian", "american_bulldog", "bengal"],
    (*trainval_counts([TRAINVAL_PER_CLASS] * 3), dict.fromkeys(range(3), TEST_PER_CLASS)),
    missing=("annotations/test.txt", "annotations/trainval.txt"), shots=4,
)
