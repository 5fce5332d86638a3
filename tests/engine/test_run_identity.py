"""Run identity: config.yaml is written first, and a folder holding another run is never reused."""

import os
from pathlib import Path

import pytest

import train
from dassl.config.run_identity import (
    COMMAND_FILE,
    CONFIG_FILE,
    IGNORED_KEYS,
    RunConflictError,
    diff_configs,
    flatten,
    read_recorded_config,
)
from dassl.data import data_manager
from datasets.synthetic import write_tiny_image_dataset
from tests.support.tiny_run import full_cfg, run_train_in_process

from .helpers import MODEL_NAME, train_argv


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``folder`` with its size and mtime (to prove nothing was touched)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    write_tiny_image_dataset(root)
    return root


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_root) -> Path:
    out = tmp_path_factory.mktemp("identity") / "run"
    run_train_in_process(train_argv(tiny_root, out, OPTIM__MAX_EPOCH="2"))
    return out


def test_a_run_records_its_config_and_command_line(finished_run, tiny_root):
    recorded = read_recorded_config(str(finished_run))
    assert recorded["OPTIM.MAX_EPOCH"] == 2
    assert recorded["TRAINER.NAME"] == "UpstreamStyleTrainer"
    assert recorded["DATASET.ROOT"] == str(tiny_root.resolve())
    command = (finished_run / COMMAND_FILE).read_text()
    assert "--output-dir" in command and "OPTIM.MAX_EPOCH 2" in command


def test_config_is_written_before_training(tmp_path, tiny_root):
    out = tmp_path / "run"
    run_train_in_process(["--no-train", *train_argv(tiny_root, out)])
    assert (out / CONFIG_FILE).is_file()
    assert not (out / MODEL_NAME).exists()


def test_a_different_config_is_refused_without_touching_the_folder(finished_run, tiny_root):
    before = snapshot(finished_run)
    argv = train_argv(
        tiny_root, finished_run, OPTIM__MAX_EPOCH="2", OPTIM__LR="0.05", OPTIM__NAME="adam"
    )
    with pytest.raises(RunConflictError) as err:
        run_train_in_process(argv)
    message = str(err.value)
    assert "OPTIM.LR: 0.01 in the folder, 0.05 now" in message
    assert "OPTIM.NAME: 'sgd' in the folder, 'adam' now" in message
    assert "--output-dir" in message and "delete" in message
    assert snapshot(finished_run) == before


def test_keys_that_cannot_change_results_are_not_compared(finished_run, tiny_root, capsys):
    argv = train_argv(
        tiny_root, finished_run, OPTIM__MAX_EPOCH="2", TRAIN__PRINT_FREQ="7",
        DATALOADER__NUM_WORKERS="1", TRAIN__CHECKPOINT_FREQ="0",
    )  # fmt: skip
    before = snapshot(finished_run)
    run_train_in_process(["--skip-finished", *argv])
    assert "already holds a finished run with this config" in capsys.readouterr().out
    assert snapshot(finished_run) == before


def test_relative_and_absolute_paths_are_one_run(finished_run, tiny_root, monkeypatch):
    monkeypatch.chdir(tiny_root.parent)
    argv = train_argv(Path(os.path.relpath(tiny_root)), finished_run, OPTIM__MAX_EPOCH="2")
    run_train_in_process(["--skip-finished", *argv])  # no conflict on DATASET.ROOT


def test_an_unfinished_run_resumes_under_skip_finished(tmp_path, tiny_root):
    out = tmp_path / "run"
    run_train_in_process(["--no-train", *train_argv(tiny_root, out, OPTIM__MAX_EPOCH="2")])
    log = run_train_in_process(
        ["--skip-finished", *train_argv(tiny_root, out, OPTIM__MAX_EPOCH="2")]
    )
    assert "* accuracy:" in log


def test_a_folder_with_outputs_but_no_config_is_refused(tmp_path, tiny_root):
    out = tmp_path / "upstream_run"
    (out / MODEL_NAME).mkdir(parents=True)
    (out / MODEL_NAME / "checkpoint").write_text("model.pth.tar-2\n")
    with pytest.raises(RunConflictError, match="no config.yaml"):
        run_train_in_process(train_argv(tiny_root, out))


def test_a_missing_key_in_an_older_record_counts_as_its_default():
    defaults = flatten(full_cfg())
    requested = dict(defaults)
    recorded = {k: v for k, v in defaults.items() if not k.startswith("RUN.")}
    assert diff_configs(recorded, requested, defaults) == []
    requested["RUN.EVAL_ONLY"] = True
    assert [d.key for d in diff_configs(recorded, requested, defaults)] == ["RUN.EVAL_ONLY"]


def test_where_features_come_from_is_not_compared_but_the_protocol_is():
    defaults = flatten(full_cfg())
    sources = {
        "TRAINER.FEATURE_STORE.ENABLED": False,
        "TRAINER.FEATURE_STORE.DIR": "/elsewhere",
        "TRAINER.FEATURE_CACHE.EVAL": False,
        "TRAINER.DECODE_ONCE_MB": 0,
    }
    requested = {**defaults, **sources}
    assert diff_configs(defaults, requested, defaults) == []
    requested["TRAINER.PROTOCOL"] = "views:10"
    assert [d.key for d in diff_configs(defaults, requested, defaults)] == ["TRAINER.PROTOCOL"]


def test_the_ignored_keys_exist():
    assert IGNORED_KEYS <= set(flatten(full_cfg()))


# ---- config values and command-line mistakes, refused before any work -----------------------


def parse(argv: list[str]):
    return train.setup_cfg(train.build_parser().parse_args(argv))


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (["TRAINER.TASKRES.PREC", "fp32"], "Did you mean TRAINER.TaskRes.PREC?"),
        (["OPTIM.LEARNING_RATE", "0.1"], "Unknown config key 'OPTIM.LEARNING_RATE'"),
        (["TEST.FINAL_MODEL", "best"], "choose one of ('last_step', 'best_val')"),
        (["TEST.SPLIT", "train"], "TEST.SPLIT is 'train'"),
        (["OPTIM.MAX_EPOCH", "0"], "needs at least 1 epoch"),
        (["OPTIM.LR"], "must come in pairs"),
        (["OPTIM.LR", "0.1", "--seed", "1"], "put the flags first"),
    ],
)
def test_bad_config_values_are_named(opts, message):
    with pytest.raises(train.ConfigError) as err:
        parse(["--trainer", "TaskRes", *opts])
    assert message in str(err.value)


def test_unknown_key_in_a_config_file_names_the_file(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("OPTIM:\n  LRR: 0.1\n")
    with pytest.raises(train.ConfigError, match=r"m\.yaml.*Did you mean OPTIM\.LR"):
        parse(["--config-file", str(path)])


def test_max_epoch_zero_is_fine_for_an_evaluation():
    assert parse(["--eval-only", "OPTIM.MAX_EPOCH", "0"]).OPTIM.MAX_EPOCH == 0


@pytest.mark.parametrize(("value", "epoch"), [("7", 7), ("best", 0), ("last", -2)])
def test_load_epoch_takes_numbers_best_and_last(value, epoch):
    assert train.build_parser().parse_args(["--load-epoch", value]).load_epoch == epoch


@pytest.mark.parametrize("value", ["0", "-3", "final"])
def test_load_epoch_refuses_non_epochs(value, capsys):
    with pytest.raises(SystemExit):
        train.build_parser().parse_args(["--load-epoch", value])
    assert "is not an epoch" in capsys.readouterr().err


def test_zero_shots_says_the_full_train_set_is_used(tmp_path, tiny_root):
    log = run_train_in_process(
        train_argv(tiny_root, tmp_path / "run", OPTIM__MAX_EPOCH="1", DATASET__NUM_SHOTS="0")
    )
    assert "DATASET.NUM_SHOTS is 0, so the full train set is used" in log


def test_worker_count_is_capped_at_the_usable_cpus(monkeypatch, capsys):
    data_manager.effective_num_workers.cache_clear()
    monkeypatch.setattr(data_manager, "usable_cpu_count", lambda: 2)
    assert data_manager.effective_num_workers(8) == 2
    assert data_manager.effective_num_workers(8) == 2
    assert data_manager.effective_num_workers(1) == 1
    assert capsys.readouterr().out.count("using 2 loader workers") == 1
    data_manager.effective_num_workers.cache_clear()
