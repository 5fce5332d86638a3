"""A persistent, pickle-free store of image features shared by every run, method and process.

CLIP's image encoder is frozen, so an image's features are a pure function of (backbone weights
and architecture, precision and device, view, image). The store keys them by exactly that, so a
changed image, backbone, architecture or transform is a miss, never stale features:

    <root>/<namespace>/<dataset folder>/<shard>.npy + <shard>.json

- ``namespace``: a digest of the backbone's SHA-256 (of its weights file, not its name), its
  architecture (``ClipBackbone.architecture``: what the weights are run by, e.g. OpenCLIP's model
  config with ``quick_gelu``), the precision, the device type (and how it batches images,
  trainers/features.py) and the view (the transform's parameters; for augmented views also their
  seeding rule and index). ``namespace.json`` beside the shards spells it out for people.
- a key: the image's path relative to DATASET.ROOT and its file identity (``file_identity``: size,
  mtime, ctime and inode). Replacing a file, even by one of the same size with its mtime restored
  (``cp -p``, ``rsync -t``, ``touch -r``), gives it a new ctime (and usually a new inode), which no
  copy tool can set: a miss. A false miss costs an encoding; a false hit would be a wrong result.
- a shard: features [N, D] as ``.npy`` (read with ``allow_pickle=False``) and a JSON index with
  the N keys, the array's SHA-256, dtype and shape. Shards are written once and never changed:
  the array first, then the index, each through a temp file renamed into place, so a reader sees
  a shard whole or not at all, and concurrent writers (a sweep's jobs, on one node or many over a
  shared filesystem) never overwrite each other. Two processes encoding the same images write two
  shards with equal features; a lookup takes either.
- a shard whose index does not parse, holds keys that are not strings or not one per row, whose
  array is missing, truncated or fails its checksum is reported, moved aside (``*.corrupt``) and
  its images are encoded again.
- the store is a cache: when it cannot be written (read-only, full disk, no permission), that is
  reported once and the run goes on without adding to it (``StoreWrites``), with the result a run
  without the store gets.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clip.clip import file_sha256
from dassl.utils.tools import atomic_write

ENV_VAR = "TASKRES_FEATURE_STORE"
DEFAULT_ROOT = Path("~/.cache/taskres/features")
NAMESPACE_FILE = "namespace.json"
CHECKSUMS_FILE = "backbone_checksums.json"
# 2: keys hold ctime and inode, namespaces the architecture; version-1 folders are never read.
STORE_VERSION = 2


def store_root(configured: str = "") -> Path:
    """The store folder: the config key if set, else $TASKRES_FEATURE_STORE, else the default."""
    root = configured or os.environ.get(ENV_VAR) or str(DEFAULT_ROOT)
    return Path(root).expanduser().resolve()


def file_identity(path: str | os.PathLike) -> str:
    """A file's version as its metadata tells it: size, mtime, ctime (ns) and inode.

    ctime is set by the kernel, to the current time, whenever the file or its metadata changes
    (restoring the mtime included), and no tool can set it back: a replaced file keeps its
    identity only if replaced within the clock tick (milliseconds) of its previous change."""
    stat = os.stat(path)
    return f"{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}|{stat.st_ino}"


def image_key(path: str, root: str) -> str:
    """An image's key: its path relative to the dataset root and its ``file_identity``."""
    return f"{os.path.relpath(path, root)}|{file_identity(path)}"


@dataclass(frozen=True)
class Shard:
    index_path: Path
    keys: list[str]
    meta: dict[str, Any]  # the whole index: shape, dtype, sha256, about, created

    @property
    def array_path(self) -> Path:
        return self.index_path.with_suffix(".npy")


class CorruptShardError(ValueError):
    """A shard that cannot be trusted; it is moved aside and its images encoded again."""


_CAUSES = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the filesystem is read-only",
    errno.EACCES: "no write permission",
    errno.EPERM: "no write permission",
}


class StoreWrites:
    """Writes to one store, which is a cache: the first write that fails is reported once (path,
    cause, fix) and ends writing for this process; lookups go on, and so does the run."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.failure: OSError | None = None

    def attempt(self, write: Callable[[], None], target: Path) -> bool:
        """Run ``write`` (which writes ``target``); False when the store cannot be written."""
        if self.failure is not None:
            return False
        try:
            write()
            return True
        except OSError as err:
            self.failure = err
            # numpy reports a short write as "N requested and M written", without an errno.
            cause = _CAUSES.get(err.errno or 0, "a short write: the disk is probably full")
            if err.errno is not None and err.errno not in _CAUSES:
                cause = os.strerror(err.errno)
            print(
                f"Warning: the feature store {self.root} cannot be written ({cause}: {err}; "
                f"writing {target}). This run goes on without adding features to it; its "
                "results are those of a run with the store off. Fix: free space or grant write "
                "access there, or point TRAINER.FEATURE_STORE.DIR (or $TASKRES_FEATURE_STORE) "
                "to a writable folder, or set TRAINER.FEATURE_STORE.ENABLED False."
            )
            return False


class FeatureStore:
    """The store under one root folder."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.writes = StoreWrites(self.root)

    # ---- identity ------------------------------------------------------------------------

    def backbone_checksum(self, weights: str | os.PathLike) -> str:
        """SHA-256 of the weights file, remembered by (path, ``file_identity``) so it is hashed
        once, and hashed again once the file is replaced (whatever its size and mtime)."""
        path = Path(weights).resolve()
        memo_key = f"{path}|{file_identity(path)}"
        memo_path = self.root / CHECKSUMS_FILE
        memo = _read_json(memo_path)
        memo = memo if isinstance(memo, dict) else {}
        if not isinstance(memo.get(memo_key), str):
            memo[memo_key] = file_sha256(path)

            def write() -> None:
                # Concurrent writers may drop each other's entries: that only costs a re-hash.
                with atomic_write(memo_path, "w") as f:
                    json.dump(memo, f, indent=1, sort_keys=True)

            self.writes.attempt(write, memo_path)
        return memo[memo_key]

    def namespace(self, identity: dict[str, Any]) -> Namespace:
        """The folder of one (backbone, architecture, precision, device, view) combination."""
        canonical = json.dumps({"version": STORE_VERSION, **identity}, sort_keys=True)
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:24]
        ns = Namespace(self.root / digest, identity, self.writes)
        ns.describe()
        return ns

    # ---- maintenance ---------------------------------------------------------------------

    def namespaces(self) -> list[Namespace]:
        out = []
        for meta in sorted(self.root.glob(f"*/{NAMESPACE_FILE}")):
            identity = _read_json(meta)
            if isinstance(identity, dict):
                out.append(Namespace(meta.parent, identity, self.writes))
        return out

    def shards(self) -> list[ShardInfo]:
        """Every readable shard index, with what listings and pruning need (arrays unread)."""
        out = []
        for ns in self.namespaces():
            for index_path in ns.shard_indexes():
                try:
                    shard = read_shard_index(index_path)
                except CorruptShardError:
                    continue  # being written, or corrupt: lookups deal with it
                meta = shard.meta
                about = meta.get("about") if isinstance(meta.get("about"), dict) else {}
                out.append(
                    ShardInfo(
                        namespace=ns,
                        index_path=index_path,
                        group=index_path.parent.name,
                        keys=shard.keys,
                        about=about,
                        created=float(meta.get("created") or index_path.stat().st_mtime),
                        size=total_size([index_path, index_path.with_suffix(".npy")]),
                    )
                )
        return out


@dataclass(frozen=True)
class ShardInfo:
    namespace: Namespace
    index_path: Path
    group: str  # the dataset folder (DATASET.NAME)
    keys: list[str]
    about: dict[str, Any]  # dataset, split, backbone name as the writing run named them
    created: float
    size: int  # bytes of index and array

    def remove(self) -> None:
        """Index first, so later lookups skip the shard (one that read the index just before
        finds no array, reports it and encodes those images again); then the array."""
        for path in (self.index_path, self.index_path.with_suffix(".npy")):
            try:
                path.unlink()
            except FileNotFoundError:
                pass  # removed by a concurrent prune


class Namespace:
    """Shards of one identity, one sub-folder per dataset folder."""

    def __init__(self, path: Path, identity: dict[str, Any], writes: StoreWrites) -> None:
        self.path = path
        self.identity = identity
        self.writes = writes

    def describe(self) -> None:
        meta = self.path / NAMESPACE_FILE
        if not meta.is_file():

            def write() -> None:
                with atomic_write(meta, "w") as f:
                    json.dump(self.identity, f, indent=1, sort_keys=True)

            self.writes.attempt(write, meta)

    def shard_indexes(self, group: str | None = None) -> list[Path]:
        pattern = f"{group}/*.json" if group else "*/*.json"
        return sorted(p for p in self.path.glob(pattern) if not p.name.startswith("."))

    def lookup(self, keys: Sequence[str], group: str) -> tuple[dict[int, np.ndarray], list[int]]:
        """Features found for ``keys`` (position -> [D] array) and the positions not found."""
        wanted = {key: i for i, key in enumerate(keys)}
        found: dict[int, np.ndarray] = {}
        for index_path in self.shard_indexes(group):
            if len(found) == len(wanted):
                break
            try:
                shard = read_shard_index(index_path)
                hits = [(wanted[k], row) for row, k in enumerate(shard.keys) if k in wanted]
                hits = [(i, row) for i, row in hits if i not in found]
                if not hits:
                    continue
                array = read_shard_array(shard)
            except CorruptShardError as err:
                quarantine(index_path, err, self.writes)
                continue
            for i, row in hits:
                found[i] = array[row]
        missing = [i for i in range(len(keys)) if i not in found]
        return found, missing

    def add(
        self,
        keys: Sequence[str],
        features: torch.Tensor | np.ndarray,
        group: str,
        about: dict[str, Any] | None = None,
    ) -> Path | None:
        """Write a new shard; returns its index path, or None when the store cannot be written
        (reported once, see ``StoreWrites``). ``about`` (dataset, split) is for listings."""
        array = np.ascontiguousarray(
            features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else features
        )
        if array.ndim != 2 or array.shape[0] != len(keys):
            raise ValueError(f"{len(keys)} keys but features of shape {array.shape}")
        name = f"{datetime.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:12]}"
        index_path = self.path / group / f"{name}.json"
        array_path = index_path.with_suffix(".npy")

        def write_array() -> None:
            with atomic_write(array_path, "wb") as f:
                np.save(f, array, allow_pickle=False)

        def write_index() -> None:
            with atomic_write(index_path, "w") as f:
                json.dump(index, f)

        index = {
            "version": STORE_VERSION,
            "keys": list(keys),
            "shape": list(array.shape),
            "dtype": str(array.dtype),
            "sha256": hashlib.sha256(array.tobytes()).hexdigest(),
            "about": about or {},
            "created": time.time(),
        }
        if not self.writes.attempt(write_array, array_path):
            return None
        if not self.writes.attempt(write_index, index_path):
            with contextlib.suppress(OSError):  # no index: never read; leave nothing behind
                array_path.unlink()
            return None
        return index_path


def read_shard_index(index_path: Path) -> Shard:
    """The index, checked: string keys, one per row of the array shape it records (a key list
    shifted by one would serve each feature under another image's key)."""
    data = _read_json(index_path)
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise CorruptShardError(f"index {index_path} does not parse as a shard index")
    keys, shape = data["keys"], data.get("shape")
    if not all(isinstance(k, str) for k in keys):
        raise CorruptShardError(f"index {index_path} holds keys that are not strings")
    if not (isinstance(shape, list) and len(shape) == 2 and shape[0] == len(keys)):
        raise CorruptShardError(
            f"index {index_path} holds {len(keys)} keys for an array of shape {shape}"
        )
    return Shard(index_path, keys, data)


def read_shard_array(shard: Shard) -> np.ndarray:
    """The shard's features, checked against its index (shape, dtype, SHA-256)."""
    meta = shard.meta
    try:
        array = np.load(shard.array_path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise CorruptShardError(f"{shard.array_path} cannot be read ({err})") from err
    if list(array.shape) != meta.get("shape") or str(array.dtype) != meta.get("dtype"):
        raise CorruptShardError(
            f"{shard.array_path} holds {array.dtype} {list(array.shape)}, its index says "
            f"{meta.get('dtype')} {meta.get('shape')}"
        )
    if hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest() != meta.get("sha256"):
        raise CorruptShardError(f"{shard.array_path} fails its SHA-256 check")
    return array


def quarantine(index_path: Path, err: Exception, writes: StoreWrites) -> None:
    """Move a bad shard aside (kept for inspection, never read again) and say so. In a store
    that cannot be written it stays (and is skipped by every lookup)."""
    print(f"Warning: feature store shard is corrupt and will be re-encoded: {err}")
    for path in (index_path, index_path.with_suffix(".npy")):

        def move(path: Path = path) -> None:
            try:
                os.replace(path, path.with_name(f".{path.name}.corrupt"))
            except FileNotFoundError:
                pass  # another process moved it first, or the array was never written

        writes.attempt(move, path)


def _read_json(path: Path) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (ValueError, OSError):
        return None


def total_size(paths: Iterable[Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.exists())
