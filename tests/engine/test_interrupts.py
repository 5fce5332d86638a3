"""Runs stopped at named points by kill -9, SIGTERM and SIGINT, each time started again with the
same command, end exactly as an uninterrupted run: the same files, weights, optimizer, scheduler,
GradScaler and RNG states, and the same test result; ``--load-epoch`` works afterwards."""

import os
import re
from pathlib import Path

import pytest

from datasets.synthetic import write_tiny_image_dataset
from tests.support.tiny_clip import tiny_clip_checkpoint
from tests.support.tiny_run import run_train_in_process

from .helpers import (
    EXIT_STATUS,
    assert_same_checkpoint,
    final_result,
    load_state,
    run_train_subprocess,
    train_argv,
)

# (kill point, what the output must say). Every resume counts on the default checkpoint policy
# (TRAIN.CHECKPOINT_FREQ 0): no setting is needed.
BEST_VAL_CHAIN = [
    # Between the best-model save and the epoch save: the pointer must not name the best file.
    ("best-saved:1@KILL", None),
    ("epoch-write:1@TERM", 'SIGTERM during the start of epoch 2/4. {resume}-1"'),
    ("batch:2:2@INT", 'SIGINT during epoch 2/4 (after batch 2/3). {resume}-1"'),
    ("val:2@KILL", None),
    ("epoch-write:2@KILL", None),  # leaves a half-written temp file
    ("before-prune:3@KILL", "left by an interrupted write"),  # leaves model.pth.tar-2 behind
    ("test@INT2", 'Second SIGINT: stopped at once. {resume}-4"'),
]
LAST_STEP_CHAIN = [
    ("batch:1:2@KILL", None),
    ("epoch-write:2@INT", 'SIGINT during the start of epoch 3/4. {resume}-2"'),
    ("before-prune:3@TERM", 'SIGTERM during the start of epoch 4/4. {resume}-3"'),
    ("test@KILL", None),
]


def _check_pointer(model_dir: Path) -> None:
    """The pointer, if any, names an epoch file that exists (never model-best.pth.tar)."""
    pointer = model_dir / "checkpoint"
    if pointer.exists():
        target = pointer.read_text().strip()
        assert re.fullmatch(r"model\.pth\.tar-\d+", target), target
        assert (model_dir / target).is_file(), target


def _interrupt_then_finish(argv: list[str], model_dir: Path, chain: list) -> list[str]:
    logs = []
    for kill, expected in chain:
        code, log = run_train_subprocess(argv, kill)
        assert code == EXIT_STATUS[kill.partition("@")[2]], f"{kill}: exit {code}\n{log[-4000:]}"
        logs.append(log)
        if expected is not None:
            resume = (
                "Finished epochs are saved: run the same command again to resume from "
                f'"{model_dir}/model.pth.tar'
            )
            assert expected.format(resume=resume) in log, f"{kill}\n{log[-4000:]}"
        _check_pointer(model_dir)
    code, log = run_train_subprocess(argv)
    assert code == 0, log[-4000:]
    return [*logs, log]


def _assert_same_run(full_dir: Path, resumed_dir: Path, model_name: str) -> None:
    full, resumed = full_dir / model_name, resumed_dir / model_name
    assert sorted(os.listdir(resumed)) == sorted(os.listdir(full))  # temp files included
    assert (resumed / "checkpoint").read_text() == (full / "checkpoint").read_text()
    for path in full.glob("model*"):
        assert_same_checkpoint(load_state(path), load_state(resumed / path.name), path.name)


@pytest.mark.slow
def test_best_val_run_interrupted_everywhere_equals_an_unbroken_one(tmp_path: Path) -> None:
    # TaskRes caches val/test features on first use, which after every restart happens anew.
    root = tmp_path / "data"
    write_tiny_image_dataset(root)
    clip = tiny_clip_checkpoint(tmp_path)
    opts = {
        "MODEL__BACKBONE__NAME": str(clip),
        "TRAINER__TaskRes__PREC": "fp32",
        "TRAIN__CHECKPOINT_FREQ": "0",
        "OPTIM__LR": "0.5",
    }
    full_dir, resumed_dir = tmp_path / "full", tmp_path / "resumed"
    full_log = run_train_in_process(train_argv(root, full_dir, "KillableTaskRes", **opts))
    argv = train_argv(root, resumed_dir, "KillableTaskRes", **opts)
    logs = _interrupt_then_finish(argv, resumed_dir / "prompt_learner", BEST_VAL_CHAIN)

    _assert_same_run(full_dir, resumed_dir, "prompt_learner")
    assert sorted(os.listdir(full_dir / "prompt_learner")) == [
        "checkpoint",
        "model-best.pth.tar",
        "model.pth.tar-4",
    ]
    assert final_result(logs[-1]) == final_result(full_log)
    eval_log = run_train_in_process(
        ["--eval-only", "--model-dir", str(resumed_dir), "--load-epoch", "4"]
        + train_argv(root, tmp_path / "eval", "KillableTaskRes", **opts)
    )
    assert 'model.pth.tar-4" (epoch = 4)' in eval_log


@pytest.mark.slow
def test_last_step_run_interrupted_everywhere_equals_an_unbroken_one(tmp_path: Path) -> None:
    # ScaledTrainer also carries an amp GradScaler whose scale grows as it steps.
    root = tmp_path / "data"
    write_tiny_image_dataset(root)
    opts = {"TEST__FINAL_MODEL": "last_step", "TRAIN__CHECKPOINT_FREQ": "0"}
    full_dir, resumed_dir = tmp_path / "full", tmp_path / "resumed"
    full_log = run_train_in_process(train_argv(root, full_dir, "ScaledTrainer", **opts))
    argv = train_argv(root, resumed_dir, "ScaledTrainer", **opts)
    logs = _interrupt_then_finish(argv, resumed_dir / "linear_head", LAST_STEP_CHAIN)

    _assert_same_run(full_dir, resumed_dir, "linear_head")
    last = load_state(resumed_dir / "linear_head" / "model.pth.tar-4")
    assert last["scaler"]["scale"] > 2.0**4  # the scale grew, and the resumed run kept it
    assert final_result(logs[-1]) == final_result(full_log)
    eval_log = run_train_in_process(
        ["--eval-only", "--model-dir", str(resumed_dir), "--load-epoch", "4"]
        + train_argv(root, tmp_path / "eval", "ScaledTrainer", **opts)
    )
    accuracy = [line for line in final_result(full_log) if line.startswith("* accuracy")]
    assert accuracy[0] in eval_log.split("Evaluate on the *test* set")[1]


@pytest.mark.slow
def test_sigterm_to_every_process_of_the_job_with_loader_workers(tmp_path: Path) -> None:
    # Slurm and a terminal's Ctrl-C signal the whole process group: DataLoader workers too.
    root = tmp_path / "data"
    write_tiny_image_dataset(root)
    opts = {"DATALOADER__NUM_WORKERS": "1"}
    full_dir, resumed_dir = tmp_path / "full", tmp_path / "resumed"
    run_train_in_process(train_argv(root, full_dir, "KillableTrainer", **opts))
    argv = train_argv(root, resumed_dir, "KillableTrainer", **opts)
    expected = 'SIGTERM during epoch 2/4 (after batch 2/3). {resume}-1"'
    chain = [("batch:2:2@TERM-GROUP", expected)]
    _interrupt_then_finish(argv, resumed_dir / "linear_head", chain)
    _assert_same_run(full_dir, resumed_dir, "linear_head")
