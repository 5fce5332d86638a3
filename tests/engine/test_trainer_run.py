"""Full runs through train.main on the tiny dataset: outputs, eval-only reload, failures."""

import re
from pathlib import Path

import pytest
import torch

import train
from dassl.engine import TRAINER_REGISTRY, build_trainer
from datasets.synthetic import write_tiny_image_dataset
from tests.support.tiny_run import run_train_in_process

from .helpers import (
    MODEL_NAME,
    assert_same_checkpoint,
    assert_same_tensors,
    load_state,
    train_argv,
)

RESULT_LINES = ("* total: ", "* correct: ", "* accuracy: ", "* error: ", "* macro_f1: ")


def _test_accuracy(log: str, marker: str) -> float:
    """The test accuracy printed after ``marker`` (e.g. "Finish training")."""
    after = log.split(marker, 1)[1]
    return float(re.search(r"\* accuracy: ([\d.]+)%", after).group(1))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """One 4-epoch run of the upstream-style trainer, shared by the checks below."""
    tmp = tmp_path_factory.mktemp("run")
    root = tmp / "data"
    write_tiny_image_dataset(root)
    out = tmp / "out"
    # At this LR val accuracy climbs over the epochs and peaks before the last one.
    log = run_train_in_process(train_argv(root, out, OPTIM__LR="0.02"))
    return root, out, log


def test_run_writes_log_lines_checkpoints_and_tensorboard(trained_run) -> None:
    root, out, log = trained_run
    assert (out / "log.txt").read_text() == log
    progress = re.findall(
        r"^epoch \[(\d)/4\] batch \[2/3\] time [\d.]+ \([\d.]+\) data [\d.]+ "
        r"\([\d.]+\) loss [\d.]+ \([\d.]+\)\tacc [\d.]+ \([\d.]+\) "
        r"lr \d\.\d{4}e-\d\d eta \d+:\d\d:\d\d$",
        log,
        flags=re.M,
    )
    assert progress == ["1", "2", "3", "4"]
    for line in RESULT_LINES:
        assert line in log.split("Finish training")[1]
    assert re.search(r"^Elapsed: \d+:\d\d:\d\d$", log, flags=re.M)

    model_dir = out / MODEL_NAME
    names = sorted(p.name for p in model_dir.iterdir())
    assert names == [
        "checkpoint",
        "model-best.pth.tar",
        *(f"model.pth.tar-{e}" for e in (1, 2, 3, 4)),
    ]
    assert (model_dir / "checkpoint").read_text() == "model.pth.tar-4\n"
    last = load_state(model_dir / "model.pth.tar-4")  # weights_only: plain data only
    assert {"state_dict", "epoch", "optimizer", "scheduler", "val_result"} <= last.keys()
    assert last["epoch"] == 4 and last["val_result"] is None
    best = load_state(model_dir / "model-best.pth.tar")
    assert isinstance(best["val_result"], float) and 1 <= best["epoch"] <= 4
    val_accs = [
        float(a)
        for a in re.findall(
            r"\*val\* set\n.*\n=> result\n.*\n.*\n\* accuracy: "
            r"([\d.]+)%",
            log,
        )
    ]
    assert len(val_accs) == 4 and best["val_result"] == max(val_accs)
    assert val_accs.index(max(val_accs)) + 1 == best["epoch"] < 4  # first epoch at the peak
    deployed = log.split("Finish training")[1]
    assert f"Load {model_dir / 'model-best.pth.tar'} to {MODEL_NAME} (epoch={best['epoch']}" in (
        deployed
    )
    assert any((out / "tensorboard").glob("events.out.tfevents.*"))


def test_eval_only_reload_reproduces_test_accuracy(trained_run, tmp_path: Path) -> None:
    root, out, log = trained_run
    trained_acc = _test_accuracy(log, "Finish training")
    eval_out = tmp_path / "eval"
    eval_log = run_train_in_process(
        ["--eval-only", "--model-dir", str(out), *train_argv(root, eval_out)]
    )
    assert f"Load {out / MODEL_NAME / 'model-best.pth.tar'} to {MODEL_NAME}" in eval_log
    assert _test_accuracy(eval_log, "Evaluate on the *test* set") == trained_acc
    assert not (eval_out / MODEL_NAME).exists()  # evaluation writes no checkpoint

    epoch_log = run_train_in_process(
        [
            "--eval-only",
            "--model-dir",
            str(out),
            "--load-epoch",
            "1",
            *train_argv(root, tmp_path / "eval1"),
        ]
    )
    assert f"model.pth.tar-1 to {MODEL_NAME} (epoch=1, val_result=None)" in epoch_log
    # The epoch-1 weights really were loaded: they are worse than the best ones.
    assert _test_accuracy(epoch_log, "Evaluate on the *test* set") < trained_acc


def test_load_model_missing_file_names_path_and_fix(trained_run, tmp_path: Path) -> None:
    root, out, _ = trained_run
    args = train.build_parser().parse_args(train_argv(root, tmp_path / "x"))
    trainer = build_trainer(train.setup_cfg(args))
    with pytest.raises(FileNotFoundError) as err:
        trainer.load_model(str(out), epoch=7)
    message = str(err.value)
    assert str(out / MODEL_NAME / "model.pth.tar-7") in message
    assert "model.pth.tar-4" in message and "--load-epoch" in message


def test_unknown_trainer_lists_registered_ones(tmp_path: Path) -> None:
    args = train.build_parser().parse_args(train_argv(tmp_path, tmp_path, trainer="UpstreamStyle"))
    with pytest.raises(KeyError) as err:
        build_trainer(train.setup_cfg(args))
    message = str(err.value)
    assert '"UpstreamStyle"' in message
    for name in TRAINER_REGISTRY.registered_names():
        assert name in message


def test_missing_trainer_name_says_how_to_set_it(tmp_path: Path) -> None:
    args = train.build_parser().parse_args(train_argv(tmp_path, tmp_path, trainer=""))
    with pytest.raises(ValueError, match="--trainer NAME.*UpstreamStyleTrainer"):
        build_trainer(train.setup_cfg(args))


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_tiny_image_dataset(root)
    out = tmp_path / "out"
    with pytest.raises(FloatingPointError) as err:
        run_train_in_process(train_argv(root, out, trainer="NaNAtEpoch2Trainer"))
    good = out / "model" / "model.pth.tar-1"
    message = str(err.value)
    assert "epoch 2/4, batch 2/3" in message and str(good) in message
    assert sorted(p.name for p in (out / "model").iterdir()) == [
        "checkpoint",
        "model-best.pth.tar",
        "model.pth.tar-1",
    ]
    assert (out / "model" / "checkpoint").read_text() == "model.pth.tar-1\n"
    weights = load_state(good)["state_dict"]
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_following_the_nan_advice_gets_past_the_nan(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_tiny_image_dataset(root)
    # A calm first (warmup) epoch, then an lr so large that the weights overflow in epoch 2.
    opts = {
        "OPTIM__WARMUP_EPOCH": "1",
        "OPTIM__WARMUP_TYPE": "constant",
        "OPTIM__WARMUP_CONS_LR": "0.01",
        "TRAIN__CHECKPOINT_FREQ": "0",
    }
    out = tmp_path / "out"
    with pytest.raises(FloatingPointError) as err:
        run_train_in_process(train_argv(root, out, OPTIM__LR="1e38", **opts))
    message = str(err.value)
    assert "epoch 2/4" in message
    advice = re.search(
        r"`--resume (\S+) --output-dir <new folder> OPTIM\.LR <lower value>`", message
    )
    assert advice and advice.group(1) == str(out)

    lower = tmp_path / "lower"
    log = run_train_in_process(
        ["--resume", advice.group(1), *train_argv(root, lower, OPTIM__LR="0.01", **opts)]
    )
    assert "Previous epoch: 1" in log and "epoch [4/4]" in log
    # From the resumed epoch on, the schedule is that of a run at the lower lr all along.
    fresh = tmp_path / "fresh"
    run_train_in_process(train_argv(root, fresh, OPTIM__LR="0.01", **opts))
    last = f"{MODEL_NAME}/model.pth.tar-4"
    assert_same_checkpoint(
        load_state(lower / last)["scheduler"], load_state(fresh / last)["scheduler"]
    )


def test_save_model_refuses_nan_weights(trained_run, tmp_path: Path) -> None:
    root, out, _ = trained_run
    args = train.build_parser().parse_args(train_argv(root, tmp_path))
    trainer = build_trainer(train.setup_cfg(args))
    trainer.save_model(0, str(tmp_path))
    before = load_state(tmp_path / MODEL_NAME / "model.pth.tar-1")
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="NaN"):
        trainer.save_model(0, str(tmp_path))
    assert_same_tensors(
        before["state_dict"], load_state(tmp_path / MODEL_NAME / "model.pth.tar-1")["state_dict"]
    )


@pytest.mark.gpu
def test_cuda_run_and_eval_only_reload(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_tiny_image_dataset(root)
    out = tmp_path / "out"
    argv = train_argv(root, out, USE_CUDA="True", OPTIM__LR="0.02")
    log = run_train_in_process(argv)
    eval_argv = train_argv(root, tmp_path / "eval", USE_CUDA="True")
    eval_log = run_train_in_process(["--eval-only", "--model-dir", str(out), *eval_argv])
    assert _test_accuracy(eval_log, "Evaluate on the *test* set") == _test_accuracy(
        log, "Finish training"
    )
    best = load_state(out / MODEL_NAME / "model-best.pth.tar")
    assert all(v.device.type == "cpu" for v in best["state_dict"].values())
