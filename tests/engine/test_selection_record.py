"""How a result was selected, recorded truthfully: a best-val pick on a dataset whose val split
is its test split is refused unless TEST.SELECT_ON_TEST allows it, and is then recorded as read
on test; an evaluation keeps the selection of the run it loads."""

from pathlib import Path

import pytest

from dassl.data.data_manager import val_reads_test
from dassl.data.datasets import Datum
from dassl.evaluation.result_record import read_result_record
from datasets.synthetic import write_tiny_image_dataset
from tests.support.tiny_run import run_train_in_process

from .helpers import MODEL_NAME, train_argv


@pytest.fixture(scope="module")
def no_val_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("no_val")
    write_tiny_image_dataset(root, per_class=(4, 0, 3))
    return root


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    write_tiny_image_dataset(root)
    return root


class _Split:
    def __init__(self, val: list[Datum], test: list[Datum]) -> None:
        self.val, self.test = val, test


def test_val_reads_test_when_missing_or_made_of_test_images():
    a, b, c = (Datum(impath=f"/{name}.png", label=0) for name in "abc")
    assert not val_reads_test(_Split(val=[a], test=[b, c]))
    assert val_reads_test(_Split(val=[], test=[b, c]))  # Dassl evaluates test instead
    assert val_reads_test(_Split(val=[b], test=[b, c]))  # ImageNet: val is the test set


def test_best_val_on_test_is_refused_before_training(tmp_path, no_val_root):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="TEST.SELECT_ON_TEST True") as err:
        run_train_in_process(train_argv(no_val_root, out, OPTIM__MAX_EPOCH="1"))
    assert "TEST.FINAL_MODEL last_step" in str(err.value)
    assert not (out / MODEL_NAME).exists()  # nothing trained


def test_best_val_on_test_when_allowed_is_recorded_as_read_on_test(tmp_path, no_val_root):
    out = tmp_path / "run"
    log = run_train_in_process(
        train_argv(no_val_root, out, OPTIM__MAX_EPOCH="2", TEST__SELECT_ON_TEST="True")
    )
    assert "Warning: TEST.FINAL_MODEL best_val picks the epoch on the val split" in log
    selection = read_result_record(out)["selection"]
    assert selection == {"rule": "best_val", "val_split": "test", "val_size": 9}


def test_an_evaluation_keeps_the_selection_of_the_run_it_loads(tmp_path, tiny_root):
    trained = tmp_path / "trained"
    run_train_in_process(train_argv(tiny_root, trained, OPTIM__MAX_EPOCH="2"))
    assert read_result_record(trained)["selection"]["val_split"] == "val"
    evaluation = tmp_path / "eval"
    argv = train_argv(tiny_root, evaluation, OPTIM__MAX_EPOCH="2")
    run_train_in_process(["--eval-only", "--model-dir", str(trained), *argv])
    assert read_result_record(evaluation)["selection"] == read_result_record(trained)["selection"]
    # an upstream run (no result record) cannot tell which split picked its best epoch
    (trained / "result.json").unlink()
    run_train_in_process(["--eval-only", "--model-dir", str(trained), *argv])
    selection = read_result_record(evaluation)["selection"]
    assert selection == {"rule": "best_val", "val_split": None, "val_size": None}
