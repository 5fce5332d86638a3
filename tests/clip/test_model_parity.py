"""Our CLIP against OpenAI's: same state-dict layout, same outputs in fp32."""

from __future__ import annotations

from types import ModuleType

import pytest
import torch

from clip import clip
from clip.model import CLIP, LayerNorm, convert_weights
from clip.synthetic import RN50_DIMS, VIT_B16_DIMS, build_synthetic_model, synthetic_dims

# Two heads in every attention layer, so the head split is exercised.
PARITY_DIMS = {
    "ViT": {"vision_width": 128, "transformer_width": 128},
    "RN": {"vision_width": 8, "transformer_width": 128},
}
TEXTS = ["a photo of a cat.", "a blurry photo of a dog", "an origami 🦒, side view", ""]


def _fp16_exact(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Round to fp16 values: upstream build_model stores weights in fp16, and after .float()
    both models then hold exactly the same numbers."""
    return {
        k: v.half().float() if v.is_floating_point() else v.clone() for k, v in state_dict.items()
    }


@pytest.fixture(scope="module", params=["ViT", "RN"])
def model_pair(request: pytest.FixtureRequest, oracle: ModuleType) -> tuple[torch.nn.Module, ...]:
    arch = request.param
    state_dict = _fp16_exact(build_synthetic_model(arch, **PARITY_DIMS[arch]).state_dict())
    reference = oracle.model.build_model(dict(state_dict)).float().eval()
    return clip.build_model(state_dict), reference


@pytest.mark.parametrize("tower", ["image", "text"])
@torch.no_grad()
def test_encoder_matches_reference(model_pair: tuple[torch.nn.Module, ...], tower: str) -> None:
    ours, reference = model_pair
    if tower == "image":
        size = ours.visual.input_resolution
        inputs = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    else:
        inputs = clip.tokenize(TEXTS)
    expected = getattr(reference, f"encode_{tower}")(inputs)
    assert expected.abs().max() > 0.1  # a degenerate (near-zero) output would prove nothing
    got = getattr(ours, f"encode_{tower}")(inputs)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_forward_matches_reference(model_pair: tuple[torch.nn.Module, ...]) -> None:
    ours, reference = model_pair
    size = ours.visual.input_resolution
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    tokens = clip.tokenize(TEXTS)
    for got, expected in zip(ours(images, tokens), reference(images, tokens)):
        assert got.shape == (2, len(TEXTS)) or got.shape == (len(TEXTS), 2)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "arch,dims",
    [("ViT", {}), ("RN", {}), ("RN", RN50_DIMS), ("ViT", VIT_B16_DIMS)],
    ids=["tiny-ViT", "tiny-RN", "RN50", "ViT-B16"],
)
def test_state_dict_layout_equals_reference(oracle: ModuleType, arch: str, dims: dict) -> None:
    kwargs = synthetic_dims(arch, **dims)
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        ours = CLIP(**kwargs)
        reference = oracle.model.CLIP(**kwargs)
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    reference_shapes = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert ours_shapes == reference_shapes


def test_convert_weights_casts_what_upstream_casts(oracle: ModuleType) -> None:
    kwargs = synthetic_dims("RN")
    ours, reference = CLIP(**kwargs), oracle.model.CLIP(**kwargs)
    convert_weights(ours)
    oracle.model.convert_weights(reference)
    reference_dtypes = {k: v.dtype for k, v in reference.state_dict().items()}
    assert {k: v.dtype for k, v in ours.state_dict().items()} == reference_dtypes
    assert ours.dtype == torch.float16


def test_build_model_infers_architecture_and_stays_fp32() -> None:
    source = build_synthetic_model(
        "ViT", vision_width=128, vision_patch_size=16, image_resolution=64
    )
    state_dict = source.state_dict()
    model = clip.build_model(state_dict)
    assert not model.training
    assert model.dtype == torch.float32
    assert model.visual.input_resolution == 64
    assert model.context_length == 77 and model.vocab_size == 49408
    assert model.visual.transformer.resblocks[0].attn.num_heads == 2
    assert all(torch.equal(v, state_dict[k]) for k, v in model.state_dict().items())


def test_build_model_drops_archive_entries_without_touching_input() -> None:
    state_dict = build_synthetic_model("RN").state_dict()
    state_dict["input_resolution"] = torch.tensor(32)
    state_dict["context_length"] = torch.tensor(77)
    state_dict["vocab_size"] = torch.tensor(49408)
    clip.build_model(state_dict)
    assert "input_resolution" in state_dict  # the caller's dict is left as it was


def test_build_model_rejects_foreign_state_dict() -> None:
    with pytest.raises(KeyError, match="not an OpenAI-layout CLIP checkpoint"):
        clip.build_model({"fc.weight": torch.zeros(2, 2)})


def test_layer_norm_computes_in_fp32_for_fp16_input() -> None:
    norm = LayerNorm(8)
    x = (torch.randn(4, 8) * 300).half()
    out = norm(x)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out, norm(x.float()).half())


@torch.no_grad()
def test_text_attention_is_causal() -> None:
    model = build_synthetic_model("ViT")
    tokens = clip.tokenize(["a photo of a cat", "a photo of a dog"])
    # Same prefix up to the last word: features before that position must not see the future.
    x = model.token_embedding(tokens) + model.positional_embedding
    hidden = model.transformer(x.transpose(0, 1)).transpose(0, 1)
    differs_at = (tokens[0] != tokens[1]).nonzero()[0].item()
    torch.testing.assert_close(hidden[0, :differs_at], hidden[1, :differs_at])
    assert not torch.allclose(hidden[0, differs_at], hidden[1, differs_at])


@torch.no_grad()
def test_first_only_transformer_equals_full_run_at_position_zero() -> None:
    transformer = build_synthetic_model("ViT", vision_width=128).visual.transformer
    x = torch.randn(17, 3, 128, generator=torch.Generator().manual_seed(0))  # [L, N, D]
    first = transformer(x, first_only=True)
    assert first.shape == (1, 3, 128)
    torch.testing.assert_close(first, transformer(x)[:1])


@torch.no_grad()
def test_text_features_do_not_depend_on_batch_companions() -> None:
    """encode_text trims padding shared by the batch; a text's features must not change."""
    model = build_synthetic_model("ViT")
    texts = ["cat", "a long description " * 10]
    together = model.encode_text(clip.tokenize(texts))
    alone = torch.cat([model.encode_text(clip.tokenize(t)) for t in texts])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
