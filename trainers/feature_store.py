"""A persistent, pickle-free store of image features shared by every run, method and process.

CLIP's image encoder is frozen, so an image's features are a pure function of (backbone weights,
precision and device, view, image). The store keys them by exactly that, so a changed image,
backbone or transform is a miss, never stale features:

    <root>/<namespace>/<dataset folder>/<shard>.npy + <shard>.json

- ``namespace``: a digest of the backbone's SHA-256 (of its weights file, not its name), the
  precision, the device type (and how it batches images, trainers/features.py) and the view (the
  transform's parameters; for augmented views also their seeding rule and index).
  ``namespace.json`` beside the shards spells it out for people.
- a key: the image's path relative to DATASET.ROOT, its size and its mtime (ns).
- a shard: features [N, D] as ``.npy`` (read with ``allow_pickle=False``) and a JSON index with
  the N keys, the array's SHA-256, dtype and shape. Shards are written once and never changed:
  the array first, then the index, each through a temp file renamed into place, so a reader sees
  a shard whole or not at all, and concurrent writers (a sweep's jobs, on one node or many over a
  shared filesystem) never overwrite each other. Two processes encoding the same images write two
  shards with equal features; a lookup takes either.
- a shard whose index does not parse, whose array is missing, truncated or fails its checksum is
  reported, moved aside (``*.corrupt``) and its images are encoded again.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterable, Sequence
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
STORE_VERSION = 1


def store_root(configured: str = "") -> Path:
    """The store folder: the config key if set, else $TASKRES_FEATURE_STORE, else the default."""
    root = configured or os.environ.get(ENV_VAR) or str(DEFAULT_ROOT)
    return Path(root).expanduser().resolve()


def image_key(path: str, root: str) -> str:
    """An image's identity: path relative to the dataset root, size and mtime (ns)."""
    stat = os.stat(path)
    return f"{os.path.relpath(path, root)}|{stat.st_size}|{stat.st_mtime_ns}"


@dataclass(frozen=True)
class Shard:
    index_path: Path
    keys: list[str]

    @property
    def array_path(self) -> Path:
        return self.index_path.with_suffix(".npy")


class CorruptShardError(ValueError):
    """A shard that cannot be trusted; it is moved aside and its images encoded again."""


class FeatureStore:
    """The store under one root folder."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    # ---- identity ------------------------------------------------------------------------

    def backbone_checksum(self, weights: str | os.PathLike) -> str:
        """SHA-256 of the weights file, remembered by (path, size, mtime) so it is hashed once."""
        path = Path(weights).resolve()
        stat = path.stat()
        memo_key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
        memo_path = self.root / CHECKSUMS_FILE
        memo = _read_json(memo_path) or {}
        if memo_key not in memo:
            memo[memo_key] = file_sha256(path)
            # Concurrent writers may drop each other's entries: that only costs a re-hash.
            with atomic_write(memo_path, "w") as f:
                json.dump(memo, f, indent=1, sort_keys=True)
        return memo[memo_key]

    def namespace(self, identity: dict[str, Any]) -> Namespace:
        """The folder of one (backbone, precision, device, view) combination."""
        canonical = json.dumps({"version": STORE_VERSION, **identity}, sort_keys=True)
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:24]
        ns = Namespace(self.root / digest, identity)
        ns.describe()
        return ns

    # ---- maintenance ---------------------------------------------------------------------

    def namespaces(self) -> list[Namespace]:
        out = []
        for meta in sorted(self.root.glob(f"*/{NAMESPACE_FILE}")):
            identity = _read_json(meta)
            if isinstance(identity, dict):
                out.append(Namespace(meta.parent, identity))
        return out

    def shards(self) -> list[ShardInfo]:
        """Every readable shard index, with what listings and pruning need (arrays unread)."""
        out = []
        for ns in self.namespaces():
            for index_path in ns.shard_indexes():
                meta = _read_json(index_path)
                if not isinstance(meta, dict) or not isinstance(meta.get("keys"), list):
                    continue  # being written, or corrupt: lookups deal with it
                about = meta.get("about") if isinstance(meta.get("about"), dict) else {}
                out.append(
                    ShardInfo(
                        namespace=ns,
                        index_path=index_path,
                        group=index_path.parent.name,
                        keys=meta["keys"],
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

    def __init__(self, path: Path, identity: dict[str, Any]) -> None:
        self.path = path
        self.identity = identity

    def describe(self) -> None:
        meta = self.path / NAMESPACE_FILE
        if not meta.is_file():
            with atomic_write(meta, "w") as f:
                json.dump(self.identity, f, indent=1, sort_keys=True)

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
                quarantine(index_path, err)
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
    ) -> Path:
        """Write a new shard; returns its index path. ``about`` (dataset, split) is for listings."""
        array = np.ascontiguousarray(
            features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else features
        )
        if array.ndim != 2 or array.shape[0] != len(keys):
            raise ValueError(f"{len(keys)} keys but features of shape {array.shape}")
        name = f"{datetime.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:12]}"
        index_path = self.path / group / f"{name}.json"
        with atomic_write(index_path.with_suffix(".npy"), "wb") as f:
            np.save(f, array, allow_pickle=False)
        index = {
            "version": STORE_VERSION,
            "keys": list(keys),
            "shape": list(array.shape),
            "dtype": str(array.dtype),
            "sha256": hashlib.sha256(array.tobytes()).hexdigest(),
            "about": about or {},
            "created": time.time(),
        }
        with atomic_write(index_path, "w") as f:
            json.dump(index, f)
        return index_path


def read_shard_index(index_path: Path) -> Shard:
    data = _read_json(index_path)
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise CorruptShardError(f"index {index_path} does not parse as a shard index")
    return Shard(index_path, data["keys"])


def read_shard_array(shard: Shard) -> np.ndarray:
    """The shard's features, checked against its index (shape, dtype, SHA-256)."""
    meta = _read_json(shard.index_path) or {}
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


def quarantine(index_path: Path, err: Exception) -> None:
    """Move a bad shard aside (kept for inspection, never read again) and say so."""
    print(f"Warning: feature store shard is corrupt and will be re-encoded: {err}")
    for path in (index_path, index_path.with_suffix(".npy")):
        try:
            os.replace(path, path.with_name(f".{path.name}.corrupt"))
        except FileNotFoundError:
            pass  # another process moved it first, or the array was never written


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
