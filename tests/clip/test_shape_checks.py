"""build_model checks every size and shape against the architecture before it allocates."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from clip import clip
from clip.synthetic import build_synthetic_model

NOT_CLIP = "not an OpenAI-layout CLIP checkpoint, or the file is corrupt"


def _shapes_only(arch: str) -> dict[str, torch.Tensor]:
    """A tiny CLIP's state dict as meta tensors: shapes and no data, so only shapes can be read."""
    return {k: v.to("meta") for k, v in build_synthetic_model(arch).state_dict().items()}


@contextmanager
def _address_space_limit(extra_bytes: int) -> Iterator[None]:
    """Within the block, this process can map at most `extra_bytes` more memory."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    mapped = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = mapped + extra_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_absurd_vocabulary_fails_fast_without_allocating() -> None:
    state_dict = _shapes_only("ViT")
    # Claims 1e8 x 64 fp32 (25.6 GB) while holding one element: stride 0 repeats it.
    state_dict["token_embedding.weight"] = torch.empty_strided((10**8, 64), (0, 0))
    with _address_space_limit(1 << 30), pytest.raises(ValueError) as info:
        clip.build_model(state_dict)
    message = str(info.value)
    for part in ("token_embedding.weight", "(100000000, 64)", "vocab_size", "49408", NOT_CLIP):
        assert part in message


@pytest.mark.parametrize(
    "arch,key",
    [("ViT", "visual.proj"), ("RN", "visual.layer2.0.conv2.weight"), ("ViT", "logit_scale")],
)
def test_shape_that_does_not_fit_the_architecture_names_key_and_both_shapes(
    arch: str, key: str
) -> None:
    state_dict = _shapes_only(arch)
    expected = tuple(state_dict[key].shape)
    wrong = (*reversed(expected), 1) if len(expected) < 2 else tuple(reversed(expected))
    state_dict[key] = torch.empty(wrong, device="meta")
    with pytest.raises(ValueError) as info:
        clip.build_model(state_dict)
    message = str(info.value)
    for part in (key, f"shape {wrong}", f"expects {expected}", NOT_CLIP):
        assert part in message


def test_missing_and_unexpected_keys_are_listed_before_building() -> None:
    state_dict = _shapes_only("RN")
    del state_dict["transformer.resblocks.1.ln_2.bias"]
    state_dict["visual.extra"] = torch.empty(3, device="meta")
    with pytest.raises(ValueError, match="missing") as info:
        clip.build_model(state_dict)
    assert "'transformer.resblocks.1.ln_2.bias'" in str(info.value)
    assert "'visual.extra'" in str(info.value)


def test_layer_count_beyond_any_clip_is_refused() -> None:
    state_dict = _shapes_only("ViT")
    for block in range(2, 200):
        state_dict[f"transformer.resblocks.{block}.ln_1.weight"] = state_dict["ln_final.weight"]
    with pytest.raises(ValueError, match=r"transformer_layers 200; a CLIP has 1 to 48"):
        clip.build_model(state_dict)


def test_sizes_each_plausible_but_huge_together_are_refused() -> None:
    """A ResNet stem of 512 channels (4x RN50x64's) with 64-block stages: every size is within
    bounds, but the model would hold about 50x RN50x64's weights."""
    shapes = build_synthetic_model("RN", vision_layers=(1, 1, 1, 1)).state_dict()
    state_dict = {k: torch.empty(v.shape, device="meta") for k, v in shapes.items()}
    state_dict["visual.layer1.0.conv1.weight"] = torch.empty(512, 2048, 1, 1, device="meta")
    for stage in (1, 2, 3, 4):
        for block in range(64):
            state_dict[f"visual.layer{stage}.{block}.bn1.bias"] = torch.empty(1, device="meta")
    with pytest.raises(ValueError, match=r"weights, over 4x the largest published CLIP") as info:
        clip.build_model(state_dict)
    assert NOT_CLIP in str(info.value)


def test_scalar_where_a_matrix_belongs_names_the_key() -> None:
    state_dict = _shapes_only("ViT")
    state_dict["text_projection"] = torch.tensor(1.0)
    with pytest.raises(ValueError, match=r"text_projection has shape \(\), with no dim 1"):
        clip.build_model(state_dict)
