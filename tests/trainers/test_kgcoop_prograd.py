"""KgCoOp and ProGrad: their losses and ProGrad's projected step against hand computations,
ProGrad's context initialisation, and (both) an exact resume and an eval-only run that
reproduces the trained run."""

import copy

import pytest
import torch
import torch.nn.functional as F

from clip import clip
from clip.model import convert_weights
from tests.support.tiny_run import run_train_in_process, tiny_run_argv

from .helpers import make_trainer

CLASSNAMES_TEMPLATE = "a photo of a {}."  # TinyImages has no template of its own
SGD = ("OPTIM.NAME", "sgd", "OPTIM.MOMENTUM", 0.0, "OPTIM.WEIGHT_DECAY", 0.0, "OPTIM.LR", 0.1)


def _train_batch(trainer) -> tuple[torch.Tensor, torch.Tensor]:
    batch = next(iter(trainer.train_loader_x))
    return trainer.parse_batch_train(batch)


@torch.no_grad()
def _hand_features(clip_model, classnames) -> torch.Tensor:
    """The hand-written prompts encoded by CLIP converted to fp16 (as upstream's second CLIP),
    over all 77 positions as OpenAI's encode_text, normalised twice as upstream."""
    half = copy.deepcopy(clip_model)
    convert_weights(half)
    texts = [CLASSNAMES_TEMPLATE.format(c.replace("_", " ")) for c in classnames]
    tokens = clip.tokenize(texts)
    x = half.token_embedding(tokens).type(half.dtype) + half.positional_embedding.type(half.dtype)
    x = half.ln_final(half.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)).type(half.dtype)
    features = x[torch.arange(len(texts)), tokens.argmax(dim=-1)] @ half.text_projection
    features = features / features.norm(dim=-1, keepdim=True)
    return features / features.norm(dim=-1, keepdim=True)


def test_kgcoop_loss_is_cross_entropy_plus_w_times_the_distance(make_cfg):
    trainer = make_trainer(make_cfg("KgCoOp", "TRAINER.KGCOOP.W", 2.5))
    expected_hand = _hand_features(trainer.clip_model, trainer.dm.dataset.classnames)
    assert trainer.head.hand_features.dtype == torch.float16
    torch.testing.assert_close(trainer.head.hand_features, expected_hand, rtol=0, atol=0)

    features, labels = _train_batch(trainer)
    loss, logits = trainer.training_loss(features, labels)
    text = trainer.head.text_features().detach()
    # Upstream's call, on fp32 learned and fp16 hand-written features (torch's mixed-dtype
    # cosine differs from both all-fp32 and all-fp16 ones in the 4th digit).
    distance = 1 - torch.nn.CosineSimilarity(dim=1, eps=1e-07)(text, expected_hand).mean()
    expected = F.cross_entropy(trainer.model(features), labels) + 2.5 * distance
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(logits, trainer.model(features))
    # The context starts as "a photo of a": the learned prompts are the hand-written ones.
    assert abs(distance.item()) < 1e-3


def test_prograd_context_starts_from_its_template_words_after_zeros(make_cfg):
    trainer = make_trainer(make_cfg("ProGrad"))
    learner = trainer.head.prompt_learner
    ctx = learner.ctx.detach()
    assert ctx.shape[0] == 16  # N_CTX; the four words take the last four slots
    words = trainer.clip_model.token_embedding(clip.tokenize(["a photo of a"]))[0, 1:5]
    assert torch.equal(ctx[:12], torch.zeros_like(ctx[:12]))
    torch.testing.assert_close(ctx[12:], words.float(), rtol=0, atol=0)
    # The class name follows the 16 context slots in every prompt.
    name = trainer.dm.dataset.classnames[0].replace("_", " ")
    tokens = clip.tokenize([" ".join(["X"] * 12) + f" a photo of a {name}."])[0]
    assert torch.equal(learner.tokenized_prompts[0], tokens)


def test_prograd_refuses_fewer_context_slots_than_its_words(make_cfg):
    with pytest.raises(ValueError, match=r"TRAINER\.PROGRAD\.N_CTX is 3.*4 words"):
        make_trainer(make_cfg("ProGrad", "TRAINER.PROGRAD.N_CTX", 3))


def test_prograd_losses_and_step_against_a_hand_computation(make_cfg):
    trainer = make_trainer(make_cfg("ProGrad", *SGD, "TRAINER.PROGRAD.T", 2.0))
    batch = next(iter(trainer.train_loader_x))
    features, _ = trainer.parse_batch_train(batch)
    with torch.no_grad():
        zero_shot = trainer.head.zero_shot_logits(features.float())
    # Labels against zero-shot CLIP's predictions, so that the two gradients conflict.
    labels = batch["label"] = zero_shot.argmin(1)
    ctx = trainer.head.prompt_learner.ctx
    start = ctx.detach().clone()

    logits = trainer.model(features)
    # The teacher is zero-shot CLIP with the template: its classifier is ZeroshotCLIP's.
    reference = make_trainer(make_cfg("ZeroshotCLIP"))
    torch.testing.assert_close(zero_shot, reference.model(features))
    soft = F.softmax(zero_shot / 2.0, dim=-1)
    distillation = F.cross_entropy(logits / 2.0, soft) * 4.0  # soft-target CE times T^2
    ce = F.cross_entropy(logits, labels)
    (g_ce,) = torch.autograd.grad(ce, ctx, retain_graph=True)
    (g_kl,) = torch.autograd.grad(distillation, ctx)
    along = torch.dot(g_ce.flatten(), g_kl.flatten()) / g_kl.norm()
    assert along < 0  # the two gradients conflict here: the projection is exercised
    expected = g_ce - along * g_kl / g_kl.norm()

    summary = trainer.forward_backward(batch)
    assert summary["xe_loss"] == pytest.approx(ce.item(), rel=1e-6)
    assert summary["kl_loss"] == pytest.approx(distillation.item(), rel=1e-5)
    applied = (start - ctx.detach()) / 0.1
    torch.testing.assert_close(applied, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["KgCoOp", "ProGrad"])
def test_resume_is_exact_and_eval_only_reproduces_the_run(method, vit_clip, data_root, tmp_path):
    from dassl.engine import TRAINER_REGISTRY

    keys = {
        "MODEL.BACKBONE.NAME": vit_clip,
        "DATASET.NUM_SHOTS": 2,
        "DATALOADER.TRAIN_X.BATCH_SIZE": 4,
        "OPTIM.LR": 0.05,
        "OPTIM.MAX_EPOCH": 2,
        f"TRAINER.{TRAINER_REGISTRY.get(method).CFG_NODE}.PREC": "fp32",
        "TRAIN.CHECKPOINT_FREQ": 1,
    }
    full_log = run_train_in_process(tiny_run_argv(method, data_root, tmp_path / "full", keys))

    cls = TRAINER_REGISTRY.get(method)
    after_epoch = cls.after_epoch

    class Interrupted(Exception):
        pass

    def stop_after_first(self):
        after_epoch(self)
        if self.epoch == 0:
            raise Interrupted

    cls.after_epoch = stop_after_first
    try:
        with pytest.raises(Interrupted):
            run_train_in_process(tiny_run_argv(method, data_root, tmp_path / "cut", keys))
    finally:
        cls.after_epoch = after_epoch
    resumed_log = run_train_in_process(tiny_run_argv(method, data_root, tmp_path / "cut", keys))
    assert "Previous epoch: 1" in resumed_log

    def weights(run):
        path = tmp_path / run / "prompt_learner" / "model.pth.tar-2"
        return torch.load(path, weights_only=True)["state_dict"]

    full, resumed = weights("full"), weights("cut")
    assert full.keys() == resumed.keys() and all(torch.equal(full[k], resumed[k]) for k in full)
    start = torch.load(tmp_path / "full" / "prompt_learner" / "model.pth.tar-1", weights_only=True)[
        "state_dict"
    ]
    assert not torch.equal(start["ctx"], full["ctx"])  # it learned in the second epoch

    flags = ["--eval-only", "--model-dir", str(tmp_path / "full"), "--load-epoch", "2"]
    eval_log = run_train_in_process(
        tiny_run_argv(method, data_root, tmp_path / "eval", keys, flags=flags)
    )
    accuracy = full_log.split("* accuracy:")[-1].split("%")[0]
    assert eval_log.split("* accuracy:")[-1].split("%")[0] == accuracy
