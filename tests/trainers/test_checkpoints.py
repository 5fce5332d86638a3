"""Checkpoint formats and eval-only reloads, as upstream writes and reads them."""

import pytest
import torch

from trainers.class_subsets import imagenet_rows

from .helpers import make_trainer

TRAIN = ("OPTIM.MAX_EPOCH", 4, "OPTIM.LR", 0.05, "DATALOADER.TRAIN_X.BATCH_SIZE", 6)


@pytest.mark.parametrize(
    "trainer_name, model_name, keys",
    [
        ("TaskRes", "prompt_learner", ["base_text_features", "text_feature_residuals"]),
        ("CoOp", "prompt_learner", ["ctx", "token_prefix", "token_suffix"]),
        ("CLIP_Adapter", "clip_adapter", ["fc.0.weight", "fc.2.weight"]),
    ],
)
def test_model_names_and_state_dict_keys_are_upstream(
    make_cfg, tmp_path, trainer_name, model_name, keys
):
    trainer = make_trainer(make_cfg(trainer_name, *TRAIN, "TRAIN.CHECKPOINT_FREQ", 2))
    assert trainer.get_model_names() == [model_name]
    trainer.train()
    folder = tmp_path / "output" / model_name
    for epoch in (2, 4):
        checkpoint = torch.load(folder / f"model.pth.tar-{epoch}", weights_only=True)
        assert checkpoint["epoch"] == epoch
        assert sorted(checkpoint["state_dict"]) == keys
    # Only the head is optimised: the optimizer holds exactly the learnable tensors.
    learnable = [p for p in trainer.get_model(model_name).parameters()]
    assert trainer.optim.param_groups[0]["params"] == learnable


def _state(trainer, name="prompt_learner"):
    return {k: v.detach().clone() for k, v in trainer.get_model(name).state_dict().items()}


def test_eval_only_from_best_and_from_epoch_reproduces_the_run(make_cfg, tmp_path):
    best_dir, last_dir = tmp_path / "best", tmp_path / "last"
    best_run = make_trainer(
        make_cfg("TaskRes", *TRAIN, "TEST.FINAL_MODEL", "best_val", "OUTPUT_DIR", str(best_dir))
    )
    best_run.train()  # deploys the best-val model and tests it
    best_state, best_acc = _state(best_run), best_run.test()
    last_run = make_trainer(make_cfg("TaskRes", *TRAIN, "OUTPUT_DIR", str(last_dir)))
    last_run.train()  # tests the last-epoch model
    last_state, last_acc = _state(last_run), last_run.test()

    evaluator = make_trainer(make_cfg("TaskRes"))  # as train.py --eval-only does
    evaluator.load_model(str(best_dir))
    assert evaluator.test() == best_acc
    assert all(torch.equal(v, best_state[k]) for k, v in _state(evaluator).items())
    evaluator.load_model(str(last_dir), epoch=4)
    assert evaluator.test() == last_acc
    assert all(torch.equal(v, last_state[k]) for k, v in _state(evaluator).items())


def test_missing_checkpoint_error_names_file_and_fix(make_cfg, tmp_path):
    trainer = make_trainer(make_cfg("TaskRes"))
    with pytest.raises(FileNotFoundError, match=r"model.pth.tar-7.*--load-epoch"):
        trainer.load_model(str(tmp_path), epoch=7)


def test_load_model_without_directory_is_a_no_op(make_cfg, capsys):
    trainer = make_trainer(make_cfg("TaskRes"))
    before = _state(trainer)
    trainer.load_model("")
    assert "skipped" in capsys.readouterr().out
    assert all(torch.equal(v, before[k]) for k, v in _state(trainer).items())


def test_coop_loading_keeps_the_buffers_built_from_class_names(make_cfg, tmp_path):
    trainer = make_trainer(make_cfg("CoOp", "TRAINER.COOP.N_CTX", 4))
    state = _state(trainer)
    folder = tmp_path / "ckpt" / "prompt_learner"
    folder.mkdir(parents=True)
    doctored = {
        k: torch.zeros_like(v) if k.startswith("token_") else v + 1 for k, v in state.items()
    }
    torch.save({"state_dict": doctored, "epoch": 3}, folder / "model.pth.tar-3")
    trainer.load_model(str(tmp_path / "ckpt"), epoch=3)
    loaded = _state(trainer)
    assert torch.equal(loaded["ctx"], state["ctx"] + 1)
    assert torch.equal(loaded["token_prefix"], state["token_prefix"])
    assert torch.equal(loaded["token_suffix"], state["token_suffix"])


def test_checkpoint_of_another_shape_fails_clearly(make_cfg, tmp_path):
    trainer = make_trainer(make_cfg("TaskRes"))
    state = _state(trainer)
    folder = tmp_path / "ckpt" / "prompt_learner"
    folder.mkdir(parents=True)
    wrong = {k: torch.cat([v, v]) for k, v in state.items()}  # twice the classes
    torch.save({"state_dict": wrong, "epoch": 1}, folder / "model-best.pth.tar")
    with pytest.raises(RuntimeError, match="another dataset"):
        trainer.load_model(str(tmp_path / "ckpt"))


@pytest.mark.parametrize("dataset", ["ImageNetA", "ImageNetR"])
def test_imagenet_checkpoint_rows_are_selected_for_a_and_r(make_cfg, dataset):
    trainer = make_trainer(make_cfg("TaskRes"))
    trainer.cfg.defrost()
    trainer.cfg.DATASET.NAME = dataset
    base = torch.arange(1000.0).unsqueeze(1).expand(1000, 4)
    residual = -base
    image_side = torch.ones(1, 4)
    adapted = trainer.select_imagenet_classes(
        {"base_text_features": base, "text_feature_residuals": residual}
    )
    rows = torch.tensor(imagenet_rows(dataset))
    assert torch.equal(adapted["base_text_features"][:, 0], rows.float())
    assert torch.equal(adapted["text_feature_residuals"][:, 0], -rows.float())
    kept = trainer.select_imagenet_classes(
        {"base_text_features": base, "text_feature_residuals": image_side}
    )
    assert torch.equal(kept["text_feature_residuals"], image_side)


def test_imagenet_classes_are_picked_along_each_key_s_class_axis(make_cfg):
    """A [N, K] tensor (Tip-Adapter's cache values) declares class axis 1 and keeps its rows."""
    trainer = make_trainer(make_cfg("TaskRes"))
    trainer.cfg.defrost()
    trainer.cfg.DATASET.NAME = "ImageNetA"
    trainer.PER_CLASS_KEYS = {"cache_values": 1, "class_rows": 0}
    values = torch.arange(1000.0).expand(5, 1000)  # [N, K]: column k holds k
    picked = trainer.select_imagenet_classes({"cache_values": values, "class_rows": values.t()})
    columns = torch.tensor(imagenet_rows("ImageNetA")).float()
    assert picked["cache_values"].shape == (5, 200)
    assert torch.equal(picked["cache_values"][0], columns)
    assert torch.equal(picked["class_rows"][:, 0], columns)
