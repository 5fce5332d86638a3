"""Eval-only runs read the trained run's own config.yaml; the command line wins and says so."""

import shutil
from pathlib import Path

import pytest

import train
from dassl.config import run_config
from dassl.config.run_identity import read_recorded_config
from tests.support.tiny_run import full_cfg, run_train_in_process, tiny_run_argv


def argv(trainer: str, clip: Path, root: Path, out: Path, *extra: str) -> list[str]:
    keys = {
        "MODEL.BACKBONE.NAME": clip,
        "INPUT.TRANSFORMS": "['normalize']",
        "OPTIM.MAX_EPOCH": 2,
        "OPTIM.LR": 0.05,
        "TRAINER.TaskRes.PREC": "fp32",
        "TRAINER.COOP.PREC": "fp32",
    }
    return [*tiny_run_argv(trainer, root, out, keys), *extra]


def accuracy(log: str) -> str:
    return [line for line in log.splitlines() if line.startswith("* accuracy")][-1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root, vit_clip) -> tuple[Path, str]:
    """A TaskRes run trained with alpha 0.7 (the config default is 1.0)."""
    out = tmp_path_factory.mktemp("taskres") / "run"
    log = run_train_in_process(
        argv("TaskRes", vit_clip, data_root, out, "TRAINER.TaskRes.RESIDUAL_SCALE", "0.7")
    )
    return out, accuracy(log)


def eval_argv(model_dir: Path, out: Path, clip: Path, root: Path, *extra: str) -> list[str]:
    flags = ["--eval-only", "--model-dir", str(model_dir)]
    return [*flags, *argv("TaskRes", clip, root, out, *extra)]


def test_eval_takes_alpha_and_epoch_from_the_trained_run(trained, tmp_path, vit_clip, data_root):
    model_dir, train_accuracy = trained
    out = tmp_path / "eval"
    log = run_train_in_process(eval_argv(model_dir, out, vit_clip, data_root))
    assert "keys from its config.yaml" in log and "TRAINER.TaskRes.RESIDUAL_SCALE=0.7" in log
    assert accuracy(log) == train_accuracy
    recorded = read_recorded_config(str(out))
    assert recorded["TRAINER.TaskRes.RESIDUAL_SCALE"] == 0.7
    assert recorded["RUN.EVAL_ONLY"] is True
    assert recorded["RUN.LOAD_EPOCH"] == 2  # last_step run: its last epoch file
    assert recorded["RUN.MODEL_DIR"] == str(model_dir.resolve())


def test_the_command_line_wins_and_the_log_says_so(trained, tmp_path, vit_clip, data_root):
    model_dir, _ = trained
    log = run_train_in_process(
        eval_argv(
            model_dir, tmp_path / "eval", vit_clip, data_root,
            "TRAINER.TaskRes.RESIDUAL_SCALE", "0.0",
        )
    )  # fmt: skip
    assert (
        "overrides the trained run's TRAINER.TaskRes.RESIDUAL_SCALE: trained with 0.7, "
        "evaluating with 0.0" in log
    )
    assert read_recorded_config(str(tmp_path / "eval"))["TRAINER.TaskRes.RESIDUAL_SCALE"] == 0.0


def test_a_run_without_config_yaml_is_evaluated_as_upstream_does(
    trained, tmp_path, vit_clip, data_root
):
    model_dir, train_accuracy = trained
    upstream = tmp_path / "upstream"
    shutil.copytree(model_dir / "prompt_learner", upstream / "prompt_learner")
    log = run_train_in_process(
        [
            "--load-epoch", "2",
            *eval_argv(upstream, tmp_path / "eval", vit_clip, data_root,
                       "TRAINER.TaskRes.RESIDUAL_SCALE", "0.7"),
        ]
    )  # fmt: skip
    assert "has no config.yaml" in log
    assert accuracy(log) == train_accuracy


def test_eval_only_without_model_dir_is_refused_for_a_learned_method(tmp_path, vit_clip, data_root):
    with pytest.raises(train.ConfigError, match="untrained"):
        run_train_in_process(["--eval-only", *argv("TaskRes", vit_clip, data_root, tmp_path)])


def test_zero_shot_needs_no_model_dir(tmp_path, vit_clip, data_root):
    log = run_train_in_process(
        ["--eval-only", *argv("ZeroshotCLIP", vit_clip, data_root, tmp_path, "TRAINER.ZSCLIP.PREC",
                              "fp32")]
    )  # fmt: skip
    assert "* accuracy:" in log


def test_another_trainer_than_the_trained_one_is_refused(trained, tmp_path, vit_clip, data_root):
    model_dir, _ = trained
    with pytest.raises(train.ConfigError, match="holds a TaskRes run.*--trainer CoOp"):
        run_train_in_process(
            ["--eval-only", "--model-dir", str(model_dir),
             *argv("CoOp", vit_clip, data_root, tmp_path / "e")]
        )  # fmt: skip


def transfer_cfg(trainer: str, dataset: str, *opts: str):
    cfg = full_cfg({"TRAINER.NAME": trainer, "DATASET.NAME": dataset})
    cfg.merge_from_list(list(opts))
    return cfg


@pytest.mark.parametrize(
    ("trainer", "source", "target", "opts", "allowed"),
    [
        ("TaskRes", "ImageNet", "ImageNetSketch", (), True),
        ("TaskRes", "ImageNet", "ImageNetR", (), True),
        ("TaskRes", "OxfordPets", "Caltech101", (), False),
        ("TaskRes", "ImageNetV2", "ImageNet", (), False),
        ("LinearProbeCLIP", "DescribableTextures", "EuroSAT", (), False),
        ("CoOp", "ImageNet", "Caltech101", ("TRAINER.COOP.CSC", "False"), True),
        ("CoOp", "ImageNet", "Caltech101", ("TRAINER.COOP.CSC", "True"), False),
        ("CLIP_Adapter", "ImageNet", "Food101", (), True),
    ],
)
def test_transfers_to_other_classes(trainer, source, target, opts, allowed):
    cfg = transfer_cfg(trainer, target, *opts)
    trained = {"DATASET.NAME": source, "DATASET.SUBSAMPLE_CLASSES": "all"}
    if allowed:
        run_config.check_transfer(cfg, trained, [])
    else:
        with pytest.raises(train.ConfigError, match=f"trained on {source}.*class-specific"):
            run_config.check_transfer(cfg, trained, [])


def test_base_to_new_with_class_specific_weights_is_refused():
    cfg = transfer_cfg("TaskRes", "Caltech101", "DATASET.SUBSAMPLE_CLASSES", "new")
    with pytest.raises(train.ConfigError, match="base classes"):
        run_config.check_transfer(
            cfg, {"DATASET.NAME": "Caltech101", "DATASET.SUBSAMPLE_CLASSES": "base"}, []
        )


def test_the_input_pipeline_comes_from_the_trained_run(trained, tmp_path, vit_clip, data_root):
    # Only what names the data and the run: no INPUT.* keys, no backbone. The trained run's
    # INPUT.TRANSFORMS holds "normalize", which the test transform must apply as in training.
    model_dir, train_accuracy = trained
    out = tmp_path / "eval"
    log = run_train_in_process(
        ["--eval-only", "--model-dir", str(model_dir), "--root", str(data_root),
         "--trainer", "TaskRes", "--output-dir", str(out),
         "DATASET.NAME", "TinyImages", "DATALOADER.NUM_WORKERS", "0", "USE_CUDA", "False"]
    )  # fmt: skip
    assert "INPUT.TRANSFORMS=['normalize']" in log
    assert accuracy(log) == train_accuracy
    recorded = read_recorded_config(str(out))
    assert recorded["MODEL.BACKBONE.NAME"] == str(vit_clip)
    assert recorded["INPUT.SIZE"] == [32, 32]
