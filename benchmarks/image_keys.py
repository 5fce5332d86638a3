"""What identifying images costs the feature store, per split of images.

Every run keys each image of every split it uses before it looks anything up, so the image
identity is paid on hits too. This times, over one split of image files:

  old      path relative to DATASET.ROOT, size, mtime: one stat (the version-1 key, which a file
           replaced with its size and mtime restored kept)
  store    the store's key (trainers.feature_store.image_key): size, mtime, ctime and inode,
           from the same one stat
  sha256   the file's bytes hashed, read from the page cache (what a content key would add on
           every run, before any cold-disk or network-filesystem read time)

    python benchmarks/image_keys.py [--images 10000] [--kb 110] [--repeats 5] [--root FOLDER]

--kb 110 is the mean size of an ImageNet JPEG. --root keys the files under an existing folder
instead of writing random ones to a temp folder.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers.feature_store import image_key  # noqa: E402


def old_key(path: str, root: str) -> str:
    stat = os.stat(path)
    return f"{os.path.relpath(path, root)}|{stat.st_size}|{stat.st_mtime_ns}"


def content_key(path: str, root: str) -> str:
    with open(path, "rb") as f:
        return f"{os.path.relpath(path, root)}|{hashlib.file_digest(f, 'sha256').hexdigest()}"


def write_files(folder: Path, count: int, kb: int) -> list[str]:
    paths = []
    for i in range(count):
        path = folder / f"class{i % 100:03d}" / f"{i:06d}.jpg"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(os.urandom(kb * 1024))
        paths.append(str(path))
    return paths


def seconds(key: Callable[[str, str], str], paths: list[str], root: str, repeats: int) -> float:
    """Median wall time of keying every path once."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for path in paths:
            key(path, root)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--kb", type=int, default=110, help="size of each written file")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--root", help="key the files under this folder instead")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if args.root:
            root = os.path.abspath(args.root)
            paths = sorted(str(p) for p in Path(root).rglob("*") if p.is_file())[: args.images]
        else:
            root = tmp
            paths = write_files(Path(tmp), args.images, args.kb)
        size_mb = sum(os.path.getsize(p) for p in paths) / 2**20
        print(f"{len(paths)} files, {size_mb:.0f} MB, median of {args.repeats} passes")
        base = None
        for name, key in (("old", old_key), ("store", image_key), ("sha256", content_key)):
            elapsed = seconds(key, paths, root, args.repeats)
            base = base or elapsed
            print(
                f"{name:7s} {elapsed * 1000:9.1f} ms per split  "
                f"{elapsed / len(paths) * 1e6:8.1f} us per image  {elapsed / base:6.2f}x old"
            )


if __name__ == "__main__":
    main()
