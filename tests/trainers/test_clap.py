"""CLAP and ZS-LP: the class-adaptive constraint (penalty, zero-shot multipliers, PHR update)
against hand computations, upstream's batches over the view pool, the fixed-hyperparameter record,
exact resume and eval-only from the run's folder (benchmarks/clap_parity.py compares with
upstream's plugin)."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.support.tiny_run import run_train_in_process, tiny_run_argv
from trainers.features import FEATURES, FeatureDataset
from trainers.methods.clap import (
    CLAP,
    ClapHead,
    Constraint,
    ShuffledViewPool,
    parse_constraint,
    phr_update,
    zero_shot_multipliers,
)
from trainers.protocol import Protocol

from .conftest import NUM_CLASSES, PER_CLASS
from .helpers import make_trainer

TRAIN = (
    "OPTIM.NAME", "sgd", "OPTIM.LR", 0.1, "OPTIM.MAX_EPOCH", 4,
    "DATALOADER.TRAIN_X.BATCH_SIZE", 8, "TRAINER.PROTOCOL", "views:3",
    "INPUT.TRANSFORMS", ["random_resized_crop", "random_flip", "normalize"],
)  # fmt: skip


# ---- the constraint, by hand ------------------------------------------------------------------


def test_constraint_values_parse_as_upstream_spells_them():
    assert parse_constraint("none") == Constraint(None)
    assert parse_constraint("l2") == Constraint("l2")
    assert parse_constraint("l2-adaptative") == Constraint("l2", adaptive=True)
    assert parse_constraint("cosine-corrected-constant") == Constraint(
        "cosine", corrected=True, constant=True
    )
    for bad in ("l1", "l2-adaptive", "l2-constant-constant", "L2"):
        with pytest.raises(ValueError, match="choose none"):
            parse_constraint(bad)
    with pytest.raises(ValueError, match="balanced sets every multiplier to 1"):
        parse_constraint("l2-balanced-corrected")


def test_a_bad_constraint_is_refused_before_any_work(make_cfg):
    with pytest.raises(ValueError, match="TRAINER.CLAP.CONSTRAINT is 'l2-adaptive'"):
        make_trainer(make_cfg("CLAP", "TRAINER.CLAP.CONSTRAINT", "l2-adaptive"))


def test_multipliers_are_each_class_s_mean_zero_shot_score():
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 3.0], [0.5, 0.0, 0.0]])
    labels = torch.tensor([0, 1, 2, 0])
    probs = logits.softmax(-1)
    by_hand = torch.stack([probs[labels == k, k].mean() for k in range(3)])
    torch.testing.assert_close(zero_shot_multipliers(logits, labels, Constraint("l2")), by_hand)
    corrected = zero_shot_multipliers(logits, labels, Constraint("l2", corrected=True))
    torch.testing.assert_close(corrected, by_hand * 3 / by_hand.sum())
    constant = zero_shot_multipliers(logits, labels, Constraint("l2", constant=True))
    torch.testing.assert_close(constant, torch.full((3,), by_hand.mean().item()))
    balanced = zero_shot_multipliers(logits, labels, Constraint("l2", balanced=True))
    assert torch.equal(balanced, torch.ones(3))
    with pytest.raises(ValueError, match=r"classes \[2\] have no train image"):
        zero_shot_multipliers(logits[:2], labels[:2], Constraint("l2"))


def head_near_base() -> ClapHead:
    base = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    head = ClapHead(base, logit_scale=10.0, constraint=Constraint("l2"))
    with torch.no_grad():
        head.prototypes.copy_(base + torch.tensor([[0.5, 0.0], [0.0, -1.0], [0.0, 0.0]]))
    head.alpha_constraint.copy_(torch.tensor([0.4, 0.2, 0.9]))
    return head


def test_the_penalty_is_the_multiplier_weighted_mean_distance():
    head = head_near_base()
    # squared L2 distances 0.25, 1.0, 0: mean(0.4 * 0.25, 0.2 * 1.0, 0.9 * 0) = 0.3 / 3
    torch.testing.assert_close(head.penalty(), torch.tensor(0.1))
    cosine = ClapHead(head.base_text_features, 10.0, Constraint("cosine"))
    with torch.no_grad():
        cosine.prototypes.copy_(torch.tensor([[1.0, 1.0], [0.0, 5.0], [-1.0, -1.0]]))
    cosine.alpha_constraint.fill_(1.0)
    # 1 - cos: 1 - 1/sqrt(2), 0, 2
    torch.testing.assert_close(cosine.penalty(), torch.tensor((3 - 2**-0.5) / 3))
    zs_lp = ClapHead(head.base_text_features, 10.0, Constraint(None))
    assert zs_lp.penalty().item() == 0.0


def test_the_penalty_s_gradient_pulls_each_prototype_to_its_base():
    head = head_near_base()
    head.penalty().backward()
    # d/dp mean_k(a_k |p_k - t_k|^2) = 2 a_k (p_k - t_k) / K
    expected = 2 * torch.tensor([[0.4 * 0.5, 0.0], [0.0, 0.2 * -1.0], [0.0, 0.0]]) / 3
    torch.testing.assert_close(head.prototypes.grad, expected)


def test_the_phr_outer_step_by_hand():
    alpha, rho = phr_update(
        torch.tensor([0.3, 0.1, 0.4, -2.0]),  # constraint values h
        torch.tensor([0.5, 0.2, 0.0, 0.5]),  # multipliers
        torch.tensor([0.0, 2.0, 1.0, 1.0]),  # penalties rho
    )
    torch.testing.assert_close(alpha, torch.tensor([0.5, 0.4, 0.4, 0.0]))  # max(a + rho h, 0)
    torch.testing.assert_close(rho, torch.tensor([0.3, 0.1, 0.4, -2.0]))  # rho <- h


def test_the_outer_step_measures_l2_whatever_the_penalty_s_distance():
    head = head_near_base()
    cosine = ClapHead(head.base_text_features, 10.0, Constraint("cosine", adaptive=True))
    with torch.no_grad():
        cosine.prototypes.copy_(head.prototypes)
    cosine.alpha_constraint.copy_(head.alpha_constraint)
    cosine.penalty_parameter.fill_(2.0)
    cosine.outer_step()
    squared = torch.tensor([0.25, 1.0, 0.0])
    torch.testing.assert_close(cosine.penalty_parameter, squared)
    torch.testing.assert_close(cosine.alpha_constraint, torch.tensor([0.4, 0.2, 0.9]) + 2 * squared)


# ---- upstream's batches over the view pool ----------------------------------------------------


def test_each_epoch_shuffles_the_whole_view_pool_with_numpy_as_upstream():
    views = torch.arange(3 * 4 * 2, dtype=torch.float).view(3, 4, 2)  # V=3 views of N=4 images
    labels = torch.tensor([0, 1, 2, 1])
    pool = ShuffledViewPool(FeatureDataset(labels, views), batch_size=5, num_batches=2)
    np.random.seed(7)
    batches = list(pool)
    np.random.seed(7)
    order = np.random.rand(12).argsort(axis=0)  # upstream's call on its [V * N] pool
    rows = views.reshape(12, 2)[order]
    assert len(pool) == len(batches) == 2
    for index, batch in enumerate(batches):
        torch.testing.assert_close(batch[FEATURES], rows[5 * index : 5 * index + 5])
        assert torch.equal(batch["label"], labels.repeat(3)[order][5 * index : 5 * index + 5])


def test_exact_means_the_published_twenty_views(make_cfg):
    from trainers.methods.clap import CLAP

    assert CLAP.train_protocol(make_cfg("CLAP")) == Protocol("views", 20)
    assert CLAP.train_protocol(make_cfg("CLAP", "TRAINER.PROTOCOL", "plain")) == Protocol("plain")


# ---- runs -------------------------------------------------------------------------------------


def test_fit_sets_the_multipliers_from_every_train_view(make_cfg):
    trainer = make_trainer(make_cfg("CLAP", *TRAIN, "OPTIM.MAX_EPOCH", 1))
    trainer.train()
    features, labels = trainer.fit_features()
    assert len(labels) == 3 * NUM_CLASSES * PER_CLASS[0]
    head = ClapHead(trainer.head.base_text_features, trainer.logit_scale, Constraint("l2"))
    expected = zero_shot_multipliers(head(features), labels, Constraint("l2"))
    torch.testing.assert_close(trainer.head.alpha_constraint, expected)


def test_the_constraint_keeps_the_prototypes_nearer_their_zero_shot_start(make_cfg, tmp_path):
    distances = {}
    for constraint in ("none", "l2-balanced"):
        cfg = make_cfg("CLAP", *TRAIN, "TRAINER.CLAP.CONSTRAINT", constraint, "OPTIM.LR", 1.0)
        cfg.OUTPUT_DIR = str(tmp_path / constraint)
        trainer = make_trainer(cfg)
        trainer.train()
        head = trainer.head
        distances[constraint] = (head.prototypes - head.base_text_features).norm().item()
    assert 0 < distances["l2-balanced"] < distances["none"]


def test_an_interrupted_run_resumes_to_the_same_weights_and_multipliers(
    make_cfg, tmp_path, monkeypatch
):
    # A checkpoint every second epoch: stopped after the third, the run resumes after the
    # second and redoes the third.
    monkeypatch.setattr(CLAP, "EPOCHS_PER_CHECKPOINT", 2)
    opts = (*TRAIN, "TRAINER.CLAP.CONSTRAINT", "l2-adaptative")
    full = make_trainer(make_cfg("CLAP", *opts, "OUTPUT_DIR", str(tmp_path / "full")))
    full.train()

    class Interrupted(Exception):
        pass

    killed_cfg = make_cfg("CLAP", *opts, "OUTPUT_DIR", str(tmp_path / "killed"))
    killed = make_trainer(killed_cfg.clone())
    after_epoch = killed.after_epoch

    def stop_after_three() -> None:
        after_epoch()
        if killed.epoch == 2:
            raise Interrupted

    killed.after_epoch = stop_after_three
    with pytest.raises(Interrupted):
        killed.train()
    resumed = make_trainer(killed_cfg)
    resumed.train()
    assert resumed.start_epoch == 2
    full_state, resumed_state = full.head.state_dict(), resumed.head.state_dict()
    assert sorted(full_state) == [
        "alpha_constraint", "base_text_features", "penalty_parameter", "prototypes"
    ]  # fmt: skip
    assert all(torch.equal(full_state[k], resumed_state[k]) for k in full_state)
    assert not torch.equal(full_state["penalty_parameter"], torch.zeros(NUM_CLASSES))


def test_the_record_says_fixed_and_eval_only_gives_the_same_accuracy(tmp_path, vit_clip, data_root):
    keys = {
        "MODEL.BACKBONE.NAME": vit_clip,
        "TRAINER.CLAP.PREC": "fp32",
        "OPTIM.MAX_EPOCH": 3,
        "DATALOADER.TRAIN_X.BATCH_SIZE": 8,
        "TRAINER.PROTOCOL": "views:2",
    }
    config = ["--config-file", "configs/trainers/CLAP/SGD_lr1e-1_B256_ep300.yaml"]
    trained = tmp_path / "run"
    run_train_in_process([*config, *tiny_run_argv("CLAP", data_root, trained, keys)])
    record = json.loads((trained / "result.json").read_text())
    assert record["hyperparameters"] == {"rule": "fixed", "source": "config"}
    assert record["selection"]["rule"] == "last_epoch" and record["model"]["epoch"] == 3
    evaluated = tmp_path / "eval"
    flags = ["--eval-only", "--model-dir", str(trained)]
    run_train_in_process([*flags, *tiny_run_argv("CLAP", data_root, evaluated, keys)])
    again = json.loads((evaluated / "result.json").read_text())
    assert (again["accuracy"], again["correct"]) == (record["accuracy"], record["correct"])


def test_upstream_checkpoints_without_multipliers_load_for_evaluation(make_cfg, tmp_path):
    trainer = make_trainer(make_cfg("CLAP", *TRAIN, "OPTIM.MAX_EPOCH", 1))
    trainer.train()
    state = {
        k: v
        for k, v in trainer.head.state_dict().items()
        if k in ("prototypes", "base_text_features")
    }
    folder = tmp_path / "upstream" / "adapter"
    folder.mkdir(parents=True)
    torch.save({"state_dict": state, "epoch": 300}, folder / "model.pth.tar-300")
    fresh = make_trainer(make_cfg("CLAP", *TRAIN, "OUTPUT_DIR", str(tmp_path / "eval")))
    fresh.load_model(str(tmp_path / "upstream"), epoch=300)
    torch.testing.assert_close(fresh.head.prototypes, trainer.head.prototypes)
    assert not F.normalize(fresh.head.prototypes).equal(F.normalize(fresh.head.base_text_features))
