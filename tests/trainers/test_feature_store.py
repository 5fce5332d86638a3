"""The feature store's storage: keys that cannot serve stale features, whole-or-nothing shards,
corrupt shards found and re-encoded, concurrent writers."""

import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from trainers.feature_store import ENV_VAR, FeatureStore, image_key, store_root

IDENTITY = {"backbone": "ab" * 32, "precision": "fp32", "device": "cpu", "view": {"size": 32}}


def keys(n: int, prefix: str = "img") -> list[str]:
    return [f"ds/{prefix}{i}.jpg|100|{i}" for i in range(n)]


def test_root_comes_from_the_config_then_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert store_root("") == tmp_path / "env"
    assert store_root(str(tmp_path / "cfg")) == tmp_path / "cfg"
    monkeypatch.delenv(ENV_VAR)
    assert store_root("") == Path("~/.cache/taskres/features").expanduser()


def test_features_come_back_in_the_order_asked(tmp_path):
    ns = FeatureStore(tmp_path).namespace(IDENTITY)
    feats = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    ns.add(keys(5), feats, "ds")
    found, missing = ns.lookup([keys(5)[3], "ds/other.jpg|1|1", keys(5)[0]], "ds")
    assert missing == [1]
    np.testing.assert_array_equal(found[0], feats[3])
    np.testing.assert_array_equal(found[2], feats[0])


def test_other_identities_and_changed_images_miss(tmp_path):
    store = FeatureStore(tmp_path)
    ns = store.namespace(IDENTITY)
    ns.add(keys(2), np.ones((2, 4), np.float32), "ds")
    for change in ({"precision": "fp16"}, {"backbone": "cd" * 32}, {"view": {"size": 64}}):
        other = store.namespace({**IDENTITY, **change})
        assert other.path != ns.path
        assert other.lookup(keys(2), "ds")[1] == [0, 1]
    image = tmp_path / "data" / "ds" / "a.jpg"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"x" * 10)
    before = image_key(str(image), str(tmp_path / "data"))
    assert before.startswith("ds/a.jpg|10|")
    image.write_bytes(b"y" * 11)
    assert image_key(str(image), str(tmp_path / "data")) != before


def test_the_backbone_is_identified_by_content(tmp_path):
    store = FeatureStore(tmp_path / "store")
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.write_bytes(b"weights")
    b.write_bytes(b"weights")
    assert store.backbone_checksum(a) == store.backbone_checksum(b)
    b.write_bytes(b"other weights")
    assert store.backbone_checksum(a) != store.backbone_checksum(b)


@pytest.mark.parametrize("damage", ["truncate", "flip", "index", "no-array"])
def test_a_corrupt_shard_is_reported_moved_aside_and_missed(tmp_path, damage, capsys):
    ns = FeatureStore(tmp_path).namespace(IDENTITY)
    index = ns.add(keys(3), np.arange(12, dtype=np.float32).reshape(3, 4), "ds")
    array = index.with_suffix(".npy")
    if damage == "truncate":
        array.write_bytes(array.read_bytes()[:-8])
    elif damage == "flip":
        data = bytearray(array.read_bytes())
        data[-1] ^= 0xFF
        array.write_bytes(bytes(data))
    elif damage == "index":
        index.write_text("{not json")
    else:
        array.unlink()
    found, missing = ns.lookup(keys(3), "ds")
    assert found == {} and missing == [0, 1, 2]
    assert "corrupt and will be re-encoded" in capsys.readouterr().out
    assert not index.exists()
    assert ns.shard_indexes("ds") == []


def test_files_are_readable_by_others(tmp_path):
    ns = FeatureStore(tmp_path).namespace(IDENTITY)
    index = ns.add(keys(1), np.ones((1, 2), np.float32), "ds")
    for path in (index, index.with_suffix(".npy")):
        assert os.stat(path).st_mode & 0o044 == 0o044


def _writer(root: str, offset: int, out: str) -> None:
    ns = FeatureStore(root).namespace(IDENTITY)
    for i in range(20):
        ks = keys(50, prefix=f"w{offset}-{i}-") + keys(10)  # 10 keys shared by both writers
        ns.add(ks, np.full((60, 8), offset, np.float32), "ds")
    Path(out).write_text("done")


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_writer, args=(str(tmp_path), n, str(tmp_path / f"done{n}")))
        for n in (1, 2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    ns = FeatureStore(tmp_path).namespace(IDENTITY)
    wanted = [k for n in (1, 2) for i in range(20) for k in keys(50, prefix=f"w{n}-{i}-")]
    found, missing = ns.lookup(wanted + keys(10), "ds")
    assert missing == []
    assert len(ns.shard_indexes("ds")) == 40
    assert not list(tmp_path.rglob("*.tmp"))
    meta = json.loads((ns.path / "namespace.json").read_text())
    assert meta["precision"] == "fp32"
