"""The shared base: split files, few-shot sampling and caching, class subsampling, bad input."""

import json
import os
import pickle
import random

import pytest

from dassl.data.datasets import Datum
from dassl.utils import UnsafePickleError, load_pickle
from datasets.benchmark import BenchmarkDataset, DatasetLayoutError
from datasets.splits import (
    ClassTooSmallError,
    read_and_split_data,
    read_split,
    save_split,
    split_per_class,
    split_trainval,
    subsample_classes,
)
from tests.datasets.conftest import (
    build_from_split_file,
    check_fewshot_cache,
    impaths,
    make_cfg,
    per_class,
    write_class_folders,
    write_split_dataset,
    write_split_file,
)

# Per class: train, val, test images. Class 2 is smaller than the shot counts used below.
SIZES = {"c0": (6, 5, 2), "c1": (6, 5, 2), "c2": (1, 1, 2)}


class Toy(BenchmarkDataset):
    dataset_dir = "toy"
    split_file = "split_zhou_Toy.json"
    image_folder = "images"


class ToyBuilt(Toy):
    """A toy whose split is generated from the class folders when the split file is absent."""

    def build_split(self):
        return read_and_split_data(self.image_dir)


def write_toy(root):
    """Images (``<class>/<split>_<i>.jpg``) plus a split file listing them; returns the split."""
    return write_split_dataset(root / "toy" / "images", root / "toy" / Toy.split_file, SIZES)


def cache_path(root, k=5, seed=1):
    return root / "toy" / "split_fewshot" / f"shot_{k}-seed_{seed}.pkl"


def test_reads_split_file_with_paths_under_the_image_folder(tmp_path):
    split = write_toy(tmp_path)
    ds = Toy(make_cfg(tmp_path, "Toy"))
    image_dir = tmp_path / "toy" / "images"
    assert impaths(ds.train_x) == [str(image_dir / rel) for rel, _, _ in split["train"]]
    assert len(ds.val) == len(split["val"]) and len(ds.test) == len(split["test"])
    assert ds.classnames == ["c0", "c1", "c2"]
    assert ds.num_classes == 3


def test_fewshot_takes_k_train_and_min_k_4_val_per_class_and_warns_for_small_class(
    tmp_path, capsys
):
    write_toy(tmp_path)
    ds = Toy(make_cfg(tmp_path, "Toy", num_shots=5))
    # c2 has one train and one val image: it keeps what it has.
    assert per_class(ds.train_x) == {0: 5, 1: 5, 2: 1}
    assert per_class(ds.val) == {0: 4, 1: 4, 2: 1}
    assert per_class(ds.test) == {0: 2, 1: 2, 2: 2}
    out = capsys.readouterr().out
    assert "class 2 (c2)" in out and "fewer than 5" in out

    data = load_pickle(cache_path(tmp_path))
    assert set(data) == {"train", "val"}
    assert impaths(data["train"]) == impaths(ds.train_x)
    assert impaths(data["val"]) == impaths(ds.val)


def test_second_build_reads_the_fewshot_cache(tmp_path):
    write_toy(tmp_path)
    # c2 has one train and one val image; the others give K = 2 train and min(2, 4) val
    check_fewshot_cache(Toy, tmp_path / "toy", 2, 1, {0: 2, 1: 2, 2: 1}, {0: 2, 1: 2, 2: 1})


def test_fewshot_subset_depends_on_seed_only(tmp_path):
    for name in ("a", "b"):
        write_toy(tmp_path / name)
    random.seed(123)  # whatever state the caller left must not matter
    a = Toy(make_cfg(tmp_path / "a", "Toy", num_shots=2, seed=1))
    random.seed(456)
    b = Toy(make_cfg(tmp_path / "b", "Toy", num_shots=2, seed=1))
    c = Toy(make_cfg(tmp_path / "b", "Toy", num_shots=2, seed=2))

    def rel(ds):
        return [os.path.relpath(p, ds.dataset_dir) for p in impaths(ds.train_x)]

    assert rel(a) == rel(b)
    assert rel(a) != rel(c)
    assert cache_path(tmp_path / "b", k=2, seed=2).is_file()


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_malicious_fewshot_cache_is_refused_before_running_anything(tmp_path):
    write_toy(tmp_path)
    marker = tmp_path / "pwned"
    path = cache_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps({"train": [_Evil(str(marker))], "val": []}))
    with pytest.raises(UnsafePickleError, match="mkdir") as err:
        Toy(make_cfg(tmp_path, "Toy", num_shots=5))
    assert str(path) in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_upstream_style_cache_loads_and_is_rerooted(tmp_path, protocol):
    """Upstream writes Datum objects with absolute paths from the machine that sampled them."""
    write_toy(tmp_path)
    elsewhere = "/home/someone/DATA/toy/images"
    train = [Datum(f"{elsewhere}/c0/train_{i}.jpg", 0, 0, "c0") for i in range(2)]
    val = [Datum(f"{elsewhere}/c0/val_0.jpg", 0, 0, "c0")]
    path = cache_path(tmp_path, k=2)
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps({"train": train, "val": val}, protocol=protocol))

    ds = Toy(make_cfg(tmp_path, "Toy", num_shots=2))
    image_dir = tmp_path / "toy" / "images"
    assert impaths(ds.train_x) == [str(image_dir / f"c0/train_{i}.jpg") for i in range(2)]
    assert impaths(ds.val) == [str(image_dir / "c0/val_0.jpg")]
    assert all(os.path.isfile(p) for p in impaths(ds.train_x))


def test_truncated_cache_gives_a_clear_error(tmp_path):
    write_toy(tmp_path)
    Toy(make_cfg(tmp_path, "Toy", num_shots=5))
    path = cache_path(tmp_path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="corrupt or truncated") as err:
        Toy(make_cfg(tmp_path, "Toy", num_shots=5))
    assert str(path) in str(err.value) and "delete it" in str(err.value)


def test_cache_without_val_is_refused(tmp_path):
    write_toy(tmp_path)
    path = cache_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps({"train": [Datum("x.jpg", 0, 0, "c0")]}))
    with pytest.raises(ValueError, match="keys"):
        Toy(make_cfg(tmp_path, "Toy", num_shots=5))


def test_missing_split_file_without_builder_names_path_and_docs(tmp_path):
    write_toy(tmp_path)
    split = tmp_path / "toy" / Toy.split_file
    split.unlink()
    with pytest.raises(FileNotFoundError) as err:
        Toy(make_cfg(tmp_path, "Toy"))
    assert isinstance(err.value, DatasetLayoutError)
    assert str(split) in str(err.value) and "DATASETS.md#toy" in str(err.value)


def test_missing_dataset_folder_and_empty_root(tmp_path):
    with pytest.raises(DatasetLayoutError, match="dataset folder") as err:
        Toy(make_cfg(tmp_path, "Toy"))
    assert str(tmp_path / "toy") in str(err.value)
    with pytest.raises(DatasetLayoutError, match="DATASET.ROOT is empty"):
        Toy(make_cfg("", "Toy"))


def test_empty_image_folder_is_an_error(tmp_path):
    (tmp_path / "toy" / "images").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="train split is empty"):
        ToyBuilt(make_cfg(tmp_path, "ToyBuilt"))


@pytest.mark.parametrize(
    ("subsample", "labels", "names"), [("base", {0, 1}, ["c0", "c1"]), ("new", {0}, ["c2"])]
)
def test_subsample_classes_base_and_new(tmp_path, subsample, labels, names):
    write_toy(tmp_path)
    ds = Toy(make_cfg(tmp_path, "Toy", subsample=subsample))
    assert ds.classnames == names
    for items in (ds.train_x, ds.val, ds.test):
        assert set(per_class(items)) == labels
    assert len(ds.test) == 2 * len(labels)


def test_subsample_rejects_unknown_choice():
    with pytest.raises(ValueError, match="SUBSAMPLE_CLASSES"):
        subsample_classes([], subsample="half")


def test_persist_false_writes_nothing(tmp_path):
    write_class_folders(tmp_path / "toy" / "images", {"a": 10, "b": 10})
    before = sorted(p for p in tmp_path.rglob("*"))
    ds = ToyBuilt(make_cfg(tmp_path, "ToyBuilt", num_shots=1), persist=False)
    assert len(ds.train_x) == 2
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_generated_split_is_written_relative_and_read_back(tmp_path):
    write_class_folders(tmp_path / "toy" / "images", {"a": 10, "b": 10})
    first = ToyBuilt(make_cfg(tmp_path, "ToyBuilt"))
    split = json.loads((tmp_path / "toy" / Toy.split_file).read_text())
    assert {len(split[k]) for k in ("train", "val", "test")} == {4, 6, 10}
    assert all(
        not rel.startswith("/") and rel.split("/")[0] in "ab" for rel, _, _ in split["train"]
    )

    second = build_from_split_file(ToyBuilt, tmp_path)
    assert impaths(second.test) == impaths(first.test)


def test_read_and_split_data_is_deterministic_and_proportional(tmp_path):
    write_class_folders(tmp_path, {"b": 10, "a": 20})
    (tmp_path / "notes.txt").write_text("not a class")
    random.seed(0)
    first = read_and_split_data(str(tmp_path))
    random.seed(99)
    second = read_and_split_data(str(tmp_path))
    assert [impaths(s) for s in first] == [impaths(s) for s in second]
    train, val, test = first
    # a: 20 images -> 10/4/6, label 0 (sorted folder order); b: 10 -> 5/2/3
    assert per_class(train) == {0: 10, 1: 5}
    assert per_class(val) == {0: 4, 1: 2}
    assert per_class(test) == {0: 6, 1: 3}
    assert len(set(impaths(train)) | set(impaths(val)) | set(impaths(test))) == 30


def test_read_and_split_data_refuses_a_class_too_small_to_split(tmp_path):
    write_class_folders(tmp_path, {"ok": 10, "tiny": 2})
    with pytest.raises(ValueError, match="tiny.*2 images"):
        read_and_split_data(str(tmp_path))


def test_split_trainval_keeps_a_val_item_per_class():
    items = [Datum(f"{c}{i}.jpg", label, 0, c) for label, c in enumerate("xyz") for i in range(3)]
    items.append(Datum("w.jpg", 3, 0, "w"))
    train, val = split_trainval(items)
    # round(3 * 0.2) = 1 val per class; the single-item class stays in train
    assert per_class(val) == {0: 1, 1: 1, 2: 1}
    assert per_class(train) == {0: 2, 1: 2, 2: 2, 3: 1}
    assert impaths(split_trainval(items)[1]) == impaths(val)


def test_save_and_read_split_round_trip(tmp_path):
    prefix = tmp_path / "images"
    items = [
        Datum(str(prefix / "a" / "1.jpg"), 0, 0, "a"),
        Datum(str(prefix / "b" / "2.jpg"), 1, 0, "b"),
    ]
    path = tmp_path / "split.json"
    save_split(items[:1], items[1:], items, str(path), str(prefix))
    assert json.loads(path.read_text())["train"] == [["a/1.jpg", 0, "a"]]
    train, val, test = read_split(str(path), str(prefix))
    assert impaths(test) == impaths(items) and [d.label for d in val] == [1]


def test_malformed_split_file_is_named(tmp_path):
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": [["a.jpg", 0]], "val": [], "test": []}))
    with pytest.raises(ValueError, match="not \\[relpath, label, classname\\]"):
        read_split(str(path), str(tmp_path))
    path.write_text(json.dumps({"train": []}))
    with pytest.raises(ValueError, match="keys"):
        read_split(str(path), str(tmp_path))


def test_empty_image_folder_writes_no_split_and_recovers_once_images_exist(tmp_path):
    """An empty build must not leave an empty split file that every later run would read."""
    image_dir = tmp_path / "toy" / "images"
    image_dir.mkdir(parents=True)
    with pytest.raises(DatasetLayoutError) as err:
        ToyBuilt(make_cfg(tmp_path, "ToyBuilt"))
    assert str(image_dir) in str(err.value) and "DATASETS.md#toybuilt" in str(err.value)
    assert not (tmp_path / "toy" / Toy.split_file).exists()

    write_class_folders(image_dir, {"a": 10, "b": 10})
    ds = ToyBuilt(make_cfg(tmp_path, "ToyBuilt"))
    assert per_class(ds.train_x) == {0: 5, 1: 5}
    assert (tmp_path / "toy" / Toy.split_file).is_file()


@pytest.mark.parametrize(
    ("cls", "fix"),
    [(ToyBuilt, "delete it and the next run rebuilds it"), (Toy, "cannot rebuild it")],
)
def test_split_file_with_empty_train_names_file_and_fix(tmp_path, cls, fix):
    """Such a file may be left by older versions; the error says what to do with it."""
    (tmp_path / "toy" / "images").mkdir(parents=True)
    split = write_split_file(tmp_path / "toy" / Toy.split_file, [], [], [])
    with pytest.raises(DatasetLayoutError, match="lists no train images") as err:
        cls(make_cfg(tmp_path, cls.__name__))
    assert str(split) in str(err.value) and fix in str(err.value)


def _truncated(path):
    text = json.dumps({"train": [["a/1.jpg", 0, "a"]], "val": [], "test": []})
    path.write_text(text[: len(text) // 2])


def _not_utf8(path):
    path.write_bytes(b"\xff\xfe\x00garbage")


@pytest.mark.parametrize("corrupt", [_truncated, _not_utf8])
def test_corrupt_split_file_names_file_and_fix(tmp_path, corrupt):
    path = tmp_path / "split.json"
    corrupt(path)
    with pytest.raises(ValueError, match="truncated or corrupt") as err:
        read_split(str(path), str(tmp_path))
    assert str(path) in str(err.value) and "re-download it" in str(err.value)
    assert not isinstance(err.value, json.JSONDecodeError)


@pytest.mark.parametrize(
    ("cls", "fix"),
    [
        (ToyBuilt, "delete it and the next run rebuilds it from the raw files"),
        (Toy, "re-download the published split_zhou_Toy.json"),
    ],
)
def test_truncated_split_file_in_a_dataset_says_whether_it_can_be_rebuilt(tmp_path, cls, fix):
    write_toy(tmp_path)
    path = tmp_path / "toy" / Toy.split_file
    path.write_text(path.read_text()[:50])
    with pytest.raises(ValueError, match="truncated or corrupt") as err:
        cls(make_cfg(tmp_path, cls.__name__))
    assert str(path) in str(err.value) and fix in str(err.value)
    assert "DATASETS.md#" in str(err.value)
    assert len(path.read_text()) == 50  # the file is left for the user to decide


@pytest.mark.parametrize(
    "content",
    [
        [],  # not an object
        {"train": [], "val": []},  # no "test"
        {"train": {"a/1.jpg": 0}, "val": [], "test": []},  # not a list of rows
        {"train": ["abc"], "val": [], "test": []},  # a string is not a row
        {"train": [["a/1.jpg", "0", "a"]], "val": [], "test": []},  # label not an integer
        {"train": [["a/1.jpg", 0.5, "a"]], "val": [], "test": []},
        {"train": [["a/1.jpg", 0, None]], "val": [], "test": []},  # classname not a string
        {"train": [[3, 0, "a"]], "val": [], "test": []},  # path not a string
        {"train": [], "val": [], "test": [["a/1.jpg", 0, "a", "extra"]]},
    ],
)
def test_wrongly_shaped_split_file_names_file_and_fix(tmp_path, content):
    path = tmp_path / "split.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError) as err:
        read_split(str(path), str(tmp_path), fix="FIX-IT")
    assert str(path) in str(err.value) and str(err.value).endswith("FIX-IT")


def test_split_per_class_is_seeded_proportional_and_in_label_order():
    items = {
        label: [Datum(f"{label}_{i}.jpg", label, 0, f"c{label}") for i in range(n)]
        for label, n in ((2, 10), (0, 20))
    }
    random.seed(0)
    first = split_per_class(items)
    random.seed(99)  # the global RNG must not matter
    assert [impaths(s) for s in split_per_class(items)] == [impaths(s) for s in first]
    assert [impaths(s) for s in split_per_class(items, seed=2)] != [impaths(s) for s in first]
    train, val, test = first
    # label 0 (20 items) -> 10/4/6 first, then label 2 (10 items) -> 5/2/3
    assert [d.label for d in train] == [0] * 10 + [2] * 5
    assert per_class(val) == {0: 4, 2: 2} and per_class(test) == {0: 6, 2: 3}
    assert sorted(impaths(train + val + test)) == sorted(
        d.impath for group in items.values() for d in group
    )


def test_split_per_class_refuses_a_class_too_small_to_split():
    items = {0: [Datum(f"{i}.jpg", 0, 0, "a") for i in range(10)], 1: [Datum("x.jpg", 1, 0, "b")]}
    with pytest.raises(ClassTooSmallError, match="class 1 has 1 images") as err:
        split_per_class(items)
    assert (err.value.label, err.value.count) == (1, 1)


def test_read_and_split_data_is_split_per_class_over_the_folders(tmp_path):
    write_class_folders(tmp_path, {"b": 7, "a": 12, "c": 9})
    by_label = {
        label: [
            Datum(str(tmp_path / c / name), label, 0, c)
            for name in sorted(os.listdir(tmp_path / c))
        ]
        for label, c in enumerate("abc")
    }
    expected = split_per_class(by_label, 0.5, 0.2, seed=3)
    got = read_and_split_data(str(tmp_path), seed=3)
    assert [impaths(s) for s in got] == [impaths(s) for s in expected]
    assert [[d.label for d in s] for s in got] == [[d.label for d in s] for s in expected]
