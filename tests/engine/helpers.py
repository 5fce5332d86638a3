"""Shared set-up for engine tests: command lines for train.py on the tiny dataset."""

import os
import subprocess
import sys
from pathlib import Path

import torch

import tests.support.tiny_data  # noqa: F401  (registers TinyImages)
import train
from dassl.utils.logger import close_logger

from . import special_trainers  # noqa: F401  (registers the test trainers)

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "linear_head"  # what UpstreamStyleTrainer registers


def train_argv(
    root: Path, output_dir: Path, trainer: str = "UpstreamStyleTrainer", **overrides: str
) -> list[str]:
    """train.py arguments for a 4-epoch run: 3 batches/epoch, val-picked best, every epoch saved.

    ``overrides`` maps config keys (dots as ``__``) to values, e.g. ``OPTIM__MAX_EPOCH="2"``.
    """
    opts = {
        "DATASET.NAME": "TinyImages",
        "INPUT.SIZE": "(32, 32)",
        "INPUT.TRANSFORMS": "['random_flip', 'normalize']",
        "DATALOADER.NUM_WORKERS": "0",
        "DATALOADER.TRAIN_X.BATCH_SIZE": "4",
        "DATALOADER.TEST.BATCH_SIZE": "8",
        "OPTIM.NAME": "sgd",
        "OPTIM.LR": "0.01",
        "OPTIM.MAX_EPOCH": "4",
        "OPTIM.LR_SCHEDULER": "cosine",
        "TRAIN.CHECKPOINT_FREQ": "1",
        "TRAIN.PRINT_FREQ": "2",
        "TEST.FINAL_MODEL": "best_val",
        "USE_CUDA": "False",
    }
    opts.update({key.replace("__", "."): value for key, value in overrides.items()})
    argv = ["--root", str(root), "--output-dir", str(output_dir), "--seed", "1"]
    argv += ["--trainer", trainer]
    for key, value in opts.items():
        argv += [key, value]
    return argv


# Runs train.py's main with the test dataset and trainers registered (they live under tests/).
SUBPROCESS_MAIN = (
    "import sys, torch; torch.set_num_threads(1); "
    "import tests.support.tiny_data, tests.engine.special_trainers, train; "
    "train.main(train.build_parser().parse_args(sys.argv[1:]))"
)


def start_train_subprocess(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-c", SUBPROCESS_MAIN, *argv],
        cwd=REPO_ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def load_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


def run_train_in_process(argv: list[str]) -> str:
    """train.main in this process, on one thread like the subprocesses; returns its log text."""
    args = train.build_parser().parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train.main(args, argv)
    finally:
        torch.set_num_threads(threads)
        close_logger()
    output_dir = Path(args.output_dir)
    newest_log = max(output_dir.glob("log.txt*"), key=lambda p: p.stat().st_mtime_ns)
    return newest_log.read_text()
