"""GDA: the fitted classifier against a hand computation, alpha searched on val and recorded,
resume without refitting, eval-only reproducing the run, and the refusals."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.tiny_run import run_train_in_process, tiny_run_argv
from tests.tools.test_scripts import REPO, calls, env, flag, run  # noqa: F401  (env: a fixture)
from tools.sweep.grid import expand, load_grid
from trainers.methods.gda import GDAHead
from trainers.protocol import VIEWS, Protocol

from .helpers import make_trainer

GRID = [0.0001, 0.001, 0.01, 0.1, 1.0, 10.0, 100.0]
KEYS = {
    "DATASET.NUM_SHOTS": -1,
    "INPUT.TRANSFORMS": "['random_flip', 'normalize']",
    "OPTIM.MAX_EPOCH": 1,
}


def gda_argv(clip: Path, root: Path, out: Path, *flags: str, keys: dict | None = None) -> list[str]:
    keys = {"MODEL.BACKBONE.NAME": clip, **KEYS, **(keys or {})}
    return tiny_run_argv("GDA", root, out, keys, flags)


def result(run: Path) -> dict:
    return json.loads((run / "result.json").read_text())


@pytest.fixture
def trained(tmp_path, vit_clip, data_root) -> tuple[Path, str]:
    run = tmp_path / "gda"
    return run, run_train_in_process(gda_argv(vit_clip, data_root, run))


def assert_close_to_scale(ours: np.ndarray, hand: np.ndarray) -> None:
    """float32 against float64: equal to 1e-4 of the largest entry (a pinv of a [D, D] matrix)."""
    np.testing.assert_allclose(ours, hand, rtol=0, atol=1e-4 * np.abs(hand).max())


def hand_classifier(features: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """GDA in float64 numpy: normalise, class means, D pinv((N-1) S + tr(S) I), the posterior."""
    features = features / np.linalg.norm(features, axis=1, keepdims=True)
    means = np.stack([features[labels == c].mean(0) for c in range(k)])
    centred = features - means[labels]
    n, d = centred.shape
    cov = np.cov(centred, rowvar=False)
    precision = d * np.linalg.pinv((n - 1) * cov + np.trace(cov) * np.eye(d))
    weight = means @ precision
    bias = np.log(1.0 / k) - 0.5 * np.einsum("kd,kd->k", weight, means)
    return weight, bias


def test_classifier_and_search_match_a_hand_computation(trained, make_cfg):
    run, log = trained
    trainer = make_trainer(make_cfg("GDA", "OPTIM.MAX_EPOCH", 1))
    # The features the run fitted on: upstream's 10 augmented views of each train image (exact
    # means views:10 for GDA), served by the store the run filled.
    views = trainer.train_view_features(Protocol(VIEWS, 10))  # [10, N, D]
    labels = trainer.train_set.labels.repeat(10).numpy()
    features = views.reshape(-1, views.shape[-1]).double().numpy()
    weight, bias = hand_classifier(features, labels, trainer.dm.num_classes)
    saved = torch.load(run / "gda" / "model.pth.tar-1", weights_only=True)["state_dict"]
    assert sorted(saved) == ["bias", "weight"]
    assert_close_to_scale(saved["weight"].numpy(), weight)
    assert_close_to_scale(saved["bias"].numpy(), bias)

    # alpha: the first grid value with the best val accuracy of 100 f t + alpha (f W + b).
    trainer.load_model(str(run), epoch=1)
    text = trainer.head.text_features.double().numpy()

    def logits(split: list, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        f, y = trainer.encode_data_source(split)
        f = f.double().numpy()
        f = f / np.linalg.norm(f, axis=1, keepdims=True)
        return 100 * f @ text.T + alpha * (f @ weight.T + bias), y.numpy()

    val = trainer.dm.dataset.val
    val_accuracies = [(logits(val, a)[0].argmax(1) == logits(val, a)[1]).mean() for a in GRID]
    alpha = GRID[int(np.argmax(val_accuracies))]
    record = result(run)
    searched = record["hyperparameters"]
    assert (searched["rule"], searched["split"], searched["size"]) == ("searched", "val", len(val))
    assert searched["space"] == {"alpha": GRID} and searched["winner"] == {"alpha": alpha}
    assert f"Chosen alpha {alpha}" in log

    test_logits, test_labels = logits(trainer.dm.dataset.test, alpha)
    trainer.head.alpha = alpha
    test_features, _ = trainer.encode_data_source(trainer.dm.dataset.test)
    with torch.no_grad():
        ours = trainer.model(test_features).double().numpy()
    assert_close_to_scale(ours, test_logits)
    assert record["accuracy"] == pytest.approx(100 * (test_logits.argmax(1) == test_labels).mean())


def test_resume_loads_the_fitted_classifier_without_refitting(
    trained, monkeypatch, vit_clip, data_root
):
    run, _ = trained
    checkpoint = (run / "gda" / "model.pth.tar-1").read_bytes()
    first = result(run)
    (run / "result.json").unlink()  # stopped after the checkpoint, before the test

    def refit(*args):
        raise AssertionError("a resumed GDA run refitted its classifier")

    monkeypatch.setattr(GDAHead, "fit", refit)
    log = run_train_in_process(gda_argv(vit_clip, data_root, run))
    assert "Found checkpoint" in log and "Fitting the GDA head" not in log
    assert (run / "gda" / "model.pth.tar-1").read_bytes() == checkpoint
    assert result(run) == first


def test_eval_only_from_the_run_folder_reproduces_the_run(trained, tmp_path, vit_clip, data_root):
    run, _ = trained
    out = tmp_path / "eval"
    log = run_train_in_process(
        gda_argv(vit_clip, data_root, out, "--eval-only", "--model-dir", str(run))
    )
    evaluated, trained_record = result(out), result(run)
    assert "Chosen alpha" in log  # searched again on the same val split
    for key in ("accuracy", "correct", "hyperparameters"):
        assert evaluated[key] == trained_record[key]


def test_a_given_alpha_replaces_the_search(trained, tmp_path, vit_clip, data_root):
    run_dir, _ = trained
    winner = result(run_dir)["hyperparameters"]["winner"]["alpha"]
    out = tmp_path / "given"
    flags = ("--eval-only", "--model-dir", str(run_dir))
    keys = {"TRAINER.GDA.ALPHA": winner}
    log = run_train_in_process(gda_argv(vit_clip, data_root, out, *flags, keys=keys))
    assert "Chosen alpha" not in log and f"alpha {winner} (TRAINER.GDA.ALPHA" in log
    assert result(out)["hyperparameters"] == {"rule": "fixed", "source": "config"}
    assert result(out)["accuracy"] == result(run_dir)["accuracy"]


def test_a_class_without_train_features_is_refused(make_cfg):
    trainer = make_trainer(make_cfg("GDA", "OPTIM.MAX_EPOCH", 1))
    features, labels = trainer.encode_data_source(trainer.dm.dataset.train_x)
    kept = labels != 2
    missing = trainer.dm.dataset.classnames[2]
    with pytest.raises(ValueError, match=f"estimates a mean per class.*no train image: {missing}"):
        trainer.fit(features[kept], labels[kept])


@pytest.mark.parametrize(
    "key, value, named",
    [("OPTIM.MAX_EPOCH", 3, "OPTIM.MAX_EPOCH 1"), ("TEST.FINAL_MODEL", "best_val", "last_step")],
)
def test_epoch_settings_that_gda_cannot_honour_are_refused(make_cfg, key, value, named):
    cfg = make_cfg("GDA", "OPTIM.MAX_EPOCH", 1, key, value)
    with pytest.raises(ValueError, match=named):
        make_trainer(cfg)


def test_the_grid_and_the_script_lay_out_the_same_runs(env, tmp_path):  # noqa: F811
    (cells,) = expand(load_grid(REPO / "configs" / "grids" / "gda.yaml"), "data", tmp_path)
    assert len({cell.output_dir for cell in cells}) == len(cells) == 11 * 5 * 3
    result = run("scripts/gda/main.sh", "dtd", "rn50", "16", env={**env, "SEEDS": "2"})
    assert result.returncode == 0, result.stderr
    (call,) = calls(env)
    assert flag(call, "--config-file") == "configs/trainers/GDA/rn50.yaml"
    assert flag(call, "DATASET.NUM_SHOTS") == "16"
    folder = Path(flag(call, "--output-dir")).relative_to(env["OUTPUT_ROOT"])
    assert tmp_path / folder in {cell.output_dir for cell in cells}
