"""ImageNet: images/{train,val}/<wnid>/, classnames.txt, preprocessed.pkl and few-shot caches."""

import pytest

import datasets.imagenet as imagenet_module
from dassl.utils import load_pickle
from datasets.benchmark import DatasetLayoutError
from datasets.imagenet import ImageNet
from tests.datasets.conftest import impaths, make_cfg, per_class, write_image

# classnames.txt lists wnids in sorted order, as the real file does
CLASSNAMES = [("n01440764", "tench"), ("n01443537", "goldfish"), ("n01484850", "great white shark")]
TRAIN_PER_CLASS, VAL_PER_CLASS = 4, 2


def write_classnames(path, entries=CLASSNAMES):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{wnid} {name}\n" for wnid, name in entries))


def write_imagenet(root):
    ds_dir = root / "imagenet"
    for wnid, _ in CLASSNAMES:
        for i in range(TRAIN_PER_CLASS):
            write_image(ds_dir / "images" / "train" / wnid / f"{wnid}_{i}.JPEG", shade=i)
        for i in range(VAL_PER_CLASS):
            write_image(ds_dir / "images" / "val" / wnid / f"ILSVRC2012_val_{wnid}_{i}.JPEG")
    write_classnames(ds_dir / "classnames.txt")
    return ds_dir


def test_reads_folders_with_clip_names_and_val_as_test(tmp_path):
    ds_dir = write_imagenet(tmp_path)
    ds = ImageNet(make_cfg(tmp_path, "ImageNet"))
    assert ds.classnames == [name for _, name in CLASSNAMES]
    assert per_class(ds.train_x) == {k: TRAIN_PER_CLASS for k in range(3)}
    assert per_class(ds.test) == {k: VAL_PER_CLASS for k in range(3)}
    assert impaths(ds.val) == impaths(ds.test)
    assert all("/images/val/" in p for p in impaths(ds.test))

    cached = load_pickle(ds_dir / "preprocessed.pkl")
    assert set(cached) == {"train", "test"}
    assert impaths(cached["train"]) == impaths(ds.train_x)


def test_second_build_reads_preprocessed_pickle(tmp_path, monkeypatch):
    write_imagenet(tmp_path)
    first = ImageNet(make_cfg(tmp_path, "ImageNet"))

    def no_listing(*args, **kwargs):
        raise AssertionError("preprocessed.pkl should have been read")

    monkeypatch.setattr(imagenet_module, "read_wnid_folders", no_listing)
    second = ImageNet(make_cfg(tmp_path, "ImageNet"))
    assert impaths(second.train_x) == impaths(first.train_x)
    assert second.classnames == first.classnames


def test_fewshot_samples_train_only_and_caches_it(tmp_path, monkeypatch):
    ds_dir = write_imagenet(tmp_path)
    ds = ImageNet(make_cfg(tmp_path, "ImageNet", num_shots=2))
    assert per_class(ds.train_x) == {k: 2 for k in range(3)}
    assert per_class(ds.val) == {k: VAL_PER_CLASS for k in range(3)}  # the full val set
    cache = load_pickle(ds_dir / "split_fewshot" / "shot_2-seed_1.pkl")
    assert set(cache) == {"train"}  # upstream ImageNet caches train only

    monkeypatch.setattr(ImageNet, "generate_fewshot_dataset", lambda *a, **k: pytest.fail())
    again = ImageNet(make_cfg(tmp_path, "ImageNet", num_shots=2))
    assert impaths(again.train_x) == impaths(ds.train_x)


def test_subsample_new_classes(tmp_path):
    write_imagenet(tmp_path)
    ds = ImageNet(make_cfg(tmp_path, "ImageNet", subsample="new"))
    assert ds.classnames == ["great white shark"]
    assert per_class(ds.test) == {0: VAL_PER_CLASS}


def test_missing_classnames_names_it(tmp_path):
    ds_dir = write_imagenet(tmp_path)
    (ds_dir / "classnames.txt").unlink()
    with pytest.raises(DatasetLayoutError) as err:
        ImageNet(make_cfg(tmp_path, "ImageNet"))
    assert str(ds_dir / "classnames.txt") in str(err.value)
    assert "DATASETS.md#imagenet" in str(err.value)


def test_folder_missing_from_classnames_is_named(tmp_path):
    ds_dir = write_imagenet(tmp_path)
    write_classnames(ds_dir / "classnames.txt", CLASSNAMES[:2])
    with pytest.raises(ValueError, match="n01484850"):
        ImageNet(make_cfg(tmp_path, "ImageNet"))


def test_empty_train_folder_writes_no_preprocessed_pickle(tmp_path):
    """Otherwise every later run would read the empty lists back from preprocessed.pkl."""
    ds_dir = write_imagenet(tmp_path)
    for wnid, _ in CLASSNAMES:
        for image in (ds_dir / "images" / "train" / wnid).iterdir():
            image.unlink()
        (ds_dir / "images" / "train" / wnid).rmdir()
    with pytest.raises(DatasetLayoutError, match="train split is empty") as err:
        ImageNet(make_cfg(tmp_path, "ImageNet"))
    assert str(ds_dir / "images") in str(err.value) and "DATASETS.md#imagenet" in str(err.value)
    assert not (ds_dir / "preprocessed.pkl").exists()


def test_repeated_class_names_load(tmp_path):
    """CLIP's ImageNet names repeat a few; labels come from the wnid folders, not the names."""
    ds_dir = write_imagenet(tmp_path)
    write_classnames(ds_dir / "classnames.txt", [(wnid, "missile") for wnid, _ in CLASSNAMES])
    assert ImageNet(make_cfg(tmp_path, "ImageNet")).classnames == ["missile"] * 3
