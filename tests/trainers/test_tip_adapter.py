"""Tip-Adapter and Tip-Adapter-F: upstream's cache and logits (checked by hand on a tiny run),
alpha/beta searched on val and recorded, an exact resume, eval-only reproducing the accuracy,
and -F's keys learning."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.support.tiny_run import run_train_in_process, tiny_run_argv
from trainers.methods.tip_adapter import search_grid

from .conftest import METHOD_RUN
from .helpers import make_trainer, train_loss

VIEWS = 3
SEARCH = ("TRAINER.TIP_ADAPTER.SEARCH_SCALE", [6.0, 4.0], "TRAINER.TIP_ADAPTER.SEARCH_STEP", [8, 5])
RUN = ("TRAINER.PROTOCOL", f"views:{VIEWS}", *SEARCH)
F_RUN = (*RUN, "OPTIM.LR", 0.05, "DATALOADER.TRAIN_X.BATCH_SIZE", 8)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def _hand_classifier(trainer) -> torch.Tensor:
    """Zero-shot weights [K, D]: the one template (TinyImages has none of its own), normalised."""
    backbone = trainer.backbone
    texts = [f"a photo of a {name.replace('_', ' ')}." for name in trainer.dm.dataset.classnames]
    with torch.no_grad():
        return _normalize(backbone.encode_text(backbone.tokenize(texts)).float())


def _hand_logits(features, classifier, keys, values, alpha, beta) -> torch.Tensor:
    f = _normalize(features.float())
    return 100 * f @ classifier.t() + alpha * torch.exp(-beta * (1 - f @ keys.t())) @ values


def _hand_search(features, labels, classifier, keys, values, betas, alphas):
    best = (0.0, 0.0, -1)
    for beta in betas:  # upstream's order: beta outer, alpha inner, first strictly better wins
        for alpha in alphas:
            logits = _hand_logits(features, classifier, keys, values, alpha, beta)
            correct = int((logits.argmax(1) == labels).sum())
            if correct > best[2]:
                best = (beta, alpha, correct)
    return best[:2]


@pytest.fixture
def tip(make_cfg, capsys):
    trainer = make_trainer(make_cfg("TipAdapter", *RUN))
    trainer.train()
    trainer.log = capsys.readouterr().out
    return trainer


def test_cache_and_logits_are_upstreams_formula(tip):
    views = tip.train_set.features.float()  # [V, N, D], raw
    assert views.shape[0] == VIEWS
    keys = _normalize(views.mean(dim=0))  # the views averaged, then normalised
    torch.testing.assert_close(tip.head.cache_keys.weight.detach(), keys)
    labels = tip.train_set.labels
    assert torch.equal(tip.head.cache_values, torch.nn.functional.one_hot(labels, 3).float())

    classifier = _hand_classifier(tip)
    test_features, _ = tip.encode_data_source(tip.dm.dataset.test)
    with torch.no_grad():
        ours = tip.model(test_features)
    alpha, beta = tip.head.alpha, tip.head.beta
    hand = _hand_logits(test_features, classifier, keys, tip.head.cache_values, alpha, beta)
    torch.testing.assert_close(ours, hand, rtol=1e-5, atol=1e-4)


def test_alpha_beta_are_searched_on_val_and_recorded(tip, tmp_path):
    record = json.loads((tmp_path / "output" / "result.json").read_text())
    search = record["hyperparameters"]
    dataset = tip.dm.dataset
    assert search["rule"] != "fixed" and search["split"] == "val"
    assert search["size"] == len(dataset.val)
    betas, alphas = search_grid(6.0, 8), search_grid(4.0, 5)
    assert search["space"] == {"beta": betas, "alpha": alphas}

    classifier, keys = _hand_classifier(tip), tip.head.cache_keys.weight.detach()
    values = tip.head.cache_values
    val_features, val_labels = tip.encode_data_source(dataset.val)
    winner = _hand_search(val_features, val_labels, classifier, keys, values, betas, alphas)
    assert (search["winner"]["beta"], search["winner"]["alpha"]) == pytest.approx(winner)
    assert (tip.head.beta, tip.head.alpha) == pytest.approx(winner)
    # Chosen before the test split was read at all.
    assert tip.log.index("Searched on val") < tip.log.index("Image features (test)")


def test_tip_adapter_f_learns_its_keys(make_cfg, tmp_path):
    opts = (*F_RUN, "OPTIM.MAX_EPOCH", 6)
    fitted = make_trainer(make_cfg("TipAdapterF", *opts, "OUTPUT_DIR", str(tmp_path / "fit")))
    fitted.before_train()  # the cache, untrained
    trained = make_trainer(make_cfg("TipAdapterF", *opts))
    trained.train()
    start_keys = fitted.head.cache_keys.weight
    assert not torch.allclose(trained.head.cache_keys.weight, start_keys)
    trained.head.alpha, trained.head.beta = fitted.head.alpha, fitted.head.beta  # as trained
    assert train_loss(trained) < train_loss(fitted)
    # Upstream's optimizer and schedule: AdamW eps 1e-4, cosine per batch down to 0, and every
    # batch kept (8 images a batch: 18 train images make 3 batches, the last one of 2).
    assert isinstance(trained.optim, torch.optim.AdamW) and trained.optim.defaults["eps"] == 1e-4
    assert len(trained.train_loader_x) == 3
    assert trained.sched.T_max == trained.iterations == 6 * 3
    assert trained.optim.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_exact_caches_upstreams_ten_views_and_f_trains_on_fresh_images(make_cfg, tmp_path):
    """exact is upstream's protocol: the cache averages views:10's views of each image (shared
    through the store), and -F's epochs augment the images anew, as upstream's loader does."""
    opts = (*SEARCH, "OPTIM.MAX_EPOCH", 1)
    tip = make_trainer(make_cfg("TipAdapter", *opts, "OUTPUT_DIR", str(tmp_path / "tip")))
    assert str(tip.protocol) == "views:10"  # nothing trained: exact reads the cache's views
    tip.before_train()
    tip_f = make_trainer(make_cfg("TipAdapterF", *opts))
    assert str(tip_f.protocol) == "exact"
    tip_f.before_train()
    assert torch.equal(tip_f.head.cache_keys.weight, tip.head.cache_keys.weight)
    views = tip.train_set.features.float()  # [10, N, D]
    torch.testing.assert_close(tip.head.cache_keys.weight.detach(), _normalize(views.mean(0)))
    assert "img" in next(iter(tip_f.train_loader_x))


def test_fp16_clip_keeps_an_fp32_cache(make_cfg, force_precision):
    trainer = make_trainer(make_cfg("TipAdapterF", *F_RUN, "OPTIM.MAX_EPOCH", 1, prec="fp16"))
    trainer.train()
    assert trainer.backbone.dtype == torch.float16
    assert trainer.head.cache_keys.weight.dtype == torch.float32
    assert torch.isfinite(trainer.head.cache_keys.weight).all()


@pytest.mark.parametrize(
    "key, value", [("SEARCH_SCALE", [12.0]), ("SEARCH_STEP", [200, 0]), ("SEARCH_SCALE", [0.1, 5])]
)
def test_a_search_grid_upstream_could_not_run_is_refused_first(make_cfg, key, value):
    with pytest.raises(ValueError, match=r"two values, \[beta, alpha\].*Fix: e.g. SEARCH_SCALE"):
        make_trainer(make_cfg("TipAdapter", f"TRAINER.TIP_ADAPTER.{key}", value))


@pytest.mark.parametrize("trainer_name", ["TipAdapter", "TipAdapterF"])
def test_resume_is_exact_and_eval_only_reproduces_the_accuracy(
    trainer_name, vit_clip, data_root, tmp_path
):
    keys = {**METHOD_RUN, "MODEL.BACKBONE.NAME": str(vit_clip), "TRAINER.TIP_ADAPTER.PREC": "fp32"}
    keys.update(dict(zip(F_RUN[::2], F_RUN[1::2])))
    keys["OPTIM.MAX_EPOCH"] = 3 if trainer_name == "TipAdapterF" else 1
    keys["TRAIN.CHECKPOINT_FREQ"] = 1

    def run(folder, flags=(), **extra):
        argv = tiny_run_argv(trainer_name, data_root, folder, {**keys, **extra}, flags)
        return run_train_in_process(argv)

    whole = tmp_path / "whole"
    assert "Fitting the" in run(whole)
    accuracy = json.loads((whole / "result.json").read_text())["accuracy"]
    last = f"model.pth.tar-{keys['OPTIM.MAX_EPOCH']}"

    # A run stopped after its first checkpoint, then the same command again: it resumes from
    # the checkpoint, without fitting the cache again, and ends with the same state.
    parts = tmp_path / "parts"
    run(parts, **{"TEST.NO_TEST": True})
    folder = parts / "tip_adapter"
    for epoch in range(2, keys["OPTIM.MAX_EPOCH"] + 1):
        (folder / f"model.pth.tar-{epoch}").unlink()
    (folder / "checkpoint").write_text("model.pth.tar-1\n")
    resumed_log = run(parts, **{"TEST.NO_TEST": True})
    assert "model.pth.tar-1" in resumed_log and "Fitting the" not in resumed_log
    whole_state = torch.load(whole / "tip_adapter" / last, weights_only=False)["state_dict"]
    resumed_state = torch.load(folder / last, weights_only=False)["state_dict"]
    assert sorted(resumed_state) == ["cache_keys.weight", "cache_values"]
    assert all(torch.equal(whole_state[k], resumed_state[k]) for k in whole_state)

    evaluation = tmp_path / "eval"
    run(evaluation, flags=("--eval-only", "--model-dir", str(whole)))
    record = json.loads((evaluation / "result.json").read_text())
    assert record["accuracy"] == accuracy
    assert record["hyperparameters"]["split"] == "val"

    # A dataset without a val split (as ImageNet-V2/Sketch/A/R): the trained run's winner.
    no_val = Path(shutil.copytree(data_root, tmp_path / "no_val"))
    split_file = no_val / "tiny_images" / "split_tiny.json"
    split_file.write_text(json.dumps({**json.loads(split_file.read_text()), "val": []}))
    transfer = tmp_path / "transfer"
    argv = tiny_run_argv(
        trainer_name, no_val, transfer, keys, ("--eval-only", "--model-dir", str(whole))
    )
    run_train_in_process(argv)
    trained = json.loads((whole / "result.json").read_text())["hyperparameters"]
    inherited = json.loads((transfer / "result.json").read_text())["hyperparameters"]
    assert inherited["rule"] == "inherited" and inherited["from"] == str(whole)
    assert inherited["winner"] == trained["winner"] and inherited["split"] == "val"


def test_a_search_on_a_val_split_made_of_test_images_is_refused_unless_allowed(make_cfg):
    trainer = make_trainer(make_cfg("TipAdapter", *RUN))
    trainer.dm.dataset._val = trainer.dm.dataset.test  # ImageNet's layout: val is the test set
    with pytest.raises(ValueError, match="TEST.SELECT_ON_TEST True"):
        trainer.train()
    allowed = make_trainer(make_cfg("TipAdapter", *RUN, "TEST.SELECT_ON_TEST", True))
    allowed.dm.dataset._val = allowed.dm.dataset.test
    allowed.train()
    assert allowed.hyperparameter_search["split"] == "test"
