"""OpenCLIP backbones through every method: parity with OpenCLIP's own encoders, training,
eval-only, and the towers a method cannot use.

The models are OpenCLIP architectures shrunk and built with random weights
(tests/support/tiny_openclip.py), named as `local-dir:` folders; the same folders serve the
hf-hub: and openclip: lookups in tests/clip/test_openclip_weights.py.
"""

import copy
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import BertConfig

from clip.backbone import TextTowerError
from dassl.data.transforms import build_transform
from tests.support.tiny_openclip import tiny_model_cfg, write_openclip_folder

from .conftest import build_cfg
from .helpers import make_trainer, train_loss

BACKBONES = ("vit", "rn", "siglip")
PARITY = (*BACKBONES, "convnext")
# INPUT.SIZE at Dassl's default, so it follows each backbone (SigLIP's tiny tower takes 160 px).
FOLLOW = ("INPUT.SIZE", (224, 224))


@pytest.fixture(scope="session")
def openclip_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("openclip")
    return {name: write_openclip_folder(root / name, name) for name in PARITY}


def _cfg(trainer, folder, data_root, output_dir, *opts):
    return build_cfg(trainer, f"local-dir:{folder}", data_root, output_dir, [*FOLLOW, *opts])


@pytest.mark.parametrize("name", PARITY)
def test_zero_shot_logits_equal_openclips_own(name, openclip_dirs, data_root, tmp_path):
    folder = openclip_dirs[name]
    trainer = make_trainer(_cfg("ZeroshotCLIP", folder, data_root, tmp_path))
    images = next(iter(trainer.test_loader))["img"]
    with torch.no_grad():
        ours = trainer.model(trainer.model.encode_images(images))

        reference = open_clip.create_model(f"local-dir:{folder}").eval()
        tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
        prompts = [f"a photo of a {c.replace('_', ' ')}." for c in trainer.dm.dataset.classnames]
        image_features = reference.encode_image(images, normalize=True)
        text_features = reference.encode_text(tokenizer(prompts), normalize=True)
        expected = reference.logit_scale.exp() * image_features @ text_features.t()
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)

    # CoOp's path, from token embeddings, is OpenCLIP's text forward too.
    backbone = trainer.backbone
    tokens = backbone.tokenize(prompts)
    with torch.no_grad():
        from_embeddings = backbone.encode_embeddings(backbone.token_embedding(tokens), tokens)
    torch.testing.assert_close(from_embeddings, reference.encode_text(tokens), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["vit", "siglip"])
def test_inputs_follow_the_backbones_preprocessing(name, openclip_dirs, data_root, tmp_path):
    folder = openclip_dirs[name]
    trainer = make_trainer(_cfg("ZeroshotCLIP", folder, data_root, tmp_path))
    preprocess = open_clip.create_model(f"local-dir:{folder}").visual.preprocess_cfg
    inputs = trainer.cfg.INPUT
    assert tuple(inputs.SIZE) == tuple(preprocess["size"])
    assert inputs.PIXEL_MEAN == list(preprocess["mean"])
    assert inputs.PIXEL_STD == list(preprocess["std"])
    assert inputs.INTERPOLATION == preprocess["interpolation"]
    if preprocess["resize_mode"] == "shortest":
        # The test transform is then OpenCLIP's own, pixel for pixel.
        theirs = open_clip.transform.image_transform_v2(
            open_clip.transform.PreprocessCfg(**preprocess), is_train=False
        )
        with Image.open(trainer.dm.dataset.test[0].impath) as img:
            ours = build_transform(trainer.cfg, is_train=False)(img.convert("RGB"))
            torch.testing.assert_close(ours, theirs(img), rtol=0, atol=1e-6)


def test_a_chosen_input_that_differs_from_the_backbone_is_refused(
    openclip_dirs, data_root, tmp_path
):
    cfg = _cfg("ZeroshotCLIP", openclip_dirs["siglip"], data_root, tmp_path)
    cfg.INPUT.PIXEL_STD = [0.3, 0.3, 0.3]
    with pytest.raises(ValueError, match=r"INPUT\.PIXEL_STD is \[0\.3, 0\.3, 0\.3\].*\[0\.5"):
        make_trainer(cfg)


METHODS = [
    ("TaskRes", ()),
    ("CoOp", ("TRAINER.COOP.N_CTX", 4)),
    ("CoCoOp", ("TRAINER.COCOOP.N_CTX", 4)),
    ("CLIP_Adapter", ()),
    ("LinearProbeCLIP", ("TRAINER.LINEAR_PROBE.SEARCH_STEPS", 1)),
    ("ZeroshotCLIP2", ()),
]


def _learned(trainer):
    names = trainer.get_model_names()
    if not names:
        return {}
    return {k: v.detach().clone() for k, v in trainer.get_model(names[0]).state_dict().items()}


@pytest.mark.parametrize("trainer_name, opts", METHODS, ids=[m[0] for m in METHODS])
@pytest.mark.parametrize("name", BACKBONES)
def test_every_method_trains_and_eval_only_reproduces_it(
    name, trainer_name, opts, openclip_dirs, data_root, tmp_path
):
    folder, run_dir = openclip_dirs[name], tmp_path / "run"
    train_opts = ("OPTIM.MAX_EPOCH", 2, *opts)
    trainer = make_trainer(_cfg(trainer_name, folder, data_root, run_dir, *train_opts))
    before, loss_before = _learned(trainer), train_loss(trainer)
    trainer.train()
    accuracy, after = trainer.test(), _learned(trainer)
    if before:
        assert any(not torch.equal(v, after[k]) for k, v in before.items())
        assert train_loss(trainer) < loss_before

    evaluator = make_trainer(_cfg(trainer_name, folder, data_root, tmp_path / "eval", *opts))
    epoch = 1 if trainer_name == "LinearProbeCLIP" else 2
    evaluator.load_model(str(run_dir) if before else "", epoch=epoch)
    assert evaluator.test() == accuracy
    assert all(torch.equal(v, after[k]) for k, v in _learned(evaluator).items())


@pytest.mark.parametrize("name", BACKBONES)
def test_enhanced_base_replaces_the_openclip_text_projection(
    name, openclip_dirs, data_root, tmp_path
):
    folder = openclip_dirs[name]
    regular = make_trainer(_cfg("TaskRes", folder, data_root, tmp_path / "regular"))
    width, dim = regular.backbone.text_projection.shape
    weight = torch.randn(dim, width, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "enhanced.pth.tar"
    torch.save({"state_dict": {"weight": weight}}, path)
    opts = ("TRAINER.TaskRes.ENHANCED_BASE", str(path))
    enhanced = make_trainer(_cfg("TaskRes", folder, data_root, tmp_path / "e", *opts))

    # Reference: OpenCLIP's encode_text on a copy whose projection holds the new weight.
    patched = copy.deepcopy(regular.backbone.model)
    tower = getattr(patched, "text", patched)
    if isinstance(tower.text_projection, torch.nn.Linear):
        tower.text_projection.weight.data = weight.clone()
    else:
        tower.text_projection.data = weight.t().contiguous()
    classnames = regular.dm.dataset.classnames
    tokens = regular.backbone.tokenize([f"a photo of a {c}." for c in classnames])
    with torch.no_grad():
        expected = patched.encode_text(tokens)
    torch.testing.assert_close(enhanced.head.base_text_features, expected, rtol=0, atol=1e-5)
    assert not torch.allclose(enhanced.head.base_text_features, regular.head.base_text_features)


@pytest.mark.parametrize("name", BACKBONES)
def test_text_projection_tuning_builds_a_base_taskres_loads(
    name, openclip_dirs, data_root, tmp_path
):
    """Untrained, the tuned classifier is TaskRes's regular base (SigLIP's biased projection
    included); trained, it lowers the loss, and TaskRes* starts from what it ended with."""
    folder = openclip_dirs[name]
    regular = make_trainer(_cfg("TaskRes", folder, data_root, tmp_path / "regular"))
    fast = ("OPTIM.MAX_EPOCH", 5, "OPTIM.LR", 0.05)
    tuning = make_trainer(_cfg("TextProjectionTuning", folder, data_root, tmp_path / "t", *fast))
    with torch.no_grad():
        start = tuning.head.class_features()
    torch.testing.assert_close(start, regular.head.base_text_features, rtol=0, atol=1e-5)
    before = train_loss(tuning)
    tuning.train()
    assert train_loss(tuning) < before
    opts = ("TRAINER.TaskRes.ENHANCED_BASE", str(tmp_path / "t" / "enhanced_base.pth.tar"))
    enhanced = make_trainer(_cfg("TaskRes", folder, data_root, tmp_path / "e", *opts))
    with torch.no_grad():
        tuned = tuning.head.class_features()
    torch.testing.assert_close(enhanced.head.base_text_features, tuned, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def hf_tower_dir(tmp_path_factory):
    """A tiny model whose text tower is a Hugging Face BERT (built from a local config)."""
    root = tmp_path_factory.mktemp("hf-tower")
    bert = root / "bert"
    BertConfig(
        vocab_size=49408,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=77,
    ).save_pretrained(bert)
    model_cfg = tiny_model_cfg("vit")
    model_cfg["text_cfg"] = {
        "hf_model_name": str(bert),
        "hf_model_pretrained": False,
        "hf_proj_type": "linear",
        "hf_pooler_type": "mean_pooler",
        "context_length": 77,
    }
    return write_openclip_folder(root / "model", "vit", model_cfg=model_cfg)


def test_coop_on_a_hugging_face_text_tower_stops_and_says_why(hf_tower_dir, data_root, tmp_path):
    with pytest.raises(TextTowerError, match="Hugging Face.*token embeddings"):
        make_trainer(_cfg("CoOp", hf_tower_dir, data_root, tmp_path))


def test_text_feature_methods_run_on_a_hugging_face_text_tower(hf_tower_dir, data_root, tmp_path):
    trainer = make_trainer(_cfg("ZeroshotCLIP", hf_tower_dir, data_root, tmp_path))
    prompts = [f"a photo of a {c.replace('_', ' ')}." for c in trainer.dm.dataset.classnames]
    model = trainer.backbone.model
    with torch.no_grad():
        expected = F.normalize(model.encode_text(trainer.backbone.tokenize(prompts)), dim=-1)
    torch.testing.assert_close(trainer.head.text_features, expected, rtol=0, atol=1e-6)
    path = tmp_path / "enhanced.pth.tar"
    torch.save({"state_dict": {"weight": torch.zeros(32, 16)}}, path)
    opts = ("TRAINER.TaskRes.ENHANCED_BASE", str(path))
    with pytest.raises(ValueError, match="no projection matrix"):
        make_trainer(_cfg("TaskRes", hf_tower_dir, data_root, tmp_path / "e", *opts))
    with pytest.raises(ValueError, match="ends in none"):
        make_trainer(_cfg("TextProjectionTuning", hf_tower_dir, data_root, tmp_path / "t"))


def test_the_weights_identity_follows_the_file(openclip_dirs, tmp_path, data_root):
    """The feature store keys features by the backbone's weights: another seed, another id."""
    same = make_trainer(_cfg("ZeroshotCLIP", openclip_dirs["vit"], data_root, tmp_path / "a"))
    other_dir = write_openclip_folder(tmp_path / "seed1", "vit", seed=1)
    other = make_trainer(_cfg("ZeroshotCLIP", other_dir, data_root, tmp_path / "b"))
    assert same.backbone.weights_file == Path(openclip_dirs["vit"]) / "open_clip_model.safetensors"
    assert same.backbone.weights_digest() != other.backbone.weights_digest()
    in_memory = copy.deepcopy(same.backbone)
    in_memory.weights_file = None
    digest = in_memory.weights_digest()
    with torch.no_grad():
        in_memory.model.logit_scale.add_(1e-3)
    assert in_memory.weights_digest() != digest


@pytest.mark.parametrize("name", BACKBONES)
def test_fp16_runs_openclips_towers_in_half_and_agrees_with_fp32(
    name, openclip_dirs, data_root, tmp_path, force_precision
):
    folder = openclip_dirs[name]
    fp32 = make_trainer(_cfg("ZeroshotCLIP", folder, data_root, tmp_path / "fp32"))
    cfg = build_cfg(
        "ZeroshotCLIP", f"local-dir:{folder}", data_root, tmp_path / "fp16", FOLLOW, prec="fp16"
    )
    fp16 = make_trainer(cfg)
    assert fp16.backbone.dtype == torch.float16
    assert fp16.backbone.text_projection.dtype == torch.float16
    images = next(iter(fp32.test_loader))["img"]
    with torch.no_grad():
        features = fp16.model.encode_images(images)
        assert features.dtype == torch.float16
        torch.testing.assert_close(
            fp16.model(fp16.model.encode_images(images)),
            fp32.model(fp32.model.encode_images(images)),
            rtol=0,
            atol=0.05,
        )
    torch.testing.assert_close(fp16.head.text_features, fp32.head.text_features, rtol=0, atol=5e-3)
