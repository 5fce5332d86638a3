"""Where OpenCLIP weights are looked for, in which order, and the errors on the way.

Every place is a tmp folder named through the environment (HF_HUB_CACHE, HOME for OpenCLIP's
~/.cache/clip, CLIP_WEIGHTS_DIR); OpenCLIP's download functions are replaced by ones that record
the call and fail as a machine without network does, so nothing here touches the network.
"""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import open_clip
import pytest

from clip import openclip
from clip.backbone import OpenAIBackbone, OpenClipBackbone, load_backbone
from clip.clip import WeightsNotFoundError
from tests.support.tiny_clip import tiny_clip_checkpoint
from tests.support.tiny_openclip import tiny_model_cfg, write_openclip_folder

# A tag OpenCLIP serves from the Hugging Face Hub and from a URL.
ARCH, TAG = "ViT-B-16", "laion400m_e31"
REPO = "timm/vit_base_patch16_clip_224.laion400m_e31"
URL_FILE = "vit_b_16-laion400m_e31-00efa78f.pt"
SAFE, PICKLE = openclip.WEIGHTS_FILES


@pytest.fixture
def places(tmp_path, monkeypatch):
    """Empty caches and weights folder, and OpenCLIP's downloads recorded and failing."""
    spots = SimpleNamespace(
        hf=tmp_path / "hf-hub-cache",
        url=tmp_path / "home" / ".cache" / "clip",
        weights=tmp_path / "weights",
        downloads=[],
    )
    monkeypatch.setenv("HF_HUB_CACHE", str(spots.hf))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLIP_WEIGHTS_DIR", str(spots.weights))

    def offline(*args, **kwargs):
        spots.downloads.append(args)
        raise OSError("no network in this test")

    monkeypatch.setattr(open_clip, "download_pretrained", offline)
    monkeypatch.setattr(open_clip.pretrained, "download_pretrained_from_hf", offline)
    # Hosts count as reachable, so OpenCLIP's own download runs (the offline check has its test).
    monkeypatch.setattr(openclip, "require_reachable", lambda url: None)
    return spots


def in_hf_cache(cache: Path, repo: str, filename: str, content: bytes = b"w") -> Path:
    """A file in the Hugging Face cache layout (refs/main -> snapshots/<commit>/<file>)."""
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    path = repo_dir / "snapshots" / commit / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def put(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"w")
    return path


def test_tag_lookup_order_caches_then_weights_dir_then_download(places):
    name = f"openclip:{ARCH}/{TAG}"
    in_env = put(places.weights / "openclip" / ARCH / TAG / SAFE)
    in_url_cache = put(places.url / URL_FILE)
    in_hf = in_hf_cache(places.hf, REPO, PICKLE)
    assert openclip.locate(name).weights == in_hf
    safer = in_hf_cache(places.hf, REPO, SAFE)  # safetensors first, as OpenCLIP downloads
    assert openclip.locate(name).weights == safer
    in_hf.unlink(), safer.unlink()
    assert openclip.locate(name).weights == in_url_cache
    in_url_cache.unlink()
    assert openclip.locate(name).weights == in_env
    assert places.downloads == []

    in_env.unlink()
    with pytest.raises(WeightsNotFoundError) as err:
        openclip.locate(name)
    assert len(places.downloads) == 1  # OpenCLIP's own mechanism, once everything was missed
    message = str(err.value)
    assert str(places.weights / "openclip" / ARCH / TAG / SAFE) in message
    assert f"https://huggingface.co/{REPO}" in message and "no network" in message
    assert str(places.hf) in message and str(places.url) in message


def test_without_download_only_this_machine_is_searched(places):
    """A sweep's preflight: what is local is found; when nothing is, no download is tried."""
    tag, repo = f"openclip:{ARCH}/{TAG}", "tests/tiny-vit"
    in_url_cache = put(places.url / URL_FILE)
    assert openclip.locate(tag, download=False).weights == in_url_cache
    in_url_cache.unlink()
    with pytest.raises(WeightsNotFoundError) as tag_err:
        openclip.locate(tag, download=False)
    with pytest.raises(WeightsNotFoundError) as hub_err:
        openclip.locate(f"hf-hub:{repo}", download=False)
    assert places.downloads == []
    assert f"'{ARCH}/{TAG}' are not on this machine. Searched" in str(tag_err.value)
    assert str(places.weights / "openclip" / ARCH / TAG / SAFE) in str(tag_err.value)
    assert f"hf-hub:{repo} is not on this machine. Searched" in str(hub_err.value)


def test_a_download_is_used_when_nothing_is_local(places, monkeypatch, tmp_path):
    fetched = put(tmp_path / "fetched" / SAFE)
    monkeypatch.setattr(open_clip, "download_pretrained", lambda cfg: str(fetched))
    assert openclip.locate(f"openclip:{ARCH}/{TAG}").weights == fetched


def test_a_file_as_tag_is_taken_first(places, tmp_path):
    in_hf_cache(places.hf, REPO, SAFE)
    own = put(tmp_path / "finetuned.pt")
    assert openclip.locate(f"openclip:{ARCH}/{own}").weights == own
    assert places.downloads == []


def test_an_arch_registered_with_openclip_loads_from_a_file(places, tmp_path):
    """The openclip:ARCH/FILE path end to end: OpenCLIP's registry, its create_model."""
    folder = write_openclip_folder(tmp_path / "tiny", "vit")
    config = tmp_path / "configs" / "tiny-vit-for-tests.json"
    config.parent.mkdir()
    config.write_text(json.dumps(tiny_model_cfg("vit")))
    open_clip.add_model_config(config)
    backbone = load_backbone(f"openclip:tiny-vit-for-tests/{folder / SAFE}")
    assert isinstance(backbone, OpenClipBackbone)
    assert backbone.weights_file == folder / SAFE
    assert backbone.preprocess.size == (32, 32) and backbone.embed_dim == 32
    reference = open_clip.create_model(f"local-dir:{folder}")
    assert all(
        (a == b).all()
        for a, b in zip(backbone.model.state_dict().values(), reference.state_dict().values())
    )


def test_hf_hub_lookup_order_cache_then_weights_dir_then_download(places):
    repo = "tests/tiny-vit"
    name = f"hf-hub:{repo}"
    snapshot = in_hf_cache(places.hf, repo, openclip.CONFIG_FILE).parent
    write_openclip_folder(snapshot, "vit")
    backbone = load_backbone(name)
    assert backbone.weights_file == snapshot / SAFE
    assert backbone.tokenize(["a cat"]).shape == (1, 77)

    in_env = write_openclip_folder(places.weights / "hf-hub" / repo, "vit")
    assert openclip.locate(name).weights == snapshot / SAFE  # the cache comes first
    for path in snapshot.iterdir():
        path.unlink()
    assert openclip.locate(name).weights == in_env / SAFE
    assert places.downloads == []

    for path in in_env.iterdir():
        path.unlink()
    with pytest.raises(WeightsNotFoundError) as err:
        openclip.locate(name)
    message = str(err.value)
    assert places.downloads and openclip.CONFIG_FILE in message and SAFE in message
    assert str(places.weights / "hf-hub" / repo) in message


def test_local_dir_needs_config_and_weights(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / openclip.CONFIG_FILE).write_text("{}")
    with pytest.raises(WeightsNotFoundError, match=f"{SAFE}.*{PICKLE}"):
        openclip.locate(f"local-dir:{folder}")


@pytest.mark.parametrize(
    "name, error, pattern",
    [
        ("openclip:ViT-B-16", ValueError, "openclip:ARCH/TAG"),
        ("hf-hub:laion", ValueError, "hf-hub:ORG/REPO"),
        ("openclip:ViT-B-61/laion2b", WeightsNotFoundError, "not an OpenCLIP.*ViT-B-16"),
        ("openclip:ViT-B-16/laion9", WeightsNotFoundError, "Tags of ViT-B-16.*laion2b_s34b_b88k"),
    ],
)
def test_bad_names_say_what_is_expected(places, name, error, pattern):
    with pytest.raises(error, match=pattern):
        openclip.locate(name)
    assert places.downloads == []


def test_without_open_clip_only_openclip_names_fail(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "open_clip", None)  # as if not installed
    with pytest.raises(openclip.OpenClipMissingError, match="requirements-openclip.txt"):
        load_backbone("openclip:ViT-B-16/laion2b_s34b_b88k")
    openai = load_backbone(str(tiny_clip_checkpoint(tmp_path, arch="ViT")))
    assert isinstance(openai, OpenAIBackbone)
