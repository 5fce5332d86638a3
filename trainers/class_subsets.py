"""ImageNet-A / ImageNet-R as 200-class subsets of ImageNet, for evaluating ImageNet checkpoints.

The mapping is shipped as data (trainers/data/imagenet_a_r_indices.json): for each dataset, the
ImageNet row of each of its classes, both sides in sorted-wnid order.
"""

import json
from functools import cache
from pathlib import Path

INDEX_FILE = Path(__file__).parent / "data" / "imagenet_a_r_indices.json"
NUM_IMAGENET_CLASSES = 1000


@cache
def _load() -> dict[str, tuple[int, ...]]:
    with open(INDEX_FILE) as f:
        raw = json.load(f)
    return {name: tuple(rows) for name, rows in raw.items() if not name.startswith("_")}


def imagenet_rows(dataset_name: str) -> list[int] | None:
    """ImageNet rows kept by `dataset_name`, or None when it is not an ImageNet subset."""
    rows = _load().get(dataset_name)
    return None if rows is None else list(rows)


def subset_datasets() -> list[str]:
    return sorted(_load())
