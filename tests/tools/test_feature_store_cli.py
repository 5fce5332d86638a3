"""`python -m tools.feature_store`: list what the store holds; prune by backbone, dataset, age."""

import json
import time

import numpy as np
import pytest

from tools import feature_store as cli
from trainers.feature_store import FeatureStore

SHA_A, SHA_B = "a" * 64, "b" * 64


def identity(sha: str, view: dict | None = None) -> dict:
    view = view or {"kind": "test", "size": 224}
    return {"backbone_sha256": sha, "precision": "fp32", "device": "cpu", "view": view}


@pytest.fixture
def store(tmp_path):
    store = FeatureStore(tmp_path / "store")
    test_a = store.namespace(identity(SHA_A))
    for split, n in (("test", 5), ("val", 2)):
        keys = [f"caltech/{split}{i}.jpg|1|1" for i in range(n)]
        about = {"dataset": "Caltech101", "split": split, "backbone": "RN50"}
        test_a.add(keys, np.ones((n, 4), np.float32), "Caltech101", about)
    pets = ["pets/x.jpg|1|1", "pets/y.jpg|1|1"]
    about = {"dataset": "OxfordPets", "split": "test", "backbone": "RN50"}
    test_a.add(pets, np.ones((2, 4), np.float32), "OxfordPets", about)
    test_a.add(pets, np.ones((2, 4), np.float32), "OxfordPets", about)  # a concurrent duplicate
    view = store.namespace(identity(SHA_B, {"kind": "augmented", "index": 3}))
    about = {"dataset": "Caltech101", "split": "train", "backbone": "ViT-B/16"}
    view.add(["caltech/t.jpg|1|1"], np.ones((1, 4), np.float32), "Caltech101", about)
    return store


def test_list_shows_backbone_dataset_split_count_and_size(store, capsys):
    assert cli.main(["--root", str(store.root), "list"]) == 0
    rows = {" ".join(line.split()[:9]) for line in capsys.readouterr().out.splitlines()}
    a, b = f"RN50 ({SHA_A[:12]}) fp32 cpu test", f"ViT-B/16 ({SHA_B[:12]}) fp32 cpu"
    # backbone, precision, device, view, dataset, split, images, shards
    assert f"{a} Caltech101 test 5 1" in rows and f"{a} Caltech101 val 2 1" in rows
    assert f"{a} OxfordPets test 2 2" in rows  # unique images, though two shards hold them
    assert f"{b} augmented #3 Caltech101 train 1" in rows
    assert "Total: 5 shards, 0.00 MB" in rows


@pytest.mark.parametrize(
    "filters, left",
    [
        (["--dataset", "oxfordpets"], 3),
        (["--backbone", "RN50"], 1),
        (["--backbone", SHA_B[:8]], 4),
        (["--backbone", "RN50", "--dataset", "Caltech101"], 3),
    ],
)
def test_prune_removes_the_shards_matching_every_filter(store, filters, left, capsys):
    assert cli.main(["--root", str(store.root), "prune", "--dry-run", *filters]) == 0
    assert len(store.shards()) == 5 and "Would remove" in capsys.readouterr().out
    assert cli.main(["--root", str(store.root), "prune", *filters]) == 0
    assert len(store.shards()) == left
    assert f"Removed {5 - left} of 5 shards" in capsys.readouterr().out
    for shard in store.shards():  # what is left still reads back whole
        ns = shard.namespace
        assert ns.lookup(shard.keys, shard.group)[1] == []


def test_prune_by_age_and_refusing_no_filter(store, capsys):
    old = store.shards()[0].index_path
    meta = json.loads(old.read_text())
    meta["created"] = time.time() - 10 * cli.DAY
    old.write_text(json.dumps(meta))
    assert cli.main(["--root", str(store.root), "prune", "--older-than", "7"]) == 0
    assert len(store.shards()) == 4 and not old.exists()
    assert not old.with_suffix(".npy").exists()
    assert cli.main(["--root", str(store.root), "prune"]) == 2
    assert "needs at least one filter" in capsys.readouterr().err
    assert len(store.shards()) == 4


def test_an_absent_store_is_said_so(tmp_path, capsys):
    assert cli.main(["--root", str(tmp_path / "none"), "list"]) == 0
    assert "No feature store" in capsys.readouterr().out


@pytest.mark.parametrize("age", ["-5", "0", "nan", "inf", "x"])
def test_prune_refuses_an_age_that_is_not_above_zero(store, age, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--root", str(store.root), "prune", "--older-than", age])
    assert stop.value.code == 2
    assert f"--older-than: '{age}' is not a number above 0" in capsys.readouterr().err
    assert len(store.shards()) == 5


def test_help_names_the_default_store(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "$TASKRES_FEATURE_STORE, else ~/.cache/taskres/features" in text
    assert "see above" not in text
