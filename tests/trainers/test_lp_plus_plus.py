"""LP++: its data-driven initialisation and update against a hand computation, the last of equal
val epochs kept, an exact resume, eval-only reproducing the run, and the empty-class refusal."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.support.tiny_run import run_train_in_process, tiny_run_argv
from tests.tools.test_scripts import REPO, calls, env, flag, run  # noqa: F401  (env: a fixture)
from tools.sweep.grid import expand, load_grid
from trainers.methods.lp_plus_plus import LPPlusPlus

from .helpers import make_trainer

EPOCHS = 20  # two steps of alpha (every 10 epochs)
KEYS = {
    "DATASET.NUM_SHOTS": -1,
    "INPUT.TRANSFORMS": "['random_flip', 'normalize']",
    "OPTIM.MAX_EPOCH": EPOCHS,
    "TEST.FINAL_MODEL": "best_val",
    "TRAINER.LP_PLUS_PLUS.PREC": "fp32",
}


def lpp_argv(clip: Path, root: Path, out: Path, *flags: str | Path) -> list[str]:
    keys = {"MODEL.BACKBONE.NAME": clip, **KEYS}
    return tiny_run_argv("LPPlusPlus", root, out, keys, [str(flag) for flag in flags])


def result(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


def state(run_dir: Path, name: str) -> dict:
    return torch.load(run_dir / "lp_plus_plus" / name, weights_only=True)["state_dict"]


def hand_run(features, labels, text, bias, epochs):
    """Upstream's LP++ in float64: its initialisation, then full-batch SGD (momentum 0.9) on the
    prototypes and, every 10 epochs, alpha minus its step size times its gradient summed since
    the start. Returns the final weight, bias and alpha and the derived values."""
    f = F.normalize(features.double(), dim=-1)
    t, k, m = text.double(), len(text), len(f)
    one_hot = F.one_hot(labels, k).double()
    logits_t = f @ t.T  # [M, K]
    true_class = (one_hot * logits_t).sum(1)
    alpha0 = 250 * torch.stack([true_class[labels == c].mean() for c in range(k)]).mean()
    lr_w = 4 * m / np.linalg.eigvalsh((f.T @ f).numpy()).max()
    lr_alpha = m / (4 * (logits_t**2).sum(0).max())
    w = (one_hot.T @ f).requires_grad_()
    b = bias.double().clone().requires_grad_()
    alpha = torch.full((k,), float(alpha0), dtype=torch.float64, requires_grad=True)
    moments, alpha_sum = [torch.zeros_like(w), torch.zeros_like(b)], torch.zeros(k).double()
    for epoch in range(epochs):
        loss = F.cross_entropy(f @ w.T + b + alpha * logits_t, labels)
        grads = torch.autograd.grad(loss, [w, b, alpha])
        with torch.no_grad():
            for param, moment, grad in zip((w, b), moments, grads):
                moment.mul_(0.9).add_(grad)
                param.sub_(lr_w * moment)
            alpha_sum += grads[2]
            if (epoch + 1) % 10 == 0:
                alpha.sub_(lr_alpha * alpha_sum)
    derived = {"prototype_lr": lr_w, "alpha_lr": float(lr_alpha), "alpha_init": float(alpha0)}
    return w.detach(), b.detach(), alpha.detach(), derived


def test_initialisation_and_update_match_a_hand_computation(make_cfg):
    trainer = make_trainer(make_cfg("LPPlusPlus", "OPTIM.MAX_EPOCH", EPOCHS))
    initial_bias = trainer.head.prototypes.bias.detach().clone()  # nn.Linear's own draw
    trainer.train()
    (view,) = trainer.train_set.features  # upstream's one augmented view per image
    labels = trainer.train_set.labels
    weight, bias, alpha, derived = hand_run(
        view, labels, trainer.head.text_features, initial_bias, EPOCHS
    )
    last = state(Path(trainer.output_dir), f"model.pth.tar-{EPOCHS}")
    for ours, hand in (
        (last["prototypes.weight"], weight),
        (last["prototypes.bias"], bias),
        (last["alpha"], alpha),
    ):
        torch.testing.assert_close(ours.double(), hand, rtol=1e-4, atol=1e-4 * hand.abs().max())
    record = result(Path(trainer.output_dir))["hyperparameters"]
    assert record["rule"] == "derived" and record["split"] == "train"
    assert record["size"] == len(labels)
    for key, value in derived.items():
        assert record["values"][key] == pytest.approx(value, rel=1e-4)


def test_the_last_of_equally_good_val_epochs_is_tested(tmp_path, vit_clip, data_root):
    run_dir = tmp_path / "lpp"
    log = run_train_in_process(lpp_argv(vit_clip, data_root, run_dir))
    val = [float(a) for a in re.findall(r"\*val\* set.*?accuracy: ([\d.]+)%", log, re.S)]
    assert len(val) == EPOCHS and val[-1] == max(val)
    first_best = val.index(max(val)) + 1
    assert first_best < EPOCHS  # ties exist, and upstream's >= keeps the last of them
    assert result(run_dir)["model"] == {"epoch": EPOCHS}
    assert result(run_dir)["selection"]["rule"] == "best_val"


class Stop(Exception):
    """Stands for a kill right after a checkpoint."""


def test_an_interrupted_run_resumes_to_the_same_weights_and_result(
    tmp_path, monkeypatch, vit_clip, data_root
):
    # A checkpoint every fourth epoch: stopped after the 14th, the run resumes after the 12th.
    monkeypatch.setattr(LPPlusPlus, "EPOCHS_PER_CHECKPOINT", 4)
    whole, interrupted = tmp_path / "whole", tmp_path / "interrupted"
    run_train_in_process(lpp_argv(vit_clip, data_root, whole))
    after_epoch = LPPlusPlus.after_epoch

    def stop_after_epoch_14(self):
        after_epoch(self)
        if self.epoch + 1 == 14:
            raise Stop

    monkeypatch.setattr(LPPlusPlus, "after_epoch", stop_after_epoch_14)
    with pytest.raises(Stop):
        run_train_in_process(lpp_argv(vit_clip, data_root, interrupted))
    monkeypatch.setattr(LPPlusPlus, "after_epoch", after_epoch)
    log = run_train_in_process(lpp_argv(vit_clip, data_root, interrupted))
    assert "Previous epoch: 12" in log and "Fitting the LPPlusPlus head" not in log
    for name in (f"model.pth.tar-{EPOCHS}", "model-best.pth.tar"):
        resumed, uninterrupted = state(interrupted, name), state(whole, name)
        assert sorted(resumed) == sorted(uninterrupted)
        for key, tensor in uninterrupted.items():
            assert torch.equal(resumed[key], tensor), key
    assert result(interrupted) == result(whole)


def test_eval_only_from_the_run_folder_reproduces_the_run(tmp_path, vit_clip, data_root):
    run_dir, out = tmp_path / "lpp", tmp_path / "eval"
    run_train_in_process(lpp_argv(vit_clip, data_root, run_dir))
    run_train_in_process(
        lpp_argv(vit_clip, data_root, out, "--eval-only", "--model-dir", str(run_dir))
    )
    evaluated, trained = result(out), result(run_dir)
    for key in ("accuracy", "correct", "hyperparameters", "model"):
        assert evaluated[key] == trained[key]


def test_a_class_without_train_features_is_refused(make_cfg):
    trainer = make_trainer(make_cfg("LPPlusPlus"))
    features, labels = trainer.encode_data_source(trainer.dm.dataset.train_x)
    kept = labels != 0
    missing = trainer.dm.dataset.classnames[0]
    with pytest.raises(ValueError, match=f"starts each class from its features.*: {missing}"):
        trainer.fit(features[kept], labels[kept])


def test_amp_is_refused(make_cfg):
    with pytest.raises(ValueError, match="PREC is 'amp'; choose one of fp16, fp32"):
        make_trainer(make_cfg("LPPlusPlus", prec="amp"))


def test_the_grid_and_the_script_lay_out_the_same_runs(env, tmp_path):  # noqa: F811
    (cells,) = expand(load_grid(REPO / "configs" / "grids" / "lp_plus_plus.yaml"), "data", tmp_path)
    assert len({cell.output_dir for cell in cells}) == len(cells) == 11 * 5 * 3
    result_ = run("scripts/lp_plus_plus/main.sh", "dtd", "vit_b16", "4", env={**env, "SEEDS": "3"})
    assert result_.returncode == 0, result_.stderr
    (call,) = calls(env)
    assert flag(call, "--trainer") == "LPPlusPlus"
    assert flag(call, "--config-file") == "configs/trainers/LPPlusPlus/vit_b16.yaml"
    folder = Path(flag(call, "--output-dir")).relative_to(env["OUTPUT_ROOT"])
    assert str(folder) == "dtd/LPPlusPlus/vit_b16_4shots/seed3"
    assert tmp_path / "dtd/LPPlusPlus/rn50_4shots/seed3" in {cell.output_dir for cell in cells}
