"""Downloading with verification, and the offline-first search for weight files."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import warnings
from pathlib import Path

import pytest

from clip import clip
from tests.clip.conftest import FileServer
from tests.support.tiny_clip import backbone_cfg, tiny_clip_checkpoint

PAYLOAD = b"pretend these are CLIP weights\n" * 1000


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def test_download_verifies_caches_and_skips_the_network_next_time(
    file_server: FileServer, tmp_path: Path
) -> None:
    file_server.files[f"{_sha(PAYLOAD)}/RN50.pt"] = PAYLOAD
    url = file_server.url(f"{_sha(PAYLOAD)}/RN50.pt")
    root = tmp_path / "cache"

    path = clip._download(url, root)
    assert Path(path) == root / "RN50.pt"
    assert Path(path).read_bytes() == PAYLOAD
    assert len(file_server.requests) == 1

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a verified cache hit is silent
        assert clip._download(url, root) == path
    assert len(file_server.requests) == 1
    assert _leftovers(root) == []


def test_downloaded_file_is_readable_by_others(file_server: FileServer, tmp_path: Path) -> None:
    """Colleagues share a weights cache: the file gets 0o666 less the umask, as `open` gives."""
    file_server.files[f"{_sha(PAYLOAD)}/RN50.pt"] = PAYLOAD
    old_umask = os.umask(0o002)
    try:
        path = clip._download(file_server.url(f"{_sha(PAYLOAD)}/RN50.pt"), tmp_path / "cache")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o664


def test_mismatching_download_is_retried_once_then_refused(
    file_server: FileServer, tmp_path: Path
) -> None:
    expected = _sha(b"the real file")
    file_server.files[f"{expected}/RN50.pt"] = PAYLOAD
    root = tmp_path / "cache"
    with pytest.raises(clip.ChecksumMismatchError, match=f"not {expected}") as info:
        clip._download(file_server.url(f"{expected}/RN50.pt"), root)
    assert str(root / "RN50.pt") in str(info.value)
    assert len(file_server.requests) == 2
    assert list(root.iterdir()) == []  # neither the bad file nor a temp file is left


def test_corrupt_cached_file_is_replaced(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files[f"{_sha(PAYLOAD)}/RN50.pt"] = PAYLOAD
    root = tmp_path / "cache"
    root.mkdir()
    (root / "RN50.pt").write_bytes(PAYLOAD[:100])  # e.g. an interrupted copy
    with pytest.warns(UserWarning, match="does not match"):
        path = clip._download(file_server.url(f"{_sha(PAYLOAD)}/RN50.pt"), root)
    assert Path(path).read_bytes() == PAYLOAD
    assert len(file_server.requests) == 1


@pytest.fixture(scope="module")
def tiny_rn_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return tiny_clip_checkpoint(tmp_path_factory.mktemp("src"), arch="RN").read_bytes()


@pytest.fixture
def fake_rn50(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, file_server: FileServer, tiny_rn_bytes: bytes
) -> bytes:
    """Point the name "RN50" at a tiny checkpoint served locally; isolate HOME and the env var."""
    data = tiny_rn_bytes
    file_server.files[f"{_sha(data)}/RN50.pt"] = data
    monkeypatch.setitem(clip._MODELS, "RN50", file_server.url(f"{_sha(data)}/RN50.pt"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(clip.WEIGHTS_DIR_ENV, raising=False)
    return data


def test_weights_dir_env_var_is_used_without_network(
    fake_rn50: bytes, file_server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    (weights_dir / "RN50.pt").write_bytes(fake_rn50)
    monkeypatch.setenv(clip.WEIGHTS_DIR_ENV, str(weights_dir))
    assert clip.resolve_checkpoint("RN50") == weights_dir / "RN50.pt"
    model = clip.load_clip_to_cpu(backbone_cfg("RN50"))
    assert model.visual.input_resolution == 32
    assert file_server.requests == []


def test_wrong_file_in_weights_dir_is_refused(
    fake_rn50: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "RN50.pt").write_bytes(b"something else")
    monkeypatch.setenv(clip.WEIGHTS_DIR_ENV, str(tmp_path))
    with pytest.raises(clip.ChecksumMismatchError, match="Replace it with a fresh copy"):
        clip.resolve_checkpoint("RN50")


def test_default_cache_then_download(
    fake_rn50: bytes, file_server: FileServer, tmp_path: Path
) -> None:
    cached = tmp_path / "home" / ".cache" / "clip" / "RN50.pt"
    assert clip.resolve_checkpoint("RN50") == cached  # downloaded into ~/.cache/clip
    assert len(file_server.requests) == 1
    clip.load("RN50", device="cpu")  # now found in the cache
    assert len(file_server.requests) == 1


def test_download_root_overrides_the_default_cache(
    fake_rn50: bytes, file_server: FileServer, tmp_path: Path
) -> None:
    root = tmp_path / "elsewhere"
    root.mkdir()
    (root / "RN50.pt").write_bytes(fake_rn50)
    assert clip.resolve_checkpoint("RN50", download_root=root) == root / "RN50.pt"
    assert file_server.requests == []


def test_without_download_only_this_machine_is_searched(
    fake_rn50: bytes, file_server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep's preflight: the same places in the same order, and no request when all miss."""
    with pytest.raises(clip.WeightsNotFoundError) as info:
        clip.resolve_checkpoint("RN50", download=False)
    assert str(info.value).startswith("CLIP weights for 'RN50' are not on this machine. Put")
    assert str(tmp_path / "home" / ".cache" / "clip") in str(info.value)
    assert file_server.requests == []
    cached = tmp_path / "home" / ".cache" / "clip" / "RN50.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(fake_rn50)
    assert clip.resolve_checkpoint("RN50", download=False) == cached
    monkeypatch.setenv(clip.WEIGHTS_DIR_ENV, str(tmp_path / "weights"))
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "RN50.pt").write_bytes(fake_rn50)
    assert clip.resolve_checkpoint("RN50", download=False) == tmp_path / "weights" / "RN50.pt"
    assert file_server.requests == []


def test_explicit_path_comes_first(
    fake_rn50: bytes, tmp_path: Path, file_server: FileServer
) -> None:
    path = tiny_clip_checkpoint(tmp_path / "mine", arch="ViT")
    assert clip.resolve_checkpoint(str(path)) == path
    assert file_server.requests == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_offline_and_absent_says_which_file_to_put_where(
    fake_rn50: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/{_sha(fake_rn50)}/RN50.pt"
    monkeypatch.setitem(clip._MODELS, "RN50", url)
    monkeypatch.setenv(clip.WEIGHTS_DIR_ENV, str(tmp_path / "weights"))
    with pytest.raises(clip.WeightsNotFoundError) as info:
        clip.load_clip_to_cpu(backbone_cfg("RN50"))
    message = str(info.value)
    for part in ("RN50.pt", str(tmp_path / "weights"), os.path.join(".cache", "clip"), url):
        assert part in message
    assert list((tmp_path / "home" / ".cache" / "clip").iterdir()) == []


def test_unknown_name_lists_models_and_suggests_the_closest() -> None:
    with pytest.raises(clip.WeightsNotFoundError, match="Did you mean 'ViT-B/16'") as info:
        clip.load_clip_to_cpu(backbone_cfg("ViT-B/61"))
    assert "ViT-L/14@336px" in str(info.value)
