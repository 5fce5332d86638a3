"""TorchScript archives are read as data: same state dict as torch.jit.load, and nothing runs."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import pytest
import torch

from clip import clip
from clip.archive import read_torchscript_state_dict
from clip.synthetic import write_synthetic_checkpoint
from tests.support.tiny_clip import backbone_cfg, tiny_clip_checkpoint

REPO = Path(__file__).resolve().parents[2]
MARKER = "ARCHIVE CODE RAN"


def _jit_state_dict(path: Path) -> dict[str, torch.Tensor]:
    with clip.quiet_torchscript():
        return torch.jit.load(str(path), map_location="cpu").state_dict()


def _assert_identical(ours: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    assert list(ours) == list(reference)  # same keys, same order
    for key, want in reference.items():
        got = ours[key]
        assert (got.dtype, got.shape, got.stride()) == (want.dtype, want.shape, want.stride()), key
        assert torch.equal(got, want), key


@pytest.mark.parametrize("arch,fp16", [("ViT", False), ("RN", False), ("ViT", True)])
def test_reader_gives_torch_jit_load_state_dict(tmp_path: Path, arch: str, fp16: bool) -> None:
    """fp16 archives are laid out as OpenAI's: fp16 weights beside fp32 norms and embeddings;
    the ResNet adds BatchNorm buffers (running statistics, an int64 counter)."""
    path = write_synthetic_checkpoint(tmp_path / "clip.pt", arch=arch, jit=True, fp16=fp16)
    reference = _jit_state_dict(path)
    assert reference["visual.conv1.weight"].dtype == (torch.float16 if fp16 else torch.float32)
    _assert_identical(read_torchscript_state_dict(path), reference)


class _Attributes(torch.nn.Module):
    """Attributes a scripted module can hold besides parameters: typed lists and dicts, a plain
    tensor (in no state dict), a strided buffer and a parameter set to None (conv bias)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, bias=False)
        self.register_buffer("running", torch.arange(6.0).view(2, 3).t())
        self.sizes = [1, 2, 3]
        self.scales = [0.5, 2.0]
        self.names = {"a": 1}
        self.plain = torch.ones(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.plain.sum() + self.sizes[0] + self.scales[0] + self.names["a"]


def test_reader_keeps_only_parameters_and_buffers_as_torch_does(tmp_path: Path) -> None:
    path = tmp_path / "attributes.pt"
    with clip.quiet_torchscript():
        torch.jit.save(torch.jit.script(_Attributes()), str(path))
    reference = _jit_state_dict(path)
    assert list(reference) == ["running", "conv.weight"]
    _assert_identical(read_torchscript_state_dict(path), reference)


def test_loaders_never_call_torch_jit_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tiny_clip_checkpoint(tmp_path, arch="ViT", jit=True)
    plain = tiny_clip_checkpoint(tmp_path, arch="ViT", jit=False)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("torch.jit.load was called on a user file")

    monkeypatch.setattr(torch.jit, "load", refuse)
    expected = clip.load_clip_to_cpu(backbone_cfg(plain)).state_dict()
    for model in (clip.load_clip_to_cpu(backbone_cfg(archive)), clip.load(str(archive), "cpu")[0]):
        _assert_identical(model.state_dict(), expected)
    with pytest.raises(clip.CheckpointError, match="not one of OpenAI's published files"):
        clip.load(str(archive), device="cpu", jit=True)


class _RunsOnLoad(torch.nn.Module):
    """A module whose archive runs code when torch.jit.load restores it: it prints MARKER, then
    loops for as long as its saved `hang` flag says (forever when True)."""

    def __init__(self, hang: bool) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(2))
        self.hang = hang

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, bool, bool]:
        return self.weight, self.hang, self.training

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool, bool]) -> None:
        print("ARCHIVE CODE RAN")
        self.weight = state[0]
        self.hang = state[1]
        self.training = state[2]
        while self.hang:
            self.training = state[2]


def _save_runs_on_load(path: Path, hang: bool) -> Path:
    with clip.quiet_torchscript():
        torch.jit.save(torch.jit.script(_RunsOnLoad(hang)), str(path))
    return path


def test_archive_that_runs_code_on_load_is_refused_promptly(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # The premise: torch.jit.load runs the archive's __setstate__ (here the variant that returns).
    _jit_state_dict(_save_runs_on_load(tmp_path / "prints.pt", hang=False))
    assert MARKER in capfd.readouterr().out

    hangs = _save_runs_on_load(tmp_path / "hangs.pt", hang=True)
    assert hangs.stat().st_size < 4096  # the size of the archive that hung runs before
    script = (
        "import sys; from clip import clip; from tests.support.tiny_clip import backbone_cfg; "
        "clip.load_clip_to_cpu(backbone_cfg(sys.argv[1]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(hangs)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,  # loading with torch.jit.load never returns
    )
    assert result.returncode == 1
    assert "CheckpointError" in result.stderr and str(hangs) in result.stderr
    assert "__setstate__" in result.stderr and "runs none" in result.stderr
    assert MARKER not in result.stdout + result.stderr


@dataclass(frozen=True)
class _Storage:
    key: str
    numel: int


@dataclass(frozen=True)
class _View:
    """A tensor as data.pkl describes it: any view of a storage, true or not."""

    storage: _Storage
    size: tuple[int, ...]
    stride: tuple[int, ...]


class _System:
    """Pickles as a call to os.system."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (self.command,)


class _ArchivePickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> tuple | None:
        if isinstance(obj, _Storage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _View):
            args = (obj.storage, 0, obj.size, obj.stride, False, OrderedDict())
            return torch._utils._rebuild_tensor_v2, args
        return NotImplemented


@pytest.fixture
def craft(tmp_path: Path) -> Callable[..., Path]:
    """Writes a TorchScript-layout archive around a hand-made data.pkl whose root module, of
    class `__torch__.Crafted`, has `attributes` and declares `parameters` (a list of names, or
    the raw text of the declaration); returns its path."""
    module = ModuleType("__torch__")
    module.Crafted = type("Crafted", (), {"__module__": "__torch__"})

    def write(storages: dict[str, bytes], parameters: Any, **attributes: Any) -> Path:
        root = module.Crafted()
        root.__dict__.update(training=False, **attributes)
        data = io.BytesIO()
        with mock.patch.dict(sys.modules, {"__torch__": module}):
            _ArchivePickler(data, protocol=2).dump(root)
        declared = parameters if isinstance(parameters, str) else repr(parameters)
        code = f"class Crafted(Module):\n  __parameters__ = {declared}\n  __buffers__ = []\n"
        path = tmp_path / "crafted.pt"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("crafted/data.pkl", data.getvalue())
            archive.writestr("crafted/constants.pkl", pickle.dumps((), protocol=2))
            archive.writestr("crafted/code/__torch__.py", code)
            for key, payload in storages.items():
                archive.writestr(f"crafted/data/{key}", payload)
        return path

    return write


def test_crafted_archive_reads_like_a_real_one(craft: Callable[..., Path]) -> None:
    """Guards the crafting below: a truthful crafted archive loads, also with torch.jit.load."""
    values = torch.arange(6, dtype=torch.float32)
    path = craft(
        {"0": values.numpy().tobytes()}, ["weight"], weight=_View(_Storage("0", 6), (2, 3), (3, 1))
    )
    _assert_identical(read_torchscript_state_dict(path), {"weight": values.view(2, 3)})


def test_pickle_naming_os_system_is_refused(craft: Callable[..., Path], tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = craft({}, [], hook=_System(f"touch {marker}"))
    with pytest.raises(clip.CheckpointError, match=r"names (posix|nt)\.system") as info:
        clip.load_clip_to_cpu(backbone_cfg(path))
    assert str(path) in str(info.value) and "Pass an OpenAI CLIP file" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "storages,view,message",
    [
        ({"0": bytes(256)}, _View(_Storage("0", 64), (10**8, 64), (64, 1)), "reaches beyond"),
        ({"0": bytes(10)}, _View(_Storage("0", 64), (8, 8), (8, 1)), "not the 256 uncompressed"),
        ({}, _View(_Storage("0", 64), (8, 8), (8, 1)), "no storage data/0"),
        ({"0": bytes(4)}, _View(_Storage("0", 10**12), (10**6,), (1,)), "holds 4 bytes"),
    ],
    ids=["view-beyond-storage", "short-storage", "missing-storage", "huge-storage-claim"],
)
def test_tensors_must_fit_their_stored_bytes(
    craft: Callable[..., Path], storages: dict[str, bytes], view: _View, message: str
) -> None:
    path = craft(storages, ["weight"], weight=view)
    with pytest.raises(clip.CheckpointError, match=message):
        read_torchscript_state_dict(path)


def test_zero_stride_claim_reads_as_a_cheap_view(craft: Callable[..., Path]) -> None:
    """A view may repeat one element (stride 0) legally: the reader keeps the claimed shape at no
    cost, and build_model's shape checks refuse it (see test_shape_checks)."""
    path = craft({"0": bytes(4)}, ["weight"], weight=_View(_Storage("0", 1), (10**8, 64), (0, 0)))
    weight = read_torchscript_state_dict(path)["weight"]
    assert weight.shape == (10**8, 64) and weight.untyped_storage().nbytes() == 4


def test_archives_from_big_endian_machines_are_refused(tmp_path: Path) -> None:
    source = tiny_clip_checkpoint(tmp_path, arch="ViT", jit=True)
    path = tmp_path / "big-endian.pt"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, b"big" if info.filename.endswith("/byteorder") else data)
    with pytest.raises(clip.CheckpointError, match="big-endian"):
        read_torchscript_state_dict(path)


@pytest.mark.parametrize("declared", [[1], "['a'] + ['b']"], ids=["not-names", "not-a-literal"])
def test_malformed_parameter_declarations_are_refused(
    craft: Callable[..., Path], declared: Any
) -> None:
    path = craft({}, declared)
    with pytest.raises(clip.CheckpointError, match="not a list of names"):
        read_torchscript_state_dict(path)
