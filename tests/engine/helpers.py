"""Shared set-up for engine tests: command lines for train.py on the tiny dataset."""

import os
import signal
from pathlib import Path

import torch

from tests.support.tiny_run import tiny_run_argv
from tests.support.warm_process import WarmPython

from .special_trainers import KILL_ENV

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "linear_head"  # what UpstreamStyleTrainer registers


# The engine tests' run on top of TINY_RUN: 3 batches/epoch, val-picked best, every epoch saved.
ENGINE_RUN = {
    "INPUT.TRANSFORMS": "['random_flip', 'normalize']",
    "DATALOADER.TRAIN_X.BATCH_SIZE": "4",
    "DATALOADER.TEST.BATCH_SIZE": "8",
    "OPTIM.NAME": "sgd",
    "OPTIM.LR": "0.01",
    "OPTIM.MAX_EPOCH": "4",
    "OPTIM.LR_SCHEDULER": "cosine",
    "TRAIN.CHECKPOINT_FREQ": "1",
    "TRAIN.PRINT_FREQ": "2",
    "TEST.FINAL_MODEL": "best_val",
}


def train_argv(
    root: Path, output_dir: Path, trainer: str = "UpstreamStyleTrainer", **overrides: str
) -> list[str]:
    """train.py arguments for a 4-epoch ENGINE_RUN.

    ``overrides`` maps config keys (dots as ``__``) to values, e.g. ``OPTIM__MAX_EPOCH="2"``.
    """
    keys = {**ENGINE_RUN, **{key.replace("__", "."): value for key, value in overrides.items()}}
    return tiny_run_argv(trainer, root, output_dir, keys)


# Runs train.py's main with the test dataset and trainers registered (they live under tests/).
SUBPROCESS_MAIN = (
    "import sys, datasets.synthetic, tests.engine.special_trainers, train; "
    "train.main(train.build_parser().parse_args(sys.argv[1:]))"
)


def start_train_subprocess(argv: list[str], env: dict[str, str] | None = None) -> WarmPython:
    """train.py in a process of its own (a session leader, which a test may signal whole), forked
    with torch already imported (tests/support/warm_process.py)."""
    return WarmPython(["-c", SUBPROCESS_MAIN, *argv], env={**os.environ, **(env or {})})


def run_train_subprocess(argv: list[str], kill: str | None = None) -> tuple[int, str]:
    """train.py in a process of its own, signalled at the point ``kill`` names (see KILL_ENV);
    returns its exit status and output."""
    proc = start_train_subprocess(argv, env={KILL_ENV: kill} if kill else None)
    return proc.wait(timeout=300)


# What each KILL_ENV signal must end with: kill -9 as the kernel does it; SIGINT and SIGTERM
# by the trainer's own clean exit, 128 + the signal number.
EXIT_STATUS = {
    "KILL": -signal.SIGKILL,
    "TERM": 128 + signal.SIGTERM,
    "INT": 128 + signal.SIGINT,
    "INT2": 128 + signal.SIGINT,
    "TERM-GROUP": 128 + signal.SIGTERM,
}


def load_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


def assert_same_checkpoint(a: object, b: object, where: str = "checkpoint") -> None:
    """Equal down to the last bit: tensors by torch.equal, everything else by ==."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys differ"
        for key in a:
            assert_same_checkpoint(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_checkpoint(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def final_result(log: str) -> list[str]:
    """The result lines of the test after training."""
    after = log.split("Finish training")[1]
    return [line for line in after.splitlines() if line.startswith("* ")]
