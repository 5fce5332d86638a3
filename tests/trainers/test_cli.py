"""The methods through `train.py`, as users run them (one subprocess, several commands)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.tiny_clip import TINY_INPUT_SIZE

from .conftest import NUM_CLASSES, PER_CLASS

REPO = Path(__file__).resolve().parents[2]

# Runs train.main() once per argument list; TinyImages must be registered first.
RUNNER = """
import json, sys
import datasets.synthetic
import train
for args in json.loads(sys.argv[1]):
    train.main(train.build_parser().parse_args(args))
"""


def _accuracies(text: str) -> list[float]:
    """Test-split accuracies (per-epoch val evaluations print result lines too)."""
    found = re.findall(r"Evaluate on the \*test\* set.*?\* accuracy: ([\d.]+)%", text, re.S)
    return [float(x) for x in found]


def test_train_then_eval_only_and_zero_shot_via_train_py(vit_clip, data_root, tmp_path):
    common = ["--root", str(data_root), "--seed", "1"]
    opts = [
        "DATASET.NAME", "TinyImages", "MODEL.BACKBONE.NAME", str(vit_clip),
        "INPUT.SIZE", f"({TINY_INPUT_SIZE}, {TINY_INPUT_SIZE})", "DATALOADER.NUM_WORKERS", "0",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "6", "OPTIM.NAME", "adam", "OPTIM.LR", "0.05",
        "TRAIN.CHECKPOINT_FREQ", "1", "TEST.FINAL_MODEL", "best_val", "USE_CUDA", "False",
    ]  # fmt: skip
    run, zs, lp = tmp_path / "taskres", tmp_path / "zs", tmp_path / "lp"
    commands = [
        ["--trainer", "TaskRes", "--output-dir", str(run), *common, *opts,
         "OPTIM.MAX_EPOCH", "3", "TRAINER.TaskRes.PREC", "fp32"],
        ["--trainer", "TaskRes", "--output-dir", str(tmp_path / "eval_best"), "--eval-only",
         "--model-dir", str(run), *common, *opts, "TRAINER.TaskRes.PREC", "fp32"],
        ["--trainer", "TaskRes", "--output-dir", str(tmp_path / "eval_e2"), "--eval-only",
         "--model-dir", str(run), "--load-epoch", "2", *common, *opts],
        ["--trainer", "ZeroshotCLIP", "--output-dir", str(zs), "--eval-only", *common, *opts],
        ["--trainer", "LinearProbeCLIP", "--output-dir", str(lp), *common, *opts,
         "TRAINER.LINEAR_PROBE.SEARCH_STEPS", "1"],
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(commands)],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # tiny models: threads only add overhead
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    accs = _accuracies(proc.stdout)
    assert len(accs) == 5, proc.stdout[-3000:]
    trained, from_best, from_epoch2, zero_shot, probe = accs
    assert from_best == trained  # the run deployed its best-val model, as the eval does
    assert "prompt_learner/model.pth.tar-2" in proc.stdout
    assert "PREC=fp16 needs a CUDA device" in proc.stdout  # the default PREC, on CPU
    assert (run / "prompt_learner" / "model-best.pth.tar").is_file()
    assert "load_model() is skipped" in proc.stdout  # zero-shot eval without --model-dir
    assert (lp / "linear_probe" / "model-best.pth.tar").is_file()
    for folder in (run, zs, lp):
        assert _accuracies((folder / "log.txt").read_text())  # result lines reach the log
    # Each of the five test evaluations scored every test image of the tiny dataset.
    totals = re.findall(r"Evaluate on the \*test\* set.*?\* total: ([\d,]+)", proc.stdout, re.S)
    assert totals == [str(NUM_CLASSES * PER_CLASS[2])] * 5


FLAG_CLASH = """
import train
from dassl.engine import TRAINER_REGISTRY
from trainers.clip_base import ClipTrainer
from trainers.methods.taskres import TaskRes


class TaskResVariant(TaskRes):  # inherits --enhanced-base for the same key: allowed
    pass


class Alpha(ClipTrainer):
    CFG_NODE = "ALPHA"
    CLI_FLAGS = {"--shared": ("X", "alpha's")}


class Beta(ClipTrainer):
    CFG_NODE = "BETA"
    CLI_FLAGS = {"--shared": ("Y", "beta's")}


TRAINER_REGISTRY.register(TaskResVariant)
TRAINER_REGISTRY.register(Alpha)
train.build_parser()
print("variant accepted")
TRAINER_REGISTRY.register(Beta)
train.build_parser()
"""


def test_two_methods_cannot_claim_one_flag_for_different_keys():
    result = subprocess.run(
        [sys.executable, "-c", FLAG_CLASH], cwd=REPO, capture_output=True, text=True
    )
    assert result.stdout.strip() == "variant accepted"
    assert result.returncode != 0
    assert (
        "Trainer Beta declares the flag --shared for TRAINER.BETA.Y, but another trainer "
        "declares it for TRAINER.ALPHA.X; rename one of them in its CLI_FLAGS."
    ) in result.stderr
