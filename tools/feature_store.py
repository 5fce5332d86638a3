"""List and prune the feature store (trainers/feature_store.py) shared by every run.

    python -m tools.feature_store list                       # backbone, dataset, split, count, size
    python -m tools.feature_store prune --dataset Caltech101
    python -m tools.feature_store prune --backbone RN50 --older-than 30 --dry-run

The store is the folder TRAINER.FEATURE_STORE.DIR names, else $TASKRES_FEATURE_STORE, else
~/.cache/taskres/features; ``--root`` picks another. Pruning removes whole shards (an index and
its array) matching every filter given; runs re-encode what they miss, so pruning never changes
a result. Prune while no run writes to the same backbone and dataset, or those runs may report
one shard as corrupt and encode its images again.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Sequence

from tabulate import tabulate

from tools.arguments import positive_number
from trainers.feature_store import DEFAULT_ROOT, ENV_VAR, FeatureStore, ShardInfo, store_root

DAY = 86400.0


def backbone_label(shard: ShardInfo) -> str:
    """The name the writing run gave its backbone, and the first digits of its weights' SHA-256."""
    sha = str(shard.namespace.identity.get("backbone_sha256", "?"))[:12]
    return f"{shard.about.get('backbone', '?')} ({sha})"


def view_label(shard: ShardInfo) -> str:
    view = shard.namespace.identity.get("view", {})
    if view.get("kind") == "augmented":
        return f"augmented #{view.get('index')}"
    return str(view.get("kind", "?"))


def listing(shards: Sequence[ShardInfo]) -> list[list[str]]:
    """One row per (backbone, precision, device, view, dataset, split): images, shards, size."""
    groups: dict[tuple[str, ...], list[ShardInfo]] = defaultdict(list)
    for shard in shards:
        identity = shard.namespace.identity
        key = (
            backbone_label(shard),
            str(identity.get("precision", "?")),
            str(identity.get("device", "?")),
            view_label(shard),
            shard.group,
            str(shard.about.get("split", "?")),
        )
        groups[key].append(shard)
    rows = []
    for key in sorted(groups):
        members = groups[key]
        images = len({k for shard in members for k in shard.keys})
        size = sum(shard.size for shard in members)
        rows.append([*key, str(images), str(len(members)), f"{size / 2**20:.2f}"])
    return rows


def matches(shard: ShardInfo, args: argparse.Namespace, now: float) -> bool:
    if args.backbone:
        sha = str(shard.namespace.identity.get("backbone_sha256", ""))
        by_sha = len(args.backbone) >= 6 and sha.startswith(args.backbone.lower())
        if not by_sha and shard.about.get("backbone") != args.backbone:
            return False
    if args.dataset and shard.group.lower() != args.dataset.lower():
        return False
    if args.older_than is not None and now - shard.created < args.older_than * DAY:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", default="", help=f"store folder (default: ${ENV_VAR}, else {DEFAULT_ROOT})"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="what the store holds")
    prune = commands.add_parser("prune", help="remove shards matching every filter given")
    prune.add_argument("--backbone", help="backbone name as runs gave it, or a SHA-256 prefix")
    prune.add_argument("--dataset", help="DATASET.NAME, e.g. Caltech101")
    prune.add_argument(
        "--older-than", type=positive_number, metavar="DAYS", help="written more than DAYS ago"
    )
    prune.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")
    args = parser.parse_args(argv)

    store = FeatureStore(store_root(args.root))
    if not store.root.is_dir():
        print(f"No feature store at {store.root} (nothing was encoded there yet).")
        return 0
    shards = store.shards()
    if args.command == "list":
        rows = listing(shards)
        headers = ["backbone", "precision", "device", "view", "dataset", "split", "images"]
        print(f"Feature store: {store.root}")
        print(tabulate(rows, headers=[*headers, "shards", "MB"], disable_numparse=True))
        total = sum(shard.size for shard in shards)
        print(f"Total: {len(shards)} shards, {total / 2**20:.2f} MB")
        return 0

    if not (args.backbone or args.dataset or args.older_than is not None):
        print(
            "ERROR: prune needs at least one filter: --backbone, --dataset or --older-than "
            "(to empty the store, delete its folder).",
            file=sys.stderr,
        )
        return 2
    now = time.time()
    chosen = [shard for shard in shards if matches(shard, args, now)]
    size = sum(shard.size for shard in chosen)
    verb = "Would remove" if args.dry_run else "Removed"
    if not args.dry_run:
        for shard in chosen:
            shard.remove()
            try:
                shard.index_path.parent.rmdir()  # only once the dataset folder is empty
            except OSError:
                pass
    print(f"{verb} {len(chosen)} of {len(shards)} shards ({size / 2**20:.2f} MB) from {store.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
