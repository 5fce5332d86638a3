"""The run scripts with the real train.py: finished identical runs are skipped, a changed config is
refused untouched, and an evaluation takes alpha from the trained run (the reproduction of the
"reused output folder" report: alpha 0.5, then the same command with alpha 1.0 and another lr)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.test_run_identity import snapshot
from tools.demo import write_demo_checkpoint, write_demo_dataset
from tools.parse_test_res import read_run

REPO = Path(__file__).resolve().parents[2]
CONFIG = "adam_lr2e-3_B256_ep100"


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("scripts")
    write_demo_dataset(tmp / "data", per_class=(4, 2, 4))
    clip = write_demo_checkpoint(tmp / "clip.pt")
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "DATA": str(tmp / "data"),
        "OUTPUT_ROOT": str(tmp / "out"),
        "SEEDS": "1",
        "OMP_NUM_THREADS": "1",
    }
    tiny = [
        "MODEL.BACKBONE.NAME", str(clip), "INPUT.SIZE", "(32, 32)", "USE_CUDA", "False",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "8",
        "TRAINER.TaskRes.PREC", "fp32", "TRAIN.PRINT_FREQ", "100",
    ]  # fmt: skip
    return {"env": env, "tiny": tiny, "out": tmp / "out"}


def bash(script: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / script), *args], env=env, cwd=REPO, capture_output=True, text=True
    )


def main_sh(setup: dict, scale: str, *extra: str) -> subprocess.CompletedProcess:
    return bash(
        "scripts/taskres/main.sh", "caltech101", CONFIG, "none", "2", scale,
        *setup["tiny"], "OPTIM.MAX_EPOCH", "2", *extra, env=setup["env"],
    )  # fmt: skip


def test_skip_refuse_and_evaluate_with_the_trained_alpha(setup):
    first = main_sh(setup, "0.5")
    assert first.returncode == 0, first.stderr[-2000:]
    run_dir = setup["out"] / f"FINAL/debug/caltech101/{CONFIG}_2shots/seed1"
    trained_accuracy = read_run(run_dir).metrics["accuracy"]
    before = snapshot(run_dir)

    again = main_sh(setup, "0.5")
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"Skipping {run_dir}: it already holds a finished run with this config" in again.stdout
    assert snapshot(run_dir) == before

    changed = main_sh(setup, "1.0", "OPTIM.LR", "0.05")
    assert changed.returncode != 0
    assert "TRAINER.TaskRes.RESIDUAL_SCALE: 0.5 in the folder, 1.0 now" in changed.stderr
    assert "OPTIM.LR: 0.002 in the folder, 0.05 now" in changed.stderr
    assert "Skipping" not in changed.stdout
    assert snapshot(run_dir) == before

    eval_dir = setup["out"] / "eval"
    evaluated = bash(
        "scripts/taskres/eval.sh", "caltech101", CONFIG, str(eval_dir), str(run_dir.parent),
        *setup["tiny"], env=setup["env"],
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    log = (eval_dir / "seed1" / "log.txt").read_text()
    assert "TRAINER.TaskRes.RESIDUAL_SCALE=0.5" in log
    assert "model.pth.tar-2" in log  # the trained run's last_step model
    assert read_run(eval_dir / "seed1").metrics["accuracy"] == trained_accuracy
