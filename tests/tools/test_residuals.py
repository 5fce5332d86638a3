"""The TaskRes residual analysis: the paper's relative transfer difficulty, the residual read from
the checkpoint each run tested, the correlation on constructed data, and missing zero-shot runs
named instead of guessed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dassl.utils import save_checkpoint
from datasets.synthetic import write_tiny_image_dataset
from tests.support.tiny_clip import tiny_clip_checkpoint
from tests.support.tiny_run import run_train_in_process, tiny_run_argv
from tests.tools.logs import training_log, write_log, write_run
from tools import parse_test_res as ptr
from tools.results.figures import residual_figure
from tools.results.residuals import analyse, correlation, relative_transfer_difficulty
from tools.results.runs import collect_records, collect_settings
from tools.results.tables import Results

# dataset -> (classes K, zero-shot accuracy %, residual value per seed); the residual is filled
# with +-value, so its mean |x| is that value.
DATA = {
    "ImageNet": (1000, 60.0, [0.010, 0.012]),
    "Caltech101": (100, 86.0, [0.020, 0.022]),
    "DescribableTextures": (47, 42.0, [0.050, 0.046]),
    "EuroSAT": (10, 37.5, [0.090, 0.100]),
}


def write_taskres(root: Path, dataset: str, seed: int, value: float, classes: int, **keys) -> Path:
    """A finished TaskRes run with its residual checkpoint where the run tested it."""
    run = write_run(
        root, f"taskres/{dataset}/seed{seed}", 70.0, DATASET__NAME=dataset, SEED=seed, **keys
    )
    residual = torch.full((classes, 8), value)
    residual[::2] *= -1
    state = {"base_text_features": torch.zeros(classes, 8), "text_feature_residuals": residual}
    best = keys.get("TEST__FINAL_MODEL") == "best_val"
    save_checkpoint(
        {"state_dict": state, "epoch": 10, "optimizer": None, "scheduler": None},
        str(run / "prompt_learner"),
        is_best=best,
    )
    if best:  # the last epoch's file holds another residual: best_val must not read it
        state["text_feature_residuals"] = torch.full((classes, 8), 9.0)
        save_checkpoint({"state_dict": state, "epoch": 10}, str(run / "prompt_learner"))
    return run


def write_zero_shot(root: Path, dataset: str, accuracy: float, **keys) -> None:
    keys = {"TRAINER__NAME": "ZeroshotCLIP2", "RUN__EVAL_ONLY": True, **keys}
    write_run(
        root, f"zs/{keys['TRAINER__NAME']}/{dataset}", accuracy, DATASET__NAME=dataset, **keys
    )


def write_tree(root: Path, zero_shot: tuple[str, ...] = tuple(DATA)) -> None:
    for dataset, (classes, accuracy, values) in DATA.items():
        for seed, value in enumerate(values, start=1):
            write_taskres(root, dataset, seed, value, classes)
        if dataset in zero_shot:
            write_zero_shot(root, dataset, accuracy)


def analyses_of(root: Path, **kwargs) -> list:
    return analyse(Results(collect_records(collect_settings(root)), "accuracy"), **kwargs)


def test_relative_transfer_difficulty_is_random_guess_over_zero_shot_precision():
    assert relative_transfer_difficulty(50.0, 10) == pytest.approx(0.2)
    assert relative_transfer_difficulty(60.0, 1000) == pytest.approx(1 / 600)
    assert relative_transfer_difficulty(100 / 47, 47) == pytest.approx(1.0)  # chance level
    with pytest.raises(ValueError, match="0"):
        relative_transfer_difficulty(0.0, 10)


def test_correlation_on_constructed_data():
    perfect = correlation([1.0, 2.0, 3.0, 4.0], [3.0, 5.0, 7.0, 9.0])
    assert perfect.pearson == pytest.approx(1.0) and perfect.spearman == pytest.approx(1.0)
    # deviations (-1.5, -.5, .5, 1.5) and (-1.5, .5, -.5, 1.5): r = 4 / sqrt(5 * 5) = 0.8
    swapped = correlation([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0])
    assert swapped.pearson == pytest.approx(0.8) and swapped.spearman == pytest.approx(0.8)
    assert correlation([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]).pearson == pytest.approx(-1.0)
    assert correlation([1.0], [2.0]) is None
    assert correlation([1.0, 2.0], [5.0, 5.0]) is None  # no variation: undefined


def test_points_and_correlation_from_checkpoints_and_zero_shot_runs(tmp_path):
    write_tree(tmp_path)
    (analysis,) = analyses_of(tmp_path)
    assert analysis.zero_shot_trainer == "ZeroshotCLIP2" and analysis.missing == []
    assert [p.dataset for p in analysis.points] == ["imagenet", "caltech101", "dtd", "eurosat"]
    for point, (classes, accuracy, values) in zip(analysis.points, DATA.values()):
        assert point.classes == classes and point.zero_shot == accuracy and point.seeds == 2
        assert point.difficulty == pytest.approx((1 / classes) / (accuracy / 100))
        assert point.magnitude == pytest.approx(np.mean(values))
    xs = [(1 / k) / (a / 100) for k, a, _ in DATA.values()]
    ys = [np.mean(v) for _, _, v in DATA.values()]
    assert analysis.correlation.pearson == pytest.approx(np.corrcoef(xs, ys)[0, 1])
    assert analysis.correlation.spearman == pytest.approx(1.0)  # both rise in the same order


def test_the_residual_of_a_best_val_run_is_model_best(tmp_path):
    write_taskres(tmp_path, "EuroSAT", 1, 0.25, 10, TEST__FINAL_MODEL="best_val")
    write_zero_shot(tmp_path, "EuroSAT", 40.0)
    (analysis,) = analyses_of(tmp_path)
    assert analysis.points[0].magnitude == pytest.approx(0.25)


def test_upstream_run_without_config_reads_its_checkpoint(tmp_path):
    run = tmp_path / "FINAL" / "debug" / "eurosat" / "adam_lr2e-3_B256_ep200_16shots" / "seed1"
    write_log(run, training_log(80.0))
    residual = torch.full((10, 4), -0.3)
    save_checkpoint({"state_dict": {"text_feature_residuals": residual}, "epoch": 200},
                    str(run / "prompt_learner"))  # fmt: skip
    write_log(tmp_path / "ZeroshotCLIP2" / "rn50" / "eurosat", training_log(37.5))
    (analysis,) = analyses_of(tmp_path)
    (point,) = analysis.points
    assert (point.classes, point.magnitude, point.zero_shot) == (10, pytest.approx(0.3), 37.5)


def test_missing_zero_shot_runs_are_named_and_never_guessed(tmp_path, capsys):
    write_tree(tmp_path, zero_shot=("ImageNet", "EuroSAT"))
    # a zero-shot run with another backbone is no substitute
    write_zero_shot(tmp_path / "vit", "Caltech101", 90.0, MODEL__BACKBONE__NAME="ViT-B/16")
    (analysis,) = analyses_of(tmp_path)
    assert analysis.missing == ["caltech101", "dtd"]
    assert [p.dataset for p in analysis.points] == ["imagenet", "eurosat"]

    assert ptr.main([str(tmp_path), "--residuals"]) == 1
    out = capsys.readouterr().out
    assert (
        f"MISSING zero-shot runs (ZeroshotCLIP2, backbone RN50) under {tmp_path} for: "
        "Caltech101, DTD." in out
    )
    assert "zero-shot accuracy is never guessed" in out
    assert "scripts/taskres/zeroshot.sh" in out


def test_no_zero_shot_run_at_all(tmp_path, capsys):
    write_tree(tmp_path, zero_shot=())
    assert ptr.main([str(tmp_path), "--residuals"]) == 1
    out = capsys.readouterr().out
    assert "MISSING zero-shot runs (ZeroshotCLIP or ZeroshotCLIP2, backbone RN50)" in out
    assert "ImageNet, Caltech101, DTD, EuroSAT" in out and "No correlation" in out


def test_zero_shot_trainer_preference_and_choice(tmp_path):
    write_tree(tmp_path, zero_shot=())
    for dataset, (_, accuracy, _) in DATA.items():
        write_zero_shot(tmp_path, dataset, accuracy - 5, TRAINER__NAME="ZeroshotCLIP")
    (analysis,) = analyses_of(tmp_path)
    assert analysis.zero_shot_trainer == "ZeroshotCLIP" and analysis.missing == []
    write_zero_shot(tmp_path, "EuroSAT", 37.5)  # ZeroshotCLIP2 now ran, on one dataset only
    (analysis,) = analyses_of(tmp_path)
    assert analysis.zero_shot_trainer == "ZeroshotCLIP2"
    assert analysis.missing == ["imagenet", "caltech101", "dtd"]
    (analysis,) = analyses_of(tmp_path, zero_shot_trainer="ZeroshotCLIP")
    assert [p.zero_shot for p in analysis.points] == [a - 5 for _, a, _ in DATA.values()]


def test_residual_figure_plots_the_points_labelled_by_dataset(tmp_path, capsys):
    write_tree(tmp_path)
    analyses = analyses_of(tmp_path)
    fig = residual_figure(analyses)
    (ax,) = [ax for ax in fig.axes if ax.get_visible()]
    offsets = ax.collections[0].get_offsets()
    np.testing.assert_allclose(offsets, [(p.difficulty, p.magnitude) for p in analyses[0].points])
    assert [t.get_text() for t in ax.texts] == ["ImageNet", "Caltech101", "DTD", "EuroSAT"]
    assert f"Pearson r = {analyses[0].correlation.pearson:.2f}" in ax.get_title()

    assert ptr.main([str(tmp_path), "--residuals", "--figures", str(tmp_path / "f")]) == 0
    out = capsys.readouterr().out
    assert f"Pearson r = {analyses[0].correlation.pearson:.3f}" in out
    assert (tmp_path / "f" / "residual_analysis.png").is_file()
    assert (tmp_path / "f" / "residual_analysis.pdf").is_file()


def test_one_dataset_reports_its_point_says_why_no_correlation_and_succeeds(tmp_path, capsys):
    classes, accuracy, values = DATA["EuroSAT"]
    for seed, value in enumerate(values, start=1):
        write_taskres(tmp_path, "EuroSAT", seed, value, classes)
    write_zero_shot(tmp_path, "EuroSAT", accuracy)
    assert ptr.main([str(tmp_path), "--residuals", "--figures", str(tmp_path / "f")]) == 0
    out = capsys.readouterr().out
    assert "No correlation: it needs at least two datasets" in out and "1 is available" in out
    assert "EuroSAT" in out and (tmp_path / "f" / "residual_analysis.pdf").is_file()


@pytest.mark.slow
def test_real_taskres_and_zero_shot_runs(tmp_path):
    """train.py's own TaskRes checkpoints and zero-shot logs feed the analysis."""
    write_tiny_image_dataset(tmp_path / "data", num_classes=3, per_class=(4, 2, 3))
    clip = tiny_clip_checkpoint(tmp_path / "clip", arch="ViT")

    def argv(trainer: str, out: Path, *flags: str) -> list[str]:
        keys = {
            "DATASET.NUM_SHOTS": 2,
            "MODEL.BACKBONE.NAME": clip,
            "INPUT.TRANSFORMS": "['normalize']",
            "OPTIM.MAX_EPOCH": 2,
            "OPTIM.LR": 0.05,
            "TRAINER.TaskRes.PREC": "fp32",
            "TRAINER.ZSCLIP.PREC": "fp32",
        }
        return tiny_run_argv(trainer, tmp_path / "data", out, keys, flags)

    run_train_in_process(argv("TaskRes", tmp_path / "runs" / "taskres"))
    run_train_in_process(argv("ZeroshotCLIP2", tmp_path / "runs" / "zs", "--eval-only"))
    (analysis,) = analyses_of(tmp_path / "runs")
    (point,) = analysis.points
    checkpoint = torch.load(
        tmp_path / "runs" / "taskres" / "prompt_learner" / "model.pth.tar-2", weights_only=True
    )
    residual = checkpoint["state_dict"]["text_feature_residuals"]
    assert point.classes == 3 and point.magnitude == pytest.approx(residual.abs().mean().item())
    assert point.magnitude > 0  # learned away from its zero init
    zero_shot_log = (tmp_path / "runs" / "zs" / "log.txt").read_text()
    assert f"* accuracy: {point.zero_shot:.1f}%" in zero_shot_log
