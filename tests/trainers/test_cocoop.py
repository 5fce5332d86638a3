"""CoCoOp: the meta-net and upstream's checkpoint layout, batches as upstream's per-image loop,
exact resume, eval-only, base-to-new evaluation (benchmarks/cocoop_parity.py compares with
upstream's code)."""

import re

import pytest
import torch
import torch.nn.functional as F

from datasets.synthetic import CALTECH101, stripe_classes, write_synthetic_dataset
from tests.support.tiny_run import run_train_in_process, tiny_run_argv

from .helpers import make_trainer

TRAIN = (
    "OPTIM.NAME", "sgd", "OPTIM.LR", 0.05, "OPTIM.MAX_EPOCH", 2,
    "DATALOADER.TRAIN_X.BATCH_SIZE", 4, "TRAINER.COCOOP.CTX_INIT", "a photo of a",
)  # fmt: skip
# Upstream's PromptLearner state dict (KaiyangZhou/CoOp trainers/cocoop.py).
UPSTREAM_KEYS = [
    "ctx",
    "meta_net.linear1.bias",
    "meta_net.linear1.weight",
    "meta_net.linear2.bias",
    "meta_net.linear2.weight",
    "token_prefix",
    "token_suffix",
]


def _state(trainer):
    return {
        k: v.detach().clone() for k, v in trainer.get_model("prompt_learner").state_dict().items()
    }


def test_meta_net_shapes_and_the_checkpoint_keys_are_upstream(make_cfg, tmp_path):
    trainer = make_trainer(make_cfg("CoCoOp", *TRAIN, "TRAIN.CHECKPOINT_FREQ", 1))
    learner = trainer.head.prompt_learner
    vis_dim, ctx_dim = trainer.backbone.embed_dim, trainer.backbone.text_width
    assert learner.meta_net.linear1.weight.shape == (vis_dim // 16, vis_dim)
    assert learner.meta_net.linear2.weight.shape == (ctx_dim, vis_dim // 16)
    assert learner.ctx.shape == (4, ctx_dim)  # "a photo of a": four words
    before = _state(trainer)
    trainer.train()
    saved = torch.load(tmp_path / "output/prompt_learner/model.pth.tar-2", weights_only=True)
    assert sorted(saved["state_dict"]) == UPSTREAM_KEYS
    # The whole prompt learner is optimised: context and meta-net both move.
    assert trainer.optim.param_groups[0]["params"] == list(learner.parameters())
    for key in ("ctx", "meta_net.linear1.weight", "meta_net.linear2.weight"):
        assert not torch.equal(saved["state_dict"][key], before[key]), key


def test_a_batch_is_upstream_s_per_image_loop_averaged(make_cfg):
    trainer = make_trainer(make_cfg("CoCoOp", *TRAIN))
    head, learner = trainer.head, trainer.head.prompt_learner
    features = torch.randn(
        5, trainer.backbone.embed_dim, generator=torch.Generator().manual_seed(0)
    )
    labels = torch.tensor([0, 2, 1, 1, 0])

    def loss_and_grads(compute_loss):
        learner.zero_grad()
        loss = compute_loss()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in learner.parameters()]

    batch_loss, batch_grads = loss_and_grads(lambda: F.cross_entropy(head(features), labels))
    loop_loss, loop_grads = loss_and_grads(
        lambda: torch.stack(
            [F.cross_entropy(head(f[None]), y[None]) for f, y in zip(features, labels)]
        ).mean()
    )
    torch.testing.assert_close(batch_loss, loop_loss, rtol=0, atol=1e-6)
    for batch_grad, loop_grad in zip(batch_grads, loop_grads):
        torch.testing.assert_close(batch_grad, loop_grad, rtol=1e-5, atol=1e-7)
    assert all(g.abs().sum() > 0 for g in batch_grads)
    # Fewer prompts per text-tower pass (here one image's K) changes nothing.
    with torch.no_grad():
        whole = head(features)
        head.images_per_pass = 1
        torch.testing.assert_close(head(features), whole, rtol=1e-5, atol=1e-5)


def test_an_interrupted_run_resumes_to_the_same_weights(make_cfg, tmp_path):
    opts = (*TRAIN, "OPTIM.MAX_EPOCH", 3, "TRAIN.CHECKPOINT_FREQ", 1)
    full = make_trainer(make_cfg("CoCoOp", *opts, "OUTPUT_DIR", str(tmp_path / "full")))
    full.train()

    class Interrupted(Exception):
        pass

    killed_cfg = make_cfg("CoCoOp", *opts, "OUTPUT_DIR", str(tmp_path / "killed"))
    killed = make_trainer(killed_cfg.clone())
    after_epoch = killed.after_epoch

    def stop_after_the_first() -> None:
        after_epoch()
        raise Interrupted

    killed.after_epoch = stop_after_the_first
    with pytest.raises(Interrupted):
        killed.train()
    resumed = make_trainer(killed_cfg)
    resumed.train()
    assert resumed.start_epoch == 1
    full_state, resumed_state = _state(full), _state(resumed)
    assert all(torch.equal(full_state[k], resumed_state[k]) for k in full_state)


def _accuracy(log: str) -> float:
    return float(re.findall(r"\* accuracy: ([\d.]+)%", log)[-1])


def test_eval_only_and_base_to_new(tmp_path, vit_clip):
    # Four classes in Caltech101's layout (its reader splits base and new): two base, two new,
    # so the new-class evaluation is a real choice.
    root = tmp_path / "data"
    write_synthetic_dataset(root, stripe_classes(4), CALTECH101, (4, 2, 3), 32)
    keys = {
        "DATASET.NAME": "Caltech101",
        "MODEL.BACKBONE.NAME": vit_clip,
        "TRAINER.COCOOP.PREC": "fp32",
        "TRAINER.COCOOP.CTX_INIT": "a photo of a",
        "OPTIM.MAX_EPOCH": 2,
        "DATALOADER.TRAIN_X.BATCH_SIZE": 4,
        "DATASET.SUBSAMPLE_CLASSES": "base",
    }
    run = tmp_path / "train"
    train_log = run_train_in_process(tiny_run_argv("CoCoOp", root, run, keys))
    model_dir = ["--model-dir", str(run)]
    same_log = run_train_in_process(
        tiny_run_argv(
            "CoCoOp",
            root,
            tmp_path / "base",
            {"DATASET.NAME": "Caltech101", "DATASET.SUBSAMPLE_CLASSES": "base"},
            flags=["--eval-only", *model_dir],
        )
    )
    assert _accuracy(same_log) == _accuracy(train_log)
    new_log = run_train_in_process(
        tiny_run_argv(
            "CoCoOp",
            root,
            tmp_path / "new",
            {"DATASET.NAME": "Caltech101", "DATASET.SUBSAMPLE_CLASSES": "new"},
            flags=["--eval-only", *model_dir],
        )
    )
    assert "Loading weights to prompt_learner" in new_log
    assert re.search(r"# classes +2\n", new_log)
    assert 0 <= _accuracy(new_log) <= 100


def test_an_upstream_checkpoint_loads(make_cfg, tmp_path):
    """A checkpoint as upstream's fp16 run saves it: fp16 tensors, the token buffers of the
    classes it was trained on (here another count), which loading drops."""
    trainer = make_trainer(make_cfg("CoCoOp", *TRAIN))
    own = _state(trainer)
    generator = torch.Generator().manual_seed(0)
    upstream = {k: torch.randn(v.shape, generator=generator).half() for k, v in own.items()}
    for key in ("token_prefix", "token_suffix"):
        upstream[key] = torch.randn((7, *own[key].shape[1:])).half()
    folder = tmp_path / "upstream" / "prompt_learner"
    folder.mkdir(parents=True)
    checkpoint = {"state_dict": upstream, "epoch": 10, "optimizer": None, "scheduler": None}
    torch.save(checkpoint, folder / "model.pth.tar-10")

    trainer.load_model(str(tmp_path / "upstream"), epoch=10)
    loaded = _state(trainer)
    for key in UPSTREAM_KEYS[:5]:
        assert torch.equal(loaded[key], upstream[key].float()), key
    for key in ("token_prefix", "token_suffix"):
        assert torch.equal(loaded[key], own[key]), key
    assert 0 <= trainer.test() <= 100
