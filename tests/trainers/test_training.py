"""Every method learns the tiny dataset; feature caches save work without changing results."""

import pytest
import torch

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


def _count_image_encodings(trainer) -> list[int]:
    """Images through the image encoder from now on (a forward hook: whichever path encodes)."""
    calls = [0]
    trainer.clip_model.visual.register_forward_hook(
        lambda _module, args, _out: calls.__setitem__(0, calls[0] + len(args[0]))
    )
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
