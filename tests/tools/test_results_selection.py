"""The selection of each result in the tables and the audit: runs selected differently never
share a cell, and --audit lists the runs whose selection read the test split or cannot tell."""

from __future__ import annotations

from pathlib import Path

import pytest

from dassl.evaluation.result_record import write_result_record
from tests.tools.logs import training_log, write_log, write_run
from tools import parse_test_res as ptr
from tools.results import render
from tools.results.runs import collect_records, collect_settings
from tools.results.tables import Results, by_dataset

LAST_FIXED = {"selection": {"rule": "last_epoch"}, "hyperparameters": {"rule": "fixed"}}
PAPER = {"rule": "fixed", "source": "paper"}
VAL_SEARCH = {"rule": "searched", "split": "val", "size": 20, "space": {}, "winner": {}}
TEST_SEARCH = {**VAL_SEARCH, "split": "test"}
BEST_ON_TEST = {"rule": "best_val", "val_split": "test", "val_size": 30}
BEST_ON_VAL = {"rule": "best_val", "val_split": "val", "val_size": 20}


def recorded_run(root: Path, where: str, accuracy: float, seed: int, **record) -> Path:
    run = write_run(root, where, accuracy, DATASET__NUM_SHOTS=4, SEED=seed)
    write_result_record(
        run, {"split": "test", "accuracy": accuracy, "error": 100 - accuracy, "macro_f1": 0.0,
              **record},
    )  # fmt: skip
    return run


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """TaskRes on Caltech101 at 4 shots, seeds 1-2 (accuracy 70 + kind index + seed), selected
    six ways, plus an upstream run."""
    kinds = {
        "paper": {"selection": {"rule": "last_epoch"}, "hyperparameters": PAPER},
        "searched": {"selection": {"rule": "last_epoch"}, "hyperparameters": VAL_SEARCH},
        "best_val": {"selection": BEST_ON_VAL, "hyperparameters": PAPER},
        "on_test": {"selection": BEST_ON_TEST, "hyperparameters": PAPER},
        "searched_on_test": {"selection": {"rule": "last_epoch"}, "hyperparameters": TEST_SEARCH},
        "older_record": {"selection": {"rule": "last_epoch"}},  # no hyperparameters entry
    }
    for offset, (name, record) in enumerate(kinds.items()):
        for seed in (1, 2):
            recorded_run(tmp_path, f"{name}/seed{seed}", 70.0 + offset + seed, seed, **record)
    upstream = tmp_path / "FINAL/debug/caltech101/adam_lr2e-3_B256_ep100_4shots/seed1"
    write_log(upstream, training_log(60.0))
    return tmp_path


def test_runs_selected_differently_get_rows_of_their_own(mixed):
    results = Results(collect_records(collect_settings(mixed)), "accuracy")
    table = by_dataset(results, shots=4)
    rows = {" / ".join(labels): render.cell_text(cells[0]) for labels, cells in table.rows}
    # every selection its own row: epoch and hyperparameters differ, so both are named
    assert rows == {
        "TaskRes [selection: last epoch, fixed, from the paper]": "71.50 ± 0.50 (n=2)",
        "TaskRes [selection: last epoch, searched on val]": "72.50 ± 0.50 (n=2)",
        "TaskRes [selection: best val epoch, fixed, from the paper]": "73.50 ± 0.50 (n=2)",
        "TaskRes [selection: best epoch on test, fixed, from the paper]": "74.50 ± 0.50 (n=2)",
        "TaskRes [selection: last epoch, searched on test]": "75.50 ± 0.50 (n=2)",
        "TaskRes [selection: last epoch, hyperparameters unrecorded]": "76.50 ± 0.50 (n=2)",
        "TaskRes [selection: epoch unrecorded, hyperparameters unrecorded]": "60.00 (n=1)",
    }


def test_one_selection_is_named_in_the_title_not_the_rows(tmp_path):
    for seed in (1, 2):
        recorded_run(tmp_path, f"a/seed{seed}", 70.0, seed, **LAST_FIXED)
    table = by_dataset(Results(collect_records(collect_settings(tmp_path)), "accuracy"))
    assert [labels for labels, _ in table.rows] == [["TaskRes"]]
    assert "selection: last epoch, fixed" in table.title


def test_audit_lists_runs_that_read_test_or_cannot_tell(mixed, capsys):
    assert ptr.main([str(mixed), "--audit"]) == 1
    out = capsys.readouterr().out
    audit = out[out.index("Selection audit") :].splitlines()
    assert "7 of 13 test result(s)" in audit[0]
    read_test = sorted(line.split()[2] for line in audit[1:] if "read test" in line)
    cannot_tell = sorted(line.split()[2] for line in audit[1:] if "cannot tell" in line)
    assert read_test == [
        f"{kind}/seed{s}:" for kind in ("on_test", "searched_on_test") for s in (1, 2)
    ]
    assert cannot_tell == [
        "FINAL/debug/caltech101/adam_lr2e-3_B256_ep100_4shots/seed1:",
        "older_record/seed1:",
        "older_record/seed2:",
    ]
    assert "picked on the test split" in out and "no result record (an upstream run)" in out


def test_audit_of_a_clean_tree_exits_zero(tmp_path, capsys):
    recorded_run(tmp_path, "a/seed1", 70.0, 1, selection=BEST_ON_VAL, hyperparameters=VAL_SEARCH)
    # a search candidate tests the val split: it reports no test result, so it is not audited
    run = write_run(tmp_path, "candidate/seed1", 71.0, TEST__SPLIT="val")
    write_result_record(
        run, {"split": "val", "accuracy": 71.0, "error": 29.0, "macro_f1": 0.0, **LAST_FIXED}
    )
    assert ptr.main([str(tmp_path), "--audit"]) == 0
    assert "none of the 1 test result(s) read the test split" in capsys.readouterr().out
