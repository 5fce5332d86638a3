"""TorchScript archives and plain state dicts load to the same model through every entry point."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch
from PIL import Image

import clip as clip_package
from clip import clip
from clip.synthetic import TINY_INPUT_SIZE, build_synthetic_model, write_synthetic_checkpoint
from tests.support.tiny_clip import backbone_cfg, tiny_clip_checkpoint

TEXTS = ["a photo of a cat", "a photo of a dog"]


@pytest.fixture(scope="module")
def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder per module: `tiny_clip_checkpoint` writes each checkpoint there only once."""
    return tmp_path_factory.mktemp("checkpoints")


def _outputs(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randn(
        2, 3, TINY_INPUT_SIZE, TINY_INPUT_SIZE, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(clip.tokenize(TEXTS))


def test_both_import_styles_reach_the_same_functions() -> None:
    assert clip_package.load is clip.load
    assert clip_package.tokenize is clip.tokenize
    assert clip_package.build_model is clip.build_model
    assert set(clip.available_models()) == set(clip._MODELS)
    assert len(clip._MODELS) == 9


@pytest.mark.parametrize("arch", ["ViT", "RN"])
def test_archive_and_state_dict_give_identical_models(shared_dir: Path, arch: str) -> None:
    plain = tiny_clip_checkpoint(shared_dir, arch=arch, jit=False)
    archive = tiny_clip_checkpoint(shared_dir, arch=arch, jit=True)
    with clip.quiet_torchscript():
        archive_state = torch.jit.load(str(archive)).state_dict()
    assert archive_state["input_resolution"].item() == TINY_INPUT_SIZE

    models = {
        "plain/cpu-loader": clip.load_clip_to_cpu(backbone_cfg(plain)),
        "archive/cpu-loader": clip.load_clip_to_cpu(backbone_cfg(archive)),
        "plain/load": clip.load(str(plain), device="cpu")[0],
        "archive/load": clip.load(str(archive), device="cpu")[0],
    }
    reference = models.pop("plain/cpu-loader")
    reference_state = reference.state_dict()
    expected = _outputs(reference)
    for name, model in models.items():
        state = model.state_dict()
        assert state.keys() == reference_state.keys(), name
        assert all(torch.equal(state[k], v) for k, v in reference_state.items()), name
        for got, want in zip(_outputs(model), expected):
            assert torch.equal(got, want), name


@pytest.mark.parametrize("arch", ["ViT", "RN"])
def test_jit_load_runs_the_archive_itself(
    shared_dir: Path, arch: str, as_published: Callable[[Path], Path]
) -> None:
    archive = as_published(tiny_clip_checkpoint(shared_dir, arch=arch, jit=True))
    scripted, preprocess = clip.load(str(archive), device="cpu", jit=True)
    assert isinstance(scripted, torch.jit.ScriptModule)
    eager = clip.load_clip_to_cpu(backbone_cfg(archive))
    for got, want in zip(_outputs(scripted), _outputs(eager)):
        torch.testing.assert_close(got, want)
    assert preprocess(Image.new("RGB", (50, 40))).shape == (3, TINY_INPUT_SIZE, TINY_INPUT_SIZE)


def test_fp16_archive_is_retargeted_to_fp32_on_cpu(
    tmp_path: Path, as_published: Callable[[Path], Path]
) -> None:
    """OpenAI's archives were traced in fp16; on CPU their baked-in casts must become fp32."""
    archive = write_synthetic_checkpoint(tmp_path / "half.pt", arch="ViT", jit=True, fp16=True)
    as_published(archive)
    with clip.quiet_torchscript():
        archive_state = torch.jit.load(str(archive)).state_dict()
    assert archive_state["visual.conv1.weight"].dtype == torch.float16
    scripted, _ = clip.load(str(archive), device="cpu", jit=True)
    eager = clip.load_clip_to_cpu(backbone_cfg(archive))
    image_features, text_features = _outputs(scripted)
    assert image_features.dtype == text_features.dtype == torch.float32
    torch.testing.assert_close(image_features, _outputs(eager)[0])


def test_jit_load_refuses_archives_openai_did_not_publish(shared_dir: Path) -> None:
    archive = tiny_clip_checkpoint(shared_dir, arch="ViT", jit=True)
    with pytest.raises(clip.CheckpointError, match="would run the code stored in it") as info:
        clip.load(str(archive), device="cpu", jit=True)
    assert str(archive) in str(info.value) and "jit=False" in str(info.value)


@pytest.mark.parametrize("jit", [False, True], ids=["state-dict", "archive"])
def test_reference_implementation_loads_our_files(
    tmp_path: Path, oracle: ModuleType, jit: bool
) -> None:
    """The files keep the format openai-clip reads. In fp16 they hold exactly the values its
    fp16 build_model keeps, so the weights agree bit for bit."""
    path = write_synthetic_checkpoint(tmp_path / "clip.pt", arch="ViT", jit=jit, fp16=True)
    if jit:
        with clip.quiet_torchscript():
            reference = oracle.load(str(path), device="cpu", jit=False)[0]
    else:  # its load() retries a state dict on the file handle torch.jit.load consumed
        reference = oracle.model.build_model(torch.load(path, weights_only=True)).float()
    expected = reference.state_dict()
    ours = clip.load_clip_to_cpu(backbone_cfg(path)).state_dict()
    assert ours.keys() == expected.keys()
    assert all(torch.equal(ours[k], expected[k]) for k in ours)


def test_synthetic_checkpoints_are_readable_by_others(tmp_path: Path) -> None:
    old_umask = os.umask(0o002)
    try:
        written = [
            write_synthetic_checkpoint(tmp_path / f"{jit}.pt", arch="ViT", jit=jit)
            for jit in (False, True)
        ]
    finally:
        os.umask(old_umask)
    assert [stat.S_IMODE(p.stat().st_mode) for p in written] == [0o664, 0o664]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["False.pt", "True.pt"]


def test_loaders_return_fp32_eval_models_on_cpu(shared_dir: Path) -> None:
    path = tiny_clip_checkpoint(shared_dir, arch="RN")
    model, preprocess = clip.load(str(path), device="cpu")
    cpu_model = clip.load_clip_to_cpu(backbone_cfg(path))
    for m in (model, cpu_model):
        assert m.dtype == torch.float32 and not m.training
        assert all(p.device.type == "cpu" for p in m.parameters())
    image = Image.new("L", (64, 48), color=128)  # grey-scale input is converted to RGB
    assert preprocess(image).shape == (3, TINY_INPUT_SIZE, TINY_INPUT_SIZE)


@pytest.mark.gpu
def test_load_on_cuda_is_fp16_like_upstream(tmp_path: Path) -> None:
    path = tiny_clip_checkpoint(tmp_path, arch="ViT")
    model, _ = clip.load(str(path), device="cuda")
    assert model.dtype == torch.float16
    images = torch.randn(2, 3, TINY_INPUT_SIZE, TINY_INPUT_SIZE, device="cuda")
    fp32 = clip.load_clip_to_cpu(backbone_cfg(path)).cuda()
    with torch.no_grad():
        torch.testing.assert_close(
            model.encode_image(images).float(), fp32.encode_image(images), atol=2e-2, rtol=2e-2
        )


def test_synthetic_checkpoints_are_reproducible(tmp_path: Path) -> None:
    first = write_synthetic_checkpoint(tmp_path / "a.pt", arch="ViT", seed=3)
    second = write_synthetic_checkpoint(tmp_path / "b.pt", arch="ViT", seed=3)
    other = build_synthetic_model("ViT", seed=4).state_dict()
    a, b = torch.load(first, weights_only=True), torch.load(second, weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["visual.proj"], other["visual.proj"])


def test_synthetic_dims_are_validated() -> None:
    with pytest.raises(ValueError, match="multiple of 64"):
        build_synthetic_model("ViT", vision_width=48)
    with pytest.raises(TypeError, match="unknown dimension"):
        build_synthetic_model("RN", vision_patch_size=16)


def test_non_checkpoint_files_get_a_clear_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(clip.CheckpointError, match="truncated"):
        clip.load(str(garbage), device="cpu")
    a_list = tmp_path / "list.pt"
    torch.save([1, 2, 3], a_list)
    with pytest.raises(clip.CheckpointError, match="not a state dict"):
        clip.load_clip_to_cpu(backbone_cfg(a_list))
