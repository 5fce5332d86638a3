"""The validation-free protocol (DATASET.VAL_USE none or train): no val split at all, its images
unused or trained on, recorded in the result record; anything that would select on val is
refused before work starts."""

from pathlib import Path

import pytest

from dassl.config.run_config import ConfigError
from dassl.data import DataManager
from dassl.evaluation.result_record import read_result_record
from datasets.synthetic import write_tiny_image_dataset
from tests.support.tiny_run import run_train_in_process, tiny_run_cfg
from tools.results.selection import selection_of

from .helpers import train_argv

PER_CLASS = (4, 2, 3)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    write_tiny_image_dataset(root, per_class=PER_CLASS)
    return root


@pytest.mark.parametrize(("val_use", "train_size"), [("select", 12), ("none", 12), ("train", 18)])
def test_the_val_images_are_kept_unused_or_trained_on(tiny_root, val_use, train_size):
    dm = DataManager(tiny_run_cfg({"DATASET.ROOT": str(tiny_root), "DATASET.VAL_USE": val_use}))
    assert len(dm.dataset.train_x) == train_size
    assert (dm.val_loader is None) == (val_use != "select")
    assert len(dm.dataset.test) == 9  # the test split is never touched


def test_a_validation_free_run_records_it(tmp_path, tiny_root):
    out = tmp_path / "run"
    argv = train_argv(
        tiny_root,
        out,
        OPTIM__MAX_EPOCH="1",
        TEST__FINAL_MODEL="last_step",
        DATASET__VAL_USE="train",
    )
    run_train_in_process(argv)
    record = read_result_record(out)
    assert record["validation_free"] == {"val_images": "trained"}
    assert record["selection"] == {"rule": "last_epoch"}
    assert record["shots"]["per_class_max"] == 6  # 4 train + 2 val images per class
    assert selection_of(record).label == (
        "last epoch, fixed, validation-free (val images trained on)"
    )


@pytest.mark.parametrize(
    "keys",
    [{"TEST__FINAL_MODEL": "best_val"}, {"TEST__FINAL_MODEL": "last_step", "TEST__SPLIT": "val"}],
)
def test_selecting_on_val_is_refused_before_work(tmp_path, tiny_root, keys):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="validation-free protocol"):
        run_train_in_process(train_argv(tiny_root, out, DATASET__VAL_USE="none", **keys))
    assert not (out / "config.yaml").exists()
