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
    SplitError,
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
    write_image,
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


def upstream_draw(elsewhere, k=2):
    """A k-shot draw of the toy split as upstream writes it: Datum objects with absolute paths
    from the machine that sampled them; class c2 has one train and one val image."""
    def part(key, n):
        return [
            Datum(f"{elsewhere}/{c}/{key}_{i}.jpg", label, 0, c)
            for label, c in enumerate(SIZES)
            for i in range(min(n, SIZES[c][0 if key == "train" else 1]))
        ]

    return {"train": part("train", k), "val": part("val", min(k, 4))}


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_upstream_style_cache_loads_and_is_rerooted(tmp_path, monkeypatch, protocol):
    write_toy(tmp_path)
    draw = upstream_draw("/home/someone/DATA/toy/images")
    path = cache_path(tmp_path, k=2)
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps(draw, protocol=protocol))

    monkeypatch.setattr(Toy, "generate_fewshot_dataset", lambda *a, **k: pytest.fail("resampled"))
    ds = Toy(make_cfg(tmp_path, "Toy", num_shots=2))
    image_dir = tmp_path / "toy" / "images"
    rel = len("/home/someone/DATA/toy/images/")
    assert impaths(ds.train_x) == [str(image_dir / d.impath[rel:]) for d in draw["train"]]
    assert impaths(ds.val) == [str(image_dir / d.impath[rel:]) for d in draw["val"]]
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
        Datum(str(prefix / "b" / "3.jpg"), 1, 0, "b"),
    ]
    path = tmp_path / "split.json"
    save_split(items[:2], items[2:], items[1:], str(path), str(prefix))
    assert json.loads(path.read_text())["train"] == [["a/1.jpg", 0, "a"], ["b/2.jpg", 1, "b"]]
    train, val, test = read_split(str(path), str(prefix))
    assert impaths(test) == impaths(items[1:]) and [d.label for d in val] == [1]


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


# ----- stale and unseeded few-shot caches ---------------------------------------------------------


def relpaths(ds):
    image_dir = os.path.join(ds.image_dir, "")
    return [p.removeprefix(image_dir) for p in impaths(ds.train_x) + impaths(ds.val)]


def rewrite_split(root, change):
    """Apply ``change`` to the toy split file's dict and write it back."""
    path = root / "toy" / Toy.split_file
    split = json.loads(path.read_text())
    change(split)
    path.write_text(json.dumps(split))


def test_cache_drawn_from_swapped_parts_is_drawn_again_and_replaced(tmp_path, capsys):
    """The issue's case: train and test swapped after the cache was written."""
    write_toy(tmp_path)
    Toy(make_cfg(tmp_path, "Toy", num_shots=2))
    old = cache_path(tmp_path, k=2).read_bytes()
    rewrite_split(tmp_path, lambda s: s.update(train=s["test"], test=s["train"]))
    capsys.readouterr()

    ds = Toy(make_cfg(tmp_path, "Toy", num_shots=2))
    out = capsys.readouterr().out
    # the cache held 2 + 2 + 1 train images of the old train part, none in the new one
    assert "does not match the current split: 5 of its 5 train items are not in" in out
    assert '"c0/train_' in out and "Sampling again with SEED 1" in out
    split = json.loads((tmp_path / "toy" / Toy.split_file).read_text())
    assert set(relpaths(ds)[: len(ds.train_x)]) <= {rel for rel, _, _ in split["train"]}
    assert cache_path(tmp_path, k=2).read_bytes() != old
    assert impaths(load_pickle(cache_path(tmp_path, k=2))["train"]) == impaths(ds.train_x)
    assert not [p for p in cache_path(tmp_path, k=2).parent.iterdir() if p.suffix == ".tmp"]

    # what was drawn again is what a fresh folder draws with the same seed
    write_toy(tmp_path / "fresh")
    rewrite_split(tmp_path / "fresh", lambda s: s.update(train=s["test"], test=s["train"]))
    assert relpaths(Toy(make_cfg(tmp_path / "fresh", "Toy", num_shots=2))) == relpaths(ds)


def _swap_labels_of_c0_and_c1(split, root):
    for rows in split.values():
        for row in rows:
            if row[1] in (0, 1):
                row[1] = 1 - row[1]


def _rename_c0(split, root):
    for rows in split.values():
        for row in rows:
            if row[2] == "c0":
                row[2] = "cat"


def _add_class(split, root):
    for key in ("train", "val", "test"):
        for i in range(3):
            write_image(root / "toy" / "images" / "c3" / f"{key}_{i}.jpg")
            split[key].append([f"c3/{key}_{i}.jpg", 3, "c3"])


def _grow_small_class(split, root):
    """c2 had 1 train image (fewer than K = 2, so the draw kept it); now it has 3."""
    for i in (1, 2):
        write_image(root / "toy" / "images" / "c2" / f"train_{i}.jpg")
        split["train"].append([f"c2/train_{i}.jpg", 2, "c2"])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_swap_labels_of_c0_and_c1, "4 of its 5 train items are not in the split's train part"),
        (_rename_c0, 'same label and class name, e.g. ["c0/train_'),
        (_add_class, "class 3 has 0 cached train items, but a 2-shot draw from its 3 train"),
        (_grow_small_class, "class 2 has 1 cached train items, but a 2-shot draw from its 3"),
    ],
    ids=["labels-swapped", "renamed", "class-added", "class-grown"],
)
def test_cache_not_matching_labels_names_or_classes_is_drawn_again(
    tmp_path, capsys, change, expected
):
    write_toy(tmp_path)
    Toy(make_cfg(tmp_path, "Toy", num_shots=2))
    rewrite_split(tmp_path, lambda split: change(split, tmp_path))
    capsys.readouterr()
    Toy(make_cfg(tmp_path, "Toy", num_shots=2))
    out = capsys.readouterr().out
    assert expected in out and "Sampling again with SEED 1" in out


def test_cache_repeating_an_image_is_drawn_again(tmp_path, capsys):
    """Each cached item is in the split and the class counts are right, but one image is there
    twice: no draw does that."""
    write_toy(tmp_path)
    draw = upstream_draw(str(tmp_path / "toy" / "images"))
    draw["train"][1] = draw["train"][0]
    path = cache_path(tmp_path, k=2)
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps(draw))
    ds = Toy(make_cfg(tmp_path, "Toy", num_shots=2))
    assert "its train items repeat an image, which a draw never does" in capsys.readouterr().out
    assert len(set(impaths(ds.train_x))) == len(ds.train_x) == 5


def test_matching_cache_is_used_under_subsample_classes(tmp_path, monkeypatch):
    """The cache holds the draw before class subsampling and is checked before it too, so a
    base/new run reads the cache an all-classes run wrote (the labels differ only afterwards)."""
    write_toy(tmp_path)
    first = Toy(make_cfg(tmp_path, "Toy", num_shots=2))
    monkeypatch.setattr(Toy, "generate_fewshot_dataset", lambda *a, **k: pytest.fail("resampled"))
    new = Toy(make_cfg(tmp_path, "Toy", num_shots=2, subsample="new"))
    assert impaths(new.train_x) == [d.impath for d in first.train_x if d.label == 2]
    assert {d.label for d in new.train_x} == {0}


def test_stale_cache_is_not_rewritten_without_persist(tmp_path):
    write_toy(tmp_path)
    Toy(make_cfg(tmp_path, "Toy", num_shots=2))
    before = cache_path(tmp_path, k=2).read_bytes()
    rewrite_split(tmp_path, lambda s: s.update(train=s["test"], test=s["train"]))
    ds = Toy(make_cfg(tmp_path, "Toy", num_shots=2), persist=False)
    assert cache_path(tmp_path, k=2).read_bytes() == before
    assert all(rel.split("/")[1].startswith("test_") for rel in relpaths(ds)[: len(ds.train_x)])


def test_unseeded_runs_draw_afresh_and_touch_no_cache(tmp_path, capsys):
    write_toy(tmp_path)
    # a shared seed_-1 cache (as older versions wrote) is neither read nor replaced
    unseeded = cache_path(tmp_path, k=2, seed=-1)
    unseeded.parent.mkdir(parents=True)
    unseeded.write_bytes(b"not read")
    draws = []
    for state in (10, 11, 12):
        random.seed(state)  # what an unseeded process starts from: different every time
        draws.append(impaths(Toy(make_cfg(tmp_path, "Toy", num_shots=2, seed=-1)).train_x))
    assert len({tuple(d) for d in draws}) > 1
    assert unseeded.read_bytes() == b"not read"
    assert sorted(p.name for p in unseeded.parent.iterdir()) == ["shot_2-seed_-1.pkl"]
    out = capsys.readouterr().out
    assert "SEED is -1 (unseeded run): drawing a fresh 2-shot subset" in out
    assert "set --seed to reuse a cached draw" in out


# ----- split checks -----------------------------------------------------------------------------

TOY_FIX = "re-download the published split_zhou_Toy.json (see DATASETS.md#toy)"


def build_bad_toy(root, change):
    """Build Toy after ``change``d its split file; the SplitError's message."""
    write_toy(root)
    rewrite_split(root, change)
    with pytest.raises(SplitError) as err:
        Toy(make_cfg(root, "Toy"))
    message = str(err.value)
    assert f'Toy: split file "{root / "toy" / Toy.split_file}"' in message
    assert message.endswith(TOY_FIX + "; this dataset cannot rebuild it from raw files")
    return message


def test_test_label_without_train_images_is_an_error_not_a_wrong_prediction(tmp_path):
    message = build_bad_toy(tmp_path, lambda s: s["test"][3].__setitem__(1, 99))
    assert 'test[3] ["c1/test_1.jpg", 99, "c1"]: label 99 has no train images' in message
    assert "not a class of this split (0..2)" in message


def test_train_label_out_of_range_is_an_error_before_anything_trains(tmp_path):
    """Today a train label of 99 crashes mid-run with a bare IndexError."""
    message = build_bad_toy(tmp_path, lambda s: [r.__setitem__(1, 99) for r in s["train"][12:]])
    assert 'the "train" labels must run 0..2 without gaps' in message
    assert "label(s) 2 have no train images and label(s) 99 are beyond" in message
    assert 'e.g. train[12] ["c2/train_0.jpg", 99, "c2"]' in message


def test_label_with_two_class_names_is_an_error(tmp_path):
    message = build_bad_toy(tmp_path, lambda s: s["val"][5].__setitem__(2, "dog"))
    assert 'val[5] ["c1/val_0.jpg", 1, "dog"]: label 1 has another class name in' in message
    assert 'train[6] ["c1/train_0.jpg", 1, "c1"]; one label, one class name' in message


def test_class_name_with_two_labels_is_an_error(tmp_path):
    """Every label-2 row named "c0": each label has one name, but two labels share it."""

    def rename(split):
        for rows in split.values():
            for row in rows:
                if row[1] == 2:
                    row[2] = "c0"

    message = build_bad_toy(tmp_path, rename)
    assert 'train[12] ["c2/train_0.jpg", 2, "c0"]: class name "c0" has another label in ' in message
    assert 'train[0] ["c0/train_0.jpg", 0, "c0"]; one class name, one label' in message


def test_repeated_row_within_a_part_is_an_error(tmp_path):
    message = build_bad_toy(tmp_path, lambda s: s["val"].append(list(s["val"][2])))
    assert 'val[11] ["c0/val_2.jpg", 0, "c0"] repeats val[2]' in message


def test_many_problems_are_listed_up_to_eight_then_counted(tmp_path):
    message = build_bad_toy(tmp_path, lambda s: s["val"].extend([list(s["val"][0])] * 10))
    assert "(10 problem(s))" in message
    assert "val[18] " in message and "val[19] " not in message and "... and 2 more" in message


@pytest.mark.parametrize("bad", ["/etc/passwd", "../split_zhou_Toy.json", "c0/../../x.jpg"])
def test_split_path_leaving_the_image_folder_is_an_error(tmp_path, bad):
    write_toy(tmp_path)
    rewrite_split(tmp_path, lambda s: s["test"][0].__setitem__(0, bad))
    with pytest.raises(ValueError) as err:
        Toy(make_cfg(tmp_path, "Toy"))
    message = str(err.value)
    assert str(tmp_path / "toy" / Toy.split_file) in message
    assert f"row test[0] ['{bad}', 0, 'c0'] has a path that leaves the image folder" in message
    assert TOY_FIX in message


def test_train_test_overlap_is_a_warning(tmp_path, capsys):
    write_toy(tmp_path)
    rewrite_split(tmp_path, lambda s: s["test"].append(list(s["train"][1])))
    ds = Toy(make_cfg(tmp_path, "Toy"))
    out = capsys.readouterr().out
    assert "Warning: Toy: split file" in out
    assert '1 image(s) are in both train and test, e.g. train[1] ["c0/train_1.jpg", 0, "c0"]' in out
    assert "and test[6]" in out and "remove them from one part" in out
    assert len(ds.split_warnings) == 1 and len(ds.test) == 7


def test_read_split_checks_the_rows_it_reads(tmp_path, capsys):
    """read_split is usable on its own (custom datasets) and checks as a run does."""
    path = write_split_file(
        tmp_path / "split.json",
        [["a/1.jpg", 0, "a"], ["b/1.jpg", 1, "b"]],
        [],
        [["a/1.jpg", 0, "a"], ["b/2.jpg", 2, "b"]],
    )
    with pytest.raises(SplitError, match=r'test\[1\] \["b/2.jpg", 2, "b"\]: label 2') as err:
        read_split(str(path), str(tmp_path), fix="FIX-IT")
    assert str(path) in str(err.value) and str(err.value).endswith("Fix: FIX-IT")
    write_split_file(path, [["a/1.jpg", 0, "a"]], [], [["a/1.jpg", 0, "a"]])
    read_split(str(path), str(tmp_path))
    assert "1 image(s) are in both train and test" in capsys.readouterr().out


def test_built_split_failing_the_checks_is_not_written(tmp_path):
    """A split built from the raw files is checked before it is saved."""

    class ToyGap(ToyBuilt):
        def build_split(self):
            train, val, test = super().build_split()
            return train, val, [Datum(d.impath, d.label + 5, 0, d.classname) for d in test]

    write_class_folders(tmp_path / "toy" / "images", {"a": 10, "b": 10})
    with pytest.raises(SplitError) as err:
        ToyGap(make_cfg(tmp_path, "ToyGap"))
    assert f"ToyGap: the split read from the files under {tmp_path / 'toy'}" in str(err.value)
    assert "label 5 has no train images" in str(err.value)
    assert "DATASETS.md#toygap" in str(err.value)
    assert not (tmp_path / "toy" / Toy.split_file).exists()


# ----- folders the split needs ------------------------------------------------------------------


def test_only_the_folders_the_split_lists_are_required(tmp_path):
    write_toy(tmp_path)
    image_dir = tmp_path / "toy" / "images"
    for f in (image_dir / "c1").iterdir():
        f.unlink()
    (image_dir / "c1").rmdir()
    with pytest.raises(DatasetLayoutError) as err:
        Toy(make_cfg(tmp_path, "Toy"))
    message = str(err.value)
    assert f"folder of images listed by split_zhou_Toy.json: {image_dir / 'c1'}" in message
    assert "DATASETS.md#toy" in message

    # a split that does not list c1 needs no c1 folder
    rewrite_split(
        tmp_path,
        lambda s: [s.__setitem__(k, [r for r in s[k] if r[2] != "c1"]) for k in list(s)],
    )
    rewrite_split(
        tmp_path, lambda s: [r.__setitem__(1, 1) for k in s for r in s[k] if r[2] == "c2"]
    )
    assert Toy(make_cfg(tmp_path, "Toy")).classnames == ["c0", "c2"]


def test_missing_folder_is_named_at_its_top(tmp_path):
    """A missing subtree is named once, at its topmost missing folder."""
    write_split_dataset(
        tmp_path / "toy" / "images",
        tmp_path / "toy" / Toy.split_file,
        {"a": (2, 1, 1), "b": (2, 1, 1)},
        relpath=lambda folder, key, i: f"deep/{folder}/{key}/{i}.jpg",
    )
    deep = tmp_path / "toy" / "images" / "deep"
    deep.rename(tmp_path / "elsewhere")
    with pytest.raises(DatasetLayoutError) as err:
        Toy(make_cfg(tmp_path, "Toy"))
    assert str(err.value).count(str(deep)) == 1


def test_a_k_shot_val_is_its_own_draw_beside_coops(tmp_path):
    write_toy(tmp_path)
    coop = Toy(make_cfg(tmp_path, "Toy", num_shots=5, seed=1))
    cfg = make_cfg(tmp_path, "Toy", num_shots=5, seed=1)
    cfg.DATASET.VAL_SHOTS = "shots"
    lpp = Toy(cfg)
    assert per_class(coop.val) == {0: 4, 1: 4, 2: 1}  # min(K, 4), CoOp's
    assert per_class(lpp.val) == {0: 5, 1: 5, 2: 1}  # K, LP++'s
    assert impaths(lpp.train_x) == impaths(coop.train_x)  # the same seed draws the same train
    assert cache_path(tmp_path).is_file()
    assert (tmp_path / "toy" / "split_fewshot" / "shot_5-seed_1-val_5.pkl").is_file()
    # each cache is read back unchanged, neither replaces the other
    assert impaths(Toy(cfg).val) == impaths(lpp.val)
    assert impaths(Toy(make_cfg(tmp_path, "Toy", num_shots=5, seed=1)).val) == impaths(coop.val)
    cfg.DATASET.VAL_SHOTS = "all"
    with pytest.raises(ValueError, match="DATASET.VAL_SHOTS"):
        Toy(cfg)
