"""Method-specific behaviour through the trainers: bases, enhanced base, backbones, errors."""

import copy

import pytest
import torch

from clip import clip
from dassl.config import get_cfg_default
from tests.support.tiny_clip import TINY_INPUT_SIZE, tiny_clip_checkpoint
from trainers.methods.zsclip import ZeroshotHead

from .helpers import make_trainer


def _reference_base(clip_model, classnames, template="a photo of a {}."):
    """TaskRes's base as the paper's code computes it: raw class names, plain mean."""
    texts = [template.format(c) for c in classnames]
    tokens = clip.tokenize(texts, context_length=clip_model.context_length)
    return clip_model.encode_text(tokens).float()  # one template: the mean is itself


def test_taskres_base_and_untrained_logits_are_zero_shot(make_cfg):
    trainer = make_trainer(make_cfg("TaskRes"))
    classnames = trainer.dm.dataset.classnames
    expected = _reference_base(trainer.clip_model, classnames)
    torch.testing.assert_close(trainer.head.base_text_features, expected)
    features = torch.randn(4, expected.shape[1])
    zero_shot = ZeroshotHead(trainer.head.base_text_features, trainer.logit_scale)(features)
    assert torch.equal(trainer.model(features), zero_shot)


def test_enhanced_base_replaces_the_text_projection(make_cfg, tmp_path):
    regular = make_trainer(make_cfg("TaskRes"))
    clip_model = regular.clip_model
    width, dim = clip_model.text_projection.shape
    weight = torch.randn(dim, width, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "enhanced.pth.tar"
    torch.save({"state_dict": {"weight": weight}, "epoch": 1}, path)

    enhanced = make_trainer(make_cfg("TaskRes", "TRAINER.TaskRes.ENHANCED_BASE", str(path)))
    patched = copy.deepcopy(clip_model)
    patched.text_projection.data = weight.t().contiguous()
    expected = _reference_base(patched, regular.dm.dataset.classnames)
    torch.testing.assert_close(enhanced.head.base_text_features, expected)
    assert not torch.allclose(enhanced.head.base_text_features, regular.head.base_text_features)
    # The loaded CLIP itself is left untouched.
    assert torch.equal(enhanced.clip_model.text_projection, clip_model.text_projection)


def test_enhanced_base_errors_name_the_problem(make_cfg, tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth.*none"):
        make_trainer(make_cfg("TaskRes", "TRAINER.TaskRes.ENHANCED_BASE", str(missing)))
    wrong = tmp_path / "wrong.pth"
    torch.save({"state_dict": {"weight": torch.zeros(3, 5)}}, wrong)
    with pytest.raises(ValueError, match=r"\(3, 5\).*text projection"):
        make_trainer(make_cfg("TaskRes", "TRAINER.TaskRes.ENHANCED_BASE", str(wrong)))


@pytest.mark.parametrize("arch, dims", [("RN", {}), ("ViT", {"embed_dim": 64})])
def test_clip_adapter_width_follows_the_backbone(make_cfg, clip_dir, arch, dims):
    backbone = tiny_clip_checkpoint(clip_dir, arch=arch, **dims)
    trainer = make_trainer(make_cfg("CLIP_Adapter", "OPTIM.MAX_EPOCH", 1, backbone=backbone))
    dim = trainer.clip_model.visual.output_dim
    assert trainer.head.adapter.fc[0].weight.shape == (dim // 4, dim)
    clip_state = {k: v.clone() for k, v in trainer.clip_model.state_dict().items()}
    trainer.train()
    # CLIP stays frozen and in eval mode (a ResNet's BatchNorm statistics must not move).
    assert not trainer.clip_model.training
    assert all(torch.equal(v, clip_state[k]) for k, v in trainer.clip_model.state_dict().items())


def test_input_size_mismatch_names_both_sizes_and_the_fix(make_cfg):
    with pytest.raises(ValueError) as err:
        make_trainer(make_cfg("TaskRes", "INPUT.SIZE", (64, 64)))
    message = str(err.value)
    assert "(64, 64)" in message and f"{TINY_INPUT_SIZE}x{TINY_INPUT_SIZE}" in message
    assert f'INPUT.SIZE "({TINY_INPUT_SIZE}, {TINY_INPUT_SIZE})"' in message
    assert "backbone" in message


def test_chosen_statistics_that_differ_from_the_backbone_are_refused(make_cfg):
    with pytest.raises(ValueError, match=r"INPUT\.PIXEL_MEAN is \[0\.5, 0\.5, 0\.5\].*trained"):
        make_trainer(make_cfg("ZeroshotCLIP", "INPUT.PIXEL_MEAN", [0.5, 0.5, 0.5]))


def test_inputs_left_at_a_default_follow_the_backbone(make_cfg, capsys):
    defaults = get_cfg_default().INPUT
    opts = ["INPUT.SIZE", (224, 224), "INPUT.PIXEL_MEAN", defaults.PIXEL_MEAN]
    trainer = make_trainer(make_cfg("ZeroshotCLIP", *opts, "INPUT.PIXEL_STD", defaults.PIXEL_STD))
    inputs = trainer.cfg.INPUT
    assert tuple(inputs.SIZE) == (TINY_INPUT_SIZE, TINY_INPUT_SIZE)
    assert inputs.INTERPOLATION == "bicubic"  # make_cfg leaves Dassl's bilinear
    assert inputs.PIXEL_MEAN == list(clip.CLIP_MEAN) and inputs.PIXEL_STD == list(clip.CLIP_STD)
    # The loaders were built with them: a test batch has the backbone's input size.
    assert next(iter(trainer.test_loader))["img"].shape[-2:] == (TINY_INPUT_SIZE, TINY_INPUT_SIZE)
    assert "INPUT.SIZE follows the backbone" in capsys.readouterr().out


@pytest.mark.parametrize(
    "trainer, key, value",
    [
        ("TaskRes", "TRAINER.TaskRes.PREC", "fp8"),
        ("TaskRes", "TRAINER.TaskRes.RESIDUAL_SIDE", "both"),
        ("CoOp", "TRAINER.COOP.CLASS_TOKEN_POSITION", "left"),
    ],
)
def test_bad_method_options_are_refused(make_cfg, tmp_path, trainer, key, value):
    # Refused before any work: neither the backbone nor the dataset (both missing) is read.
    missing = ("DATASET.ROOT", str(tmp_path / "no_data"))
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        make_trainer(make_cfg(trainer, key, value, *missing, backbone=tmp_path / "no_clip.pt"))


def test_zeroshot_trainers_have_nothing_to_register_and_evaluate(make_cfg):
    single = make_trainer(make_cfg("ZeroshotCLIP"))
    ensemble = make_trainer(make_cfg("ZeroshotCLIP2"))
    assert single.get_model_names() == [] == ensemble.get_model_names()
    single.load_model("")  # eval-only without --model-dir
    features, labels = single.encode_data_source(single.dm.dataset.test)
    correct = (single.model(features).argmax(1) == labels).sum().item()
    assert single.test() == pytest.approx(100 * correct / len(labels))
    # The ensemble (7 + 1 templates) differs from the single custom template.
    assert not torch.allclose(single.head.text_features, ensemble.head.text_features)
