"""Every method learns the tiny dataset; feature caches save work without changing results."""

import json
import os
import signal

import pytest
import torch

from dassl.engine import TrainingInterrupted

from .helpers import make_trainer, train_accuracy, train_loss

FAST = ("OPTIM.MAX_EPOCH", 10, "OPTIM.LR", 0.05, "DATALOADER.TRAIN_X.BATCH_SIZE", 6)


@pytest.mark.parametrize(
    "trainer_name, opts",
    [
        ("TaskRes", ()),
        ("CoOp", ("TRAINER.COOP.N_CTX", 4, "OPTIM.LR", 0.01)),
        ("CoOp", ("TRAINER.COOP.CSC", True, "TRAINER.COOP.CLASS_TOKEN_POSITION", "middle")),
        ("CLIP_Adapter", ()),
    ],
)
def test_training_raises_train_accuracy(make_cfg, trainer_name, opts):
    trainer = make_trainer(make_cfg(trainer_name, *FAST, *opts))
    before = train_accuracy(trainer)
    trainer.train()
    after = train_accuracy(trainer)
    assert after > before, (before, after)


def test_image_side_residual_lowers_the_train_loss(make_cfg):
    # One shared image-feature shift cannot separate classes by itself, so the loss is checked.
    opts = ("TRAINER.TaskRes.RESIDUAL_SIDE", "image", "OPTIM.LR", 0.2)
    trainer = make_trainer(make_cfg("TaskRes", *FAST, *opts))
    before = train_loss(trainer)
    trainer.train()
    assert train_loss(trainer) < before
    assert trainer.head.text_feature_residuals.shape[0] == 1
    assert trainer.head.text_feature_residuals.abs().sum() > 0


def test_linear_probe_fits_and_saves(make_cfg, tmp_path):
    cfg = make_cfg("LinearProbeCLIP", "TRAINER.LINEAR_PROBE.SEARCH_STEPS", 2)
    trainer = make_trainer(cfg)
    assert trainer.get_model_names() == ["linear_probe"]
    before = train_accuracy(trainer)
    trainer.train()
    assert train_accuracy(trainer) > before
    folder = tmp_path / "output" / "linear_probe"
    assert (folder / "model.pth.tar-1").is_file() and (folder / "model-best.pth.tar").is_file()
    saved = torch.load(folder / "model-best.pth.tar", weights_only=True)
    assert sorted(saved["state_dict"]) == ["bias", "weight"]
    assert torch.equal(saved["state_dict"]["weight"], trainer.head.weight.detach().cpu())
    record = json.loads((tmp_path / "output" / "result.json").read_text())["hyperparameters"]
    assert record["rule"] == "searched" and record["split"] == "val"
    assert record["size"] == len(trainer.dm.dataset.val) and record["winner"]["C"] > 0


def _count_image_encodings(trainer) -> list[int]:
    """Images through the image encoder from now on (every path encodes through
    ``encode_images``; a hook on the tower itself would break its seal and turn the store off)."""
    calls = [0]
    encode_images = trainer.model.encode_images

    def counting(images):
        calls[0] += len(images)
        return encode_images(images)

    trainer.model.encode_images = counting
    return calls


def test_eval_features_are_encoded_once_and_give_the_same_result(make_cfg):
    cached = make_trainer(make_cfg("TaskRes"))
    calls = _count_image_encodings(cached)
    first = cached.test("val")
    n_val = len(cached.dm.dataset.val)
    assert calls[0] == n_val
    assert cached.test("val") == first and calls[0] == n_val  # no re-encoding
    cached.test("test")
    assert calls[0] == n_val + len(cached.dm.dataset.test)

    plain = make_trainer(make_cfg("TaskRes", "TRAINER.FEATURE_CACHE.EVAL", False))
    calls = _count_image_encodings(plain)
    assert plain.test("val") == first
    plain.test("val")
    assert calls[0] == 2 * n_val  # neither kept nor read from the store


def test_train_feature_cache_is_plain_and_encodes_train_images_once(make_cfg, capsys):
    trainer = make_trainer(make_cfg("TaskRes", *FAST, "TRAINER.FEATURE_CACHE.TRAIN", True))
    assert str(trainer.protocol) == "plain"
    calls = _count_image_encodings(trainer)
    trainer.train()
    n_train, n_test = len(trainer.dm.dataset.train_x), len(trainer.dm.dataset.test)
    assert calls[0] == n_train + n_test  # 10 epochs, yet each train image encoded once
    out = capsys.readouterr().out
    assert f"Image features (train): {n_train} encoded, 0 from the feature store" in out
    untrained = make_trainer(make_cfg("TaskRes", *FAST))
    assert train_accuracy(trainer) > train_accuracy(untrained)



def _draws(fn) -> int:
    """How many numbers `fn` takes from torch's global RNG (up to 3)."""
    start = torch.get_rng_state()
    fn()
    after = torch.get_rng_state()
    torch.set_rng_state(start)
    for n in range(4):
        if torch.equal(torch.get_rng_state(), after):
            return n
        torch.empty((), dtype=torch.int64).random_()  # what each DataLoader iterator draws
    raise AssertionError("more than 3 draws")


@pytest.mark.parametrize("cache", [True, False])
def test_each_val_evaluation_draws_once_like_upstream(make_cfg, cache):
    # Caching happens at the first evaluation after each (re)start; its draws would put a resumed
    # run's random stream off an uninterrupted one's (TEST.FINAL_MODEL best_val).
    trainer = make_trainer(make_cfg("TaskRes", "TRAINER.FEATURE_CACHE.EVAL", cache))
    assert [_draws(lambda: trainer.test("val")) for _ in range(2)] == [1, 1]


def test_train_feature_cache_leaves_the_random_stream_alone(make_cfg):
    trainer = make_trainer(make_cfg("TaskRes", "TRAINER.FEATURE_CACHE.TRAIN", True))
    assert _draws(lambda: trainer.encode_data_source(trainer.dm.dataset.train_x)) == 0


def test_a_stop_signal_while_encoding_a_split_is_acted_on_at_once(make_cfg):
    # Encoding ImageNet's test split takes minutes; Slurm's SIGKILL follows SIGTERM in 30 s.
    trainer = make_trainer(make_cfg("TaskRes"))
    calls = _count_image_encodings(trainer)
    with pytest.raises(TrainingInterrupted) as stop, trainer._stop_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        trainer.test("test")
    assert stop.value.code == 128 + signal.SIGTERM and calls[0] == 0
    assert "SIGTERM during the encoding of images for the feature cache" in stop.value.message
