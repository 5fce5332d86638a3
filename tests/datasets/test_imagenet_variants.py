"""The test-only ImageNet shift sets: V2 (label-numbered folders), Sketch (1000 wnid folders),
A and R (200-class subsets in wnid folders); all take ImageNet's class names."""

import pytest

from datasets.benchmark import DatasetLayoutError
from datasets.imagenet_a import ImageNetA
from datasets.imagenet_r import ImageNetR
from datasets.imagenet_sketch import ImageNetSketch
from datasets.imagenetv2 import ImageNetV2
from datasets.splits import SplitError
from tests.datasets.conftest import make_cfg, per_class, write_image
from tests.datasets.test_imagenet import CLASSNAMES, write_classnames

SUBSET = [CLASSNAMES[0], CLASSNAMES[2]]  # A and R hold a subset of ImageNet's classes
PER_CLASS = 3


def write_wnid_folders(image_dir, entries):
    for wnid, _ in entries:
        for i in range(PER_CLASS):
            write_image(image_dir / wnid / f"{i}.jpg", shade=i)


def check_test_only(ds, names):
    assert ds.classnames == names
    assert per_class(ds.test) == {k: PER_CLASS for k in range(len(names))}
    assert ds.train_x == ds.test and not ds.val


def test_imagenetv2_maps_label_folders_to_classnames(tmp_path):
    ds_dir = tmp_path / "imagenetv2"
    for label in range(len(CLASSNAMES)):
        for i in range(PER_CLASS):
            write_image(
                ds_dir / "imagenetv2-matched-frequency-format-val" / str(label) / f"{i}.jpeg"
            )
    write_classnames(ds_dir / "classnames.txt")
    ds = ImageNetV2(make_cfg(tmp_path, "ImageNetV2", num_shots=1))  # shots do not apply
    check_test_only(ds, [name for _, name in CLASSNAMES])
    assert [d.impath.split("/")[-2] for d in ds.test if d.label == 2] == ["2"] * PER_CLASS
    assert not (ds_dir / "split_fewshot").exists()


def test_imagenetv2_missing_label_folder_is_named(tmp_path):
    ds_dir = tmp_path / "imagenetv2"
    write_image(ds_dir / "imagenetv2-matched-frequency-format-val" / "0" / "a.jpeg")
    write_classnames(ds_dir / "classnames.txt")
    with pytest.raises(DatasetLayoutError, match="class 1 folder"):
        ImageNetV2(make_cfg(tmp_path, "ImageNetV2"))


def test_imagenet_sketch_reads_wnid_folders(tmp_path):
    ds_dir = tmp_path / "imagenet-sketch"
    write_wnid_folders(ds_dir / "images", CLASSNAMES)
    write_classnames(ds_dir / "classnames.txt")
    check_test_only(
        ImageNetSketch(make_cfg(tmp_path, "ImageNetSketch")), [n for _, n in CLASSNAMES]
    )


@pytest.mark.parametrize(
    ("cls", "folder", "image_folder"),
    [
        (ImageNetA, "imagenet-adversarial", "imagenet-a"),
        (ImageNetR, "imagenet-rendition", "imagenet-r"),
    ],
)
def test_200_class_subsets_use_imagenet_names_and_ignore_readme(
    tmp_path, cls, folder, image_folder
):
    image_dir = tmp_path / folder / image_folder
    write_wnid_folders(image_dir, SUBSET)
    (image_dir / "README.txt").write_text("about this dataset")
    write_classnames(tmp_path / folder / "classnames.txt")
    ds = cls(make_cfg(tmp_path, cls.__name__, num_shots=2, subsample="base"))
    check_test_only(ds, ["tench", "great white shark"])


def test_classnames_fall_back_to_the_imagenet_folder(tmp_path):
    write_wnid_folders(tmp_path / "imagenet-rendition" / "imagenet-r", SUBSET)
    write_classnames(tmp_path / "imagenet" / "classnames.txt")
    ds = ImageNetR(make_cfg(tmp_path, "ImageNetR"))
    assert ds.classnames == ["tench", "great white shark"]


def test_missing_classnames_names_the_expected_copy(tmp_path):
    write_wnid_folders(tmp_path / "imagenet-adversarial" / "imagenet-a", SUBSET)
    with pytest.raises(DatasetLayoutError) as err:
        ImageNetA(make_cfg(tmp_path, "ImageNetA"))
    assert str(tmp_path / "imagenet-adversarial" / "classnames.txt") in str(err.value)
    assert "DATASETS.md#imageneta" in str(err.value)


def test_missing_image_folder_names_it(tmp_path):
    write_classnames(tmp_path / "imagenet-sketch" / "classnames.txt")
    with pytest.raises(FileNotFoundError) as err:
        ImageNetSketch(make_cfg(tmp_path, "ImageNetSketch"))
    assert str(tmp_path / "imagenet-sketch" / "images") in str(err.value)
    assert "DATASETS.md#imagenetsketch" in str(err.value)


def test_empty_class_folder_is_an_error_not_a_shifted_class_list(tmp_path):
    """Labels follow the folders; a folder without images would leave a gap in the labels and
    shift every later class name onto the wrong classifier row."""
    image_dir = tmp_path / "imagenet-rendition" / "imagenet-r"
    write_wnid_folders(image_dir, CLASSNAMES)
    for f in (image_dir / CLASSNAMES[1][0]).iterdir():
        f.unlink()
    write_classnames(tmp_path / "imagenet-rendition" / "classnames.txt")
    with pytest.raises(SplitError) as err:
        ImageNetR(make_cfg(tmp_path, "ImageNetR"))
    message = str(err.value)
    assert f"ImageNetR: the split read from the files under {tmp_path / 'imagenet-rendition'}" in (
        message
    )
    assert 'the "test" labels must run 0..1 without gaps' in message
    assert f'"{CLASSNAMES[2][0]}/0.jpg", 2, "great white shark"]' in message
    assert "DATASETS.md#imagenetr" in message


def test_repeated_imagenet_class_names_are_allowed(tmp_path):
    """CLIP's ImageNet names repeat a few (two classes are both "missile")."""
    entries = [(CLASSNAMES[0][0], "missile"), (CLASSNAMES[1][0], "missile")]
    write_wnid_folders(tmp_path / "imagenet-sketch" / "images", entries)
    write_classnames(tmp_path / "imagenet-sketch" / "classnames.txt", entries)
    assert ImageNetSketch(make_cfg(tmp_path, "ImageNetSketch")).classnames == ["missile"] * 2
