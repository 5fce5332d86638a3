"""Config defaults, registry, atomic writes, safe pickles and the Datum/DatasetBase contract."""

import ast
import os
import pickle
import random
from pathlib import Path

import pytest
import yaml
from PIL import Image

import dassl.config as dassl_config
from dassl.config import extend_cfg, get_cfg_default, register_cfg_extension
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum, build_dataset
from dassl.utils import (
    ImageReadError,
    Registry,
    UnsafePickleError,
    atomic_write,
    load_pickle,
    read_image,
    read_json,
    save_pickle,
    write_json,
)

# Every key of upstream Dassl's get_cfg_default() with its default, one `KEY = literal` a line.
REFERENCE_DEFAULTS = Path(__file__).parent / "reference" / "dassl-config-defaults.txt"


def _reference_keys() -> dict[str, object]:
    keys = {}
    for line in REFERENCE_DEFAULTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = line.split(" = ", 1)
            keys[key] = ast.literal_eval(value)
    return keys


def _lookup(cfg, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def test_every_upstream_key_exists_with_its_default():
    keys = _reference_keys()
    assert len(keys) > 100
    cfg = get_cfg_default()
    for key, expected in keys.items():
        assert _lookup(cfg, key) == expected, key


def test_every_upstream_key_merges_from_yaml_and_command_line(tmp_path):
    keys = _reference_keys()
    tree: dict = {}
    for key, value in keys.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = list(value) if isinstance(value, tuple) else value
    yaml_file = tmp_path / "all_keys.yaml"
    yaml_file.write_text(yaml.safe_dump(tree))
    cfg = get_cfg_default()
    cfg.merge_from_file(str(yaml_file))
    opts = []
    for key, value in keys.items():
        opts += [key, repr(value)]
    cfg.merge_from_list(opts)
    assert cfg.OPTIM.LR == keys["OPTIM.LR"]


def test_unknown_key_is_refused():
    cfg = get_cfg_default()
    with pytest.raises(AssertionError, match="OPTIM.LEARNING_RATE"):
        cfg.merge_from_list(["OPTIM.LEARNING_RATE", "0.1"])


@pytest.fixture
def restore_cfg_extensions(monkeypatch):
    """Extensions a test registers go with it: the registered list is a copy, put back after."""
    monkeypatch.setattr(dassl_config, "_EXTENSIONS", list(dassl_config._EXTENSIONS))
    return monkeypatch


def test_cfg_extension_adds_keys_and_defaults_stay_clean(restore_cfg_extensions):
    from yacs.config import CfgNode as CN

    @register_cfg_extension
    def add_demo_keys(cfg):
        cfg.TRAINER.DEMOEXT = CN()
        cfg.TRAINER.DEMOEXT.ALPHA = 0.5

    cfg = extend_cfg(get_cfg_default())
    cfg.merge_from_list(["TRAINER.DEMOEXT.ALPHA", "0.25"])
    assert cfg.TRAINER.DEMOEXT.ALPHA == 0.25
    assert "DEMOEXT" not in get_cfg_default().TRAINER
    restore_cfg_extensions.undo()  # what the fixture does after the test
    assert add_demo_keys not in dassl_config._EXTENSIONS
    assert "DEMOEXT" not in extend_cfg(get_cfg_default()).TRAINER


def test_registry_unknown_name_lists_names_and_closest_match():
    reg = Registry("TRAINER")

    @reg.register()
    class TaskRes:
        pass

    @reg.register()
    class CoOp:
        pass

    assert reg.get("TaskRes") is TaskRes
    with pytest.raises(KeyError) as err:
        reg.get("TaskRez")
    assert 'Did you mean "TaskRes"' in str(err.value)
    assert "CoOp" in str(err.value)
    with pytest.raises(KeyError):
        reg.register(TaskRes)
    assert reg.register(TaskRes, force=True) is TaskRes


def test_registry_build_instantiates_logs_and_names_the_key_for_an_empty_name(capsys):
    reg = Registry("TRAINER", how_to_set="pass --trainer NAME")

    @reg.register()
    class TaskRes:
        def __init__(self, cfg, scale=1.0):
            self.cfg, self.scale = cfg, scale

    built = reg.build("TaskRes", "cfg", scale=0.5, verbose=True)
    assert (type(built), built.cfg, built.scale) == (TaskRes, "cfg", 0.5)
    assert capsys.readouterr().out == "Loading trainer: TaskRes\n"
    reg.build("TaskRes", "cfg")
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError) as err:
        reg.build("", "cfg")
    assert str(err.value) == (
        "TRAINER.NAME is empty: pass --trainer NAME. Registered trainers: TaskRes"
    )
    # a wrong case is suggested by case, whatever difflib ranks first
    reg.register(type("taskresx", (), {}))
    with pytest.raises(KeyError, match='Did you mean "TaskRes"'):
        reg.build("taskres", "cfg")


def test_datum_attributes_are_read_only_views_of_the_pickled_fields():
    item = Datum(impath="a.jpg", label=3, classname="cat")
    assert (item.impath, item.label, item.domain, item.classname) == ("a.jpg", 3, 0, "cat")
    with pytest.raises(AttributeError, match="Datum.label is read-only"):
        item.label = 4
    assert vars(item) == {"_impath": "a.jpg", "_label": 3, "_domain": 0, "_classname": "cat"}


def test_build_dataset_names_registered_datasets_for_empty_name():
    cfg = get_cfg_default()
    with pytest.raises(ValueError, match="DATASET.NAME is empty"):
        build_dataset(cfg)
    cfg.DATASET.NAME = "NoSuchDataset"
    with pytest.raises(KeyError, match="NoSuchDataset"):
        build_dataset(cfg)
    assert "NoSuchDataset" not in DATASET_REGISTRY


def test_atomic_write_keeps_old_file_when_writer_crashes(tmp_path):
    target = tmp_path / "model.pth.tar-1"
    target.write_bytes(b"good weights")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write(b"half of the new")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"good weights"
    assert os.listdir(tmp_path) == ["model.pth.tar-1"]


def test_json_round_trip(tmp_path):
    split = {"train": [["a/1.jpg", 0, "cat"]], "val": [], "test": [["b/2.jpg", 1, "dog"]]}
    write_json(split, tmp_path / "split.json")
    assert read_json(tmp_path / "split.json") == split


def _datum_list() -> list[Datum]:
    return [Datum(f"img{i}.jpg", label=i % 3, classname=f"class{i % 3}") for i in range(9)]


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_fewshot_pickle_written_like_upstream_loads(tmp_path, protocol):
    """Upstream writes {"train": [Datum...], "val": [...]} with the default pickler."""
    path = tmp_path / "shot_1-seed_1.pkl"
    with open(path, "wb") as f:
        pickle.dump({"train": _datum_list(), "val": _datum_list()[:3]}, f, protocol=protocol)
    data = load_pickle(path)
    assert [d.impath for d in data["train"]] == [d.impath for d in _datum_list()]
    assert data["val"][2].classname == "class2"
    assert data["train"][4].__dict__ == {
        "_impath": "img4.jpg",
        "_label": 1,
        "_domain": 0,
        "_classname": "class1",
    }


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_is_refused_before_running_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "shot_16-seed_1.pkl"
    with open(path, "wb") as f:
        pickle.dump({"train": [_RunsCode(str(marker))], "val": []}, f)
    with pytest.raises(UnsafePickleError) as err:
        load_pickle(path)
    assert "system" in str(err.value) and str(path) in str(err.value)
    assert not marker.exists()


def test_save_pickle_round_trip(tmp_path):
    save_pickle({"train": _datum_list(), "val": []}, tmp_path / "cache.pkl")
    assert len(load_pickle(tmp_path / "cache.pkl")["train"]) == 9


def test_datum_and_dataset_base_properties():
    data = _datum_list()
    ds = DatasetBase(train_x=data, val=data[:3], test=data)
    assert ds.num_classes == 3
    assert ds.classnames == ["class0", "class1", "class2"]
    assert ds.lab2cname == {0: "class0", 1: "class1", 2: "class2"}
    assert ds.val == data[:3]
    with pytest.raises(TypeError):
        Datum(Path("x.jpg"))


def test_fewshot_sampling_follows_upstream_rng_order():
    """Same seed -> same picks as upstream: classes in first-seen order, random.sample each."""
    data = _datum_list()
    ds = DatasetBase(train_x=data)
    random.seed(7)
    picked = ds.generate_fewshot_dataset(data, num_shots=2)
    random.seed(7)
    by_label = {0: data[0::3], 1: data[1::3], 2: data[2::3]}
    expected = [d for label in (0, 1, 2) for d in random.sample(by_label[label], 2)]
    assert picked == expected


def test_fewshot_class_smaller_than_k_keeps_all_and_warns(capsys):
    data = _datum_list() + [Datum("extra.jpg", label=3, classname="rare")]
    ds = DatasetBase(train_x=data)
    train, val = ds.generate_fewshot_dataset(data, data, num_shots=2)
    counts = {label: sum(d.label == label for d in train) for label in range(4)}
    assert counts == {0: 2, 1: 2, 2: 2, 3: 1}
    assert len(val) == 7
    assert "class 3 (rare) has only 1 images" in capsys.readouterr().out
    assert ds.generate_fewshot_dataset(data, num_shots=-1) is data


def test_read_image_names_corrupt_and_missing_files(tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (4, 4), (255, 0, 0)).save(good)
    assert read_image(good).size == (4, 4)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageReadError, match="broken.jpg"):
        read_image(broken)
    with pytest.raises(ImageReadError, match="absent.jpg"):
        read_image(tmp_path / "absent.jpg")
