"""Food101: images/<dish>/<id>.jpg, split per class 50/20/30 when the split file is absent."""

import json

from datasets.food101 import Food101
from tests.datasets.conftest import (
    SplitCase,
    build,
    split_counts,
    write_class_folders,
)

COUNTS = {"apple_pie": 10, "baby_back_ribs": 7, "beignets": 12}  # folder names sort in this order
SPLIT_NAME = "split_zhou_Food101.json"


def write_food(root):
    ds_dir = root / "food-101"
    write_class_folders(ds_dir / "images", COUNTS)
    (ds_dir / "meta").mkdir()  # shipped with the archive, not read
    return ds_dir


def test_images_stay_in_the_folder_of_their_class(tmp_path):
    ds_dir = write_food(tmp_path)
    ds = build(Food101, tmp_path)
    for item in ds.train_x + ds.val + ds.test:
        assert item.impath.startswith(str(ds_dir / "images" / item.classname) + "/")

    split = json.loads((ds_dir / SPLIT_NAME).read_text())
    assert all(rel.split("/")[0] == name for rel, _, name in split["val"])


CASE = SplitCase(
    Food101, write_food, list(COUNTS), split_counts(COUNTS.values()),
    missing=("images",), shots=5, published=dict.fromkeys(COUNTS, (6, 5, 2)),
)
