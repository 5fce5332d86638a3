"""Method heads and text plumbing, on a tiny CLIP without the engine."""

import copy

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from clip import clip
from clip.backbone import OpenAIBackbone
from tests.support.tiny_clip import backbone_cfg, tiny_clip_checkpoint
from trainers.methods.clip_adapter import Adapter, AdapterHead
from trainers.methods.coop import CoOpHead, PromptLearner, prompt_order
from trainers.methods.linear_probe import linear_from_logistic, search_c
from trainers.methods.taskres import TaskResHead
from trainers.methods.zsclip import ZeroshotHead, zeroshot_classifier
from trainers.text import TextEncoder, encode_class_prompts, encode_texts, normalize

CLASSNAMES = ["red_panda", "cat", "airliner"]


@pytest.fixture(scope="module")
def clip_model(tmp_path_factory):
    """The tiny CLIP behind the backbone interface every method uses."""
    path = tiny_clip_checkpoint(tmp_path_factory.mktemp("clip"), arch="ViT")
    model = clip.load_clip_to_cpu(backbone_cfg(path)).eval().requires_grad_(False)
    return OpenAIBackbone(model, str(path), path)


def test_text_encoder_matches_encode_text(clip_model):
    tokens = clip_model.tokenize(["a photo of a cat.", "itap of a red panda."])
    ours = TextEncoder(clip_model)(clip_model.token_embedding(tokens), tokens)
    torch.testing.assert_close(ours, clip_model.model.encode_text(tokens))


def test_replacement_projection_follows_clips_dtype(clip_model):
    # An enhanced-base file is read in fp32; an fp16 CLIP projects with it in fp16.
    fp16 = copy.deepcopy(clip_model)
    fp16.half_()
    projection = torch.randn(clip_model.text_projection.shape)
    got = encode_texts(fp16, ["a photo of a cat."], projection)
    assert got.dtype == torch.float16
    patched = copy.deepcopy(fp16)
    patched.model.text_projection.data = projection.half()
    assert torch.equal(got, encode_texts(patched, ["a photo of a cat."]))


def test_encode_class_prompts_layout_and_batching(clip_model):
    templates = ["a photo of a {}.", "art of the {}."]
    feats = encode_class_prompts(clip_model, CLASSNAMES, templates)
    assert feats.shape == (3, 2, clip_model.text_projection.shape[1])
    expected = clip_model.model.encode_text(clip_model.tokenize(["art of the cat."]))[0]
    torch.testing.assert_close(feats[1, 1], expected)


def test_taskres_zero_residual_gives_exactly_the_zero_shot_logits(clip_model):
    base = encode_class_prompts(clip_model, CLASSNAMES, ["a photo of a {}."]).mean(1)
    image_features = torch.randn(5, base.shape[1])
    zero_shot = ZeroshotHead(base, 14.0)(image_features)
    for side in ("text", "image"):
        head = TaskResHead(base, alpha=0.5, logit_scale=14.0, side=side)
        assert torch.equal(head(image_features), zero_shot)


def test_taskres_residual_changes_logits_by_alpha(clip_model):
    base = torch.randn(3, 8)
    head = TaskResHead(base, alpha=0.5, logit_scale=1.0)
    with torch.no_grad():
        head.text_feature_residuals.copy_(torch.randn(3, 8))
    feats = torch.randn(4, 8)
    expected = normalize(feats) @ normalize(base + 0.5 * head.text_feature_residuals).t()
    torch.testing.assert_close(head(feats), expected)
    assert sorted(head.state_dict()) == ["base_text_features", "text_feature_residuals"]
    image_side = TaskResHead(base, 1.0, 1.0, side="image")
    assert image_side.text_feature_residuals.shape == (1, 8)


def test_zeroshot_ensemble_normalises_each_template_then_the_mean(clip_model):
    templates = ["a photo of a {}.", "itap of a {}.", "a {} in a video game."]
    got = zeroshot_classifier(clip_model, CLASSNAMES, templates)
    names = [n.replace("_", " ") for n in CLASSNAMES]
    per_template = []
    for t in templates:
        e = clip_model.model.encode_text(clip_model.tokenize([t.format(n) for n in names]))
        per_template.append(e / e.norm(dim=-1, keepdim=True))
    mean = torch.stack(per_template).mean(0)
    torch.testing.assert_close(got, mean / mean.norm(dim=-1, keepdim=True))


@pytest.mark.parametrize("position", ["end", "middle", "front"])
def test_prompt_order_is_a_permutation_placing_the_name(position):
    order = prompt_order(position, n_ctx=4, name_lens=[1, 3], length=10)
    for row, name_len in zip(order.tolist(), [1, 3]):
        assert sorted(row) == list(range(10)) and row[0] == 0
        name_at = {"end": 5, "middle": 3, "front": 1}[position]
        assert row[name_at : name_at + name_len] == list(range(5, 5 + name_len))


def test_coop_with_word_init_reproduces_the_text_prompt(clip_model):
    learner = PromptLearner(clip_model, CLASSNAMES, ctx_init="a_photo_of_a")
    assert learner.ctx.shape == (4, clip_model.model.ln_final.weight.shape[0])
    head = CoOpHead(learner, clip_model)
    prompts = learner()
    text = head.text_encoder(prompts, learner.tokenized_prompts)
    names = ["red panda", "cat", "airliner"]
    expected = clip_model.model.encode_text(
        clip_model.tokenize([f"a photo of a {n}." for n in names])
    )
    torch.testing.assert_close(text, expected)


def test_coop_middle_and_front_keep_every_token(clip_model):
    end = PromptLearner(clip_model, CLASSNAMES, n_ctx=4, class_token_position="end")
    for position in ("middle", "front"):
        other = PromptLearner(clip_model, CLASSNAMES, n_ctx=4, class_token_position=position)
        other.load_state_dict(end.state_dict())
        a, b = end(), other()
        assert not torch.equal(a, b)
        # Same multiset of token vectors per class, in another order.
        torch.testing.assert_close(a.sum(1), b.sum(1))


def test_coop_gradient_reaches_context_only(clip_model):
    learner = PromptLearner(clip_model, CLASSNAMES, n_ctx=2, csc=True)
    assert learner.ctx.shape[0] == 3
    head = CoOpHead(learner, clip_model)
    head(torch.randn(2, clip_model.text_projection.shape[1])).sum().backward()
    assert learner.ctx.grad is not None and learner.ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in clip_model.parameters())
    assert sorted(learner.state_dict()) == ["ctx", "token_prefix", "token_suffix"]


@pytest.mark.parametrize("dim", [1024, 512])  # RN50's and ViT-B's embedding widths
def test_adapter_shapes_and_keys(dim):
    adapter = Adapter(dim)
    assert {k: tuple(v.shape) for k, v in adapter.state_dict().items()} == {
        "fc.0.weight": (dim // 4, dim),
        "fc.2.weight": (dim, dim // 4),
    }
    head = AdapterHead(torch.randn(5, dim), ratio=0.2, logit_scale=1.0)
    assert head(torch.randn(3, dim)).shape == (3, 5)
    assert list(head.state_dict()) == ["adapter.fc.0.weight", "adapter.fc.2.weight"]


def test_adapter_ratio_zero_is_zero_shot():
    text = torch.randn(4, 16)
    feats = torch.randn(3, 16)
    head = AdapterHead(text, ratio=0.0, logit_scale=2.0)
    torch.testing.assert_close(head(feats), ZeroshotHead(text, 2.0)(feats))


@pytest.mark.parametrize("num_classes", [2, 4])
def test_linear_head_from_logistic_regression_predicts_like_sklearn(num_classes):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = np.arange(40) % num_classes
    x[np.arange(40), y] += 3.0
    clf = LogisticRegression(max_iter=1000).fit(x, y)
    weight, bias = linear_from_logistic(clf, num_classes + 1)  # one class never seen
    logits = torch.from_numpy(x) @ weight.t() + bias
    assert np.array_equal(logits.argmax(1).numpy(), clf.predict(x))
    if num_classes == 2:  # softmax of the split row equals the logistic probability
        probs = logits.softmax(1)[:, :2].numpy()
        np.testing.assert_allclose(probs, clf.predict_proba(x), rtol=1e-4, atol=1e-5)


def test_search_c_returns_the_classifier_fitted_with_the_chosen_c():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 5))
    y = np.arange(60) % 3
    x[np.arange(60), y] += 1.5
    train, val = (x[:30], y[:30]), (x[30:], y[30:])
    c, clf = search_c(train, val, [1e2, 1.0, 1e-2], steps=2, max_iter=200)
    assert clf.C == c
    c0, clf0 = search_c(train, val, [1e2, 1.0, 1e-2], steps=0, max_iter=200)
    assert c0 in (1e2, 1.0, 1e-2) and clf0.C == c0
