"""The feature store's storage: keys that cannot serve stale features, whole-or-nothing shards,
corrupt or malformed shards found and re-encoded, concurrent writers, a store that cannot be
written."""

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.support.warm_process import WarmPython
from trainers import feature_store
from trainers.feature_store import ENV_VAR, FeatureStore, file_identity, image_key, store_root

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


def test_a_file_replaced_with_its_size_and_mtime_restored_changes_identity(tmp_path):
    """What ``cp -p``, ``rsync -t`` and ``touch -r`` leave: same size, same mtime, other bytes,
    whether written in place (same inode) or renamed over the file (same ctime tick or not)."""
    root = tmp_path / "data"
    image = root / "ds" / "a.jpg"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"x" * 10)
    before, key = file_identity(image), image_key(str(image), str(root))
    assert key == f"ds/a.jpg|{before}"
    stat = image.stat()
    image.write_bytes(b"y" * 10)
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (image.stat().st_size, image.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    assert file_identity(image) != before and image_key(str(image), str(root)) != key
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(b"z" * 10)
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(copy, image)
    assert file_identity(image) != before


def test_the_backbone_is_identified_by_content(tmp_path):
    store = FeatureStore(tmp_path / "store")
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.write_bytes(b"weights")
    b.write_bytes(b"weights")
    assert store.backbone_checksum(a) == store.backbone_checksum(b)
    b.write_bytes(b"other weights")
    assert store.backbone_checksum(a) != store.backbone_checksum(b)
    # Replaced in place by other bytes of the same size, mtime restored: hashed again.
    stat = a.stat()
    a.write_bytes(b"WEIGHTS")
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert store.backbone_checksum(a) == FeatureStore(tmp_path / "fresh").backbone_checksum(a)


@pytest.mark.parametrize(
    "damage", ["truncate", "flip", "index", "no-array", "key-not-string", "keys-shifted"]
)
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
    elif damage in ("key-not-string", "keys-shifted"):
        meta = json.loads(index.read_text())
        # One key a list (unhashable), or the first key lost: each row under the next one's key.
        meta["keys"] = (
            [["ds/img0.jpg"], *meta["keys"][1:]] if damage == "key-not-string" else meta["keys"][1:]
        )
        index.write_text(json.dumps(meta))
    else:
        array.unlink()
    found, missing = ns.lookup(keys(3), "ds")
    assert found == {} and missing == [0, 1, 2]
    assert "corrupt and will be re-encoded" in capsys.readouterr().out
    assert not index.exists()
    assert ns.shard_indexes("ds") == []


@pytest.mark.parametrize("shifted", [False, True])
def test_listings_skip_malformed_indexes(tmp_path, shifted):
    store = FeatureStore(tmp_path)
    index = store.namespace(IDENTITY).add(keys(3), np.ones((3, 4), np.float32), "ds")
    meta = json.loads(index.read_text())
    meta["keys"] = meta["keys"][1:] if shifted else [[k] for k in meta["keys"]]
    index.write_text(json.dumps(meta))
    assert store.shards() == []


def test_a_store_that_cannot_be_written_says_so_once_and_keeps_serving(
    tmp_path, monkeypatch, capsys
):
    store = FeatureStore(tmp_path / "store")
    ns = store.namespace(IDENTITY)
    ns.add(keys(2), np.ones((2, 4), np.float32), "ds")
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"weights")
    checksum = FeatureStore(tmp_path / "other").backbone_checksum(weights)

    def full_disk(path, mode="wb"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(feature_store, "atomic_write", full_disk)
    assert ns.add(keys(3, prefix="new"), np.ones((3, 4), np.float32), "ds") is None
    assert ns.add(keys(3, prefix="more"), np.ones((3, 4), np.float32), "ds") is None
    assert store.backbone_checksum(weights) == checksum  # hashed; only the memo is not kept
    store.namespace({**IDENTITY, "precision": "fp16"})
    out = capsys.readouterr().out
    assert out.count("cannot be written") == 1
    assert f"the feature store {tmp_path / 'store'} cannot be written (the disk is full:" in out
    found, missing = ns.lookup([*keys(2), *keys(1, prefix="new")], "ds")
    assert sorted(found) == [0, 1] and missing == [2]
    assert len(ns.shard_indexes("ds")) == 1


def test_files_are_readable_by_others(tmp_path):
    ns = FeatureStore(tmp_path).namespace(IDENTITY)
    index = ns.add(keys(1), np.ones((1, 2), np.float32), "ds")
    for path in (index, index.with_suffix(".npy")):
        assert os.stat(path).st_mode & 0o044 == 0o044


def _writer(root: str, offset: int) -> None:
    ns = FeatureStore(root).namespace(IDENTITY)
    for i in range(20):
        ks = keys(50, prefix=f"w{offset}-{i}-") + keys(10)  # 10 keys shared by both writers
        ns.add(ks, np.full((60, 8), offset, np.float32), "ds")


WRITER = (
    "import sys; from tests.trainers.test_feature_store import _writer; "
    "_writer(sys.argv[1], int(sys.argv[2]))"
)


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    procs = [WarmPython(["-c", WRITER, str(tmp_path), str(n)]) for n in (1, 2)]
    for proc in procs:
        code, output = proc.wait(timeout=120)
        assert code == 0, output
    ns = FeatureStore(tmp_path).namespace(IDENTITY)
    wanted = [k for n in (1, 2) for i in range(20) for k in keys(50, prefix=f"w{n}-{i}-")]
    found, missing = ns.lookup(wanted + keys(10), "ds")
    assert missing == []
    assert len(ns.shard_indexes("ds")) == 40
    assert not list(tmp_path.rglob("*.tmp"))
    meta = json.loads((ns.path / "namespace.json").read_text())
    assert meta["precision"] == "fp32"
