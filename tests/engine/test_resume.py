"""A run killed mid-training and restarted with the same command equals an uninterrupted run."""

import shutil
import signal
from pathlib import Path

import pytest

from datasets.synthetic import write_tiny_image_dataset
from tests.support.tiny_run import run_train_in_process

from .helpers import (
    MODEL_NAME,
    assert_same_tensors,
    load_state,
    start_train_subprocess,
    train_argv,
)
from .special_trainers import KILL_ENV


@pytest.mark.slow
def test_killed_run_resumes_to_identical_weights(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_tiny_image_dataset(root)
    full_dir, killed_dir = tmp_path / "full", tmp_path / "killed"
    full_argv = train_argv(root, full_dir, trainer="KillableTrainer")
    killed_argv = train_argv(root, killed_dir, trainer="KillableTrainer")

    # The subprocess kills itself at epoch 3, batch 2: after the epoch-2 checkpoint and one more
    # (lost) optimizer step. The reference run goes meanwhile, in this process.
    killed = start_train_subprocess(killed_argv, env={KILL_ENV: "batch:3:2@KILL"})
    full_out = run_train_in_process(full_argv)
    code, killed_out = killed.wait()
    assert code == -signal.SIGKILL, killed_out
    assert "epoch [3/4] batch [2/3]" not in killed_out
    assert (killed_dir / MODEL_NAME / "checkpoint").read_text().strip() == "model.pth.tar-2"
    assert not (killed_dir / MODEL_NAME / "model.pth.tar-3").exists()

    # Resume twice, side by side: the same command, and --resume from a copy into a new folder.
    shutil.copytree(killed_dir, tmp_path / "killed_copy")
    flag_dir = tmp_path / "resumed_elsewhere"
    resumed = start_train_subprocess(killed_argv)
    flagged_out = run_train_in_process(
        ["--resume", str(tmp_path / "killed_copy"), *train_argv(root, flag_dir)]
    )
    code, resumed_out = resumed.wait()
    assert code == 0, resumed_out
    for out, out_dir in ((resumed_out, killed_dir), (flagged_out, flag_dir)):
        assert "Previous epoch: 2" in out
        assert "epoch [1/4]" not in out and "epoch [3/4]" in out
        for filename in ("model.pth.tar-4", "model-best.pth.tar"):
            full_ck = load_state(full_dir / MODEL_NAME / filename)
            resumed_ck = load_state(out_dir / MODEL_NAME / filename)
            assert full_ck["epoch"] == resumed_ck["epoch"]
            assert_same_tensors(full_ck["state_dict"], resumed_ck["state_dict"])
            full_momentum = full_ck["optimizer"]["state"]
            resumed_momentum = resumed_ck["optimizer"]["state"]
            for param_id in full_momentum:
                assert_same_tensors(full_momentum[param_id], resumed_momentum[param_id])
        # The same final test result lines.
        assert _final_result(full_out) == _final_result(out)

    # The first run's log survived next to the resumed run's.
    logs = sorted(p.name for p in killed_dir.iterdir() if p.name.startswith("log.txt"))
    assert len(logs) == 2 and logs[0] == "log.txt"
    assert "epoch [1/4]" in (killed_dir / "log.txt").read_text()
    assert "Previous epoch: 2" in (killed_dir / logs[1]).read_text()


def _final_result(out: str) -> list[str]:
    after = out.split("Finish training")[1]
    return [line for line in after.splitlines() if line.startswith("* ")]
