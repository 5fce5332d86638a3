"""OpenCLIP models (LAION, DataComp, MetaCLIP, DFN, SigLIP, EVA, ...) by name, offline first.

`open-clip-torch` is an optional extra (requirements-openclip.txt): it is imported only when a
backbone name asks for it, so OpenAI backbones need none of its dependencies.

Names (MODEL.BACKBONE.NAME):
  openclip:ARCH/TAG      an OpenCLIP architecture and pretrained tag, e.g.
                         openclip:ViT-B-16/laion2b_s34b_b88k; TAG may also be a weights file
  hf-hub:ORG/REPO        an OpenCLIP model on the Hugging Face Hub (open_clip_config.json and
                         its weights), e.g. hf-hub:laion/CLIP-ViT-B-16-laion2B-s34B-b88K
  local-dir:FOLDER       OpenCLIP's own layout on disk: FOLDER/open_clip_config.json and a
                         weights file (open_clip_model.safetensors or open_clip_pytorch_model.bin)

Where weights are looked for, in order, before anything is downloaded:
  1. the file named by TAG, when TAG is a path (openclip:) or the folder itself (local-dir:);
  2. OpenCLIP's caches: the Hugging Face cache ($HF_HUB_CACHE, else $HF_HOME/hub, else
     ~/.cache/huggingface/hub) and OpenCLIP's URL cache (~/.cache/clip);
  3. $CLIP_WEIGHTS_DIR/openclip/ARCH/TAG/<file> or $CLIP_WEIGHTS_DIR/hf-hub/ORG/REPO/<files>;
  4. a download through OpenCLIP's own mechanism (Hugging Face first, as OpenCLIP does).
Without network and without the files, the error names each file and where to put it.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from dassl.utils.tools import did_you_mean

from .clip import WEIGHTS_DIR_ENV, WeightsNotFoundError

OPENCLIP_PREFIX = "openclip:"
HF_HUB_PREFIX = "hf-hub:"
LOCAL_DIR_PREFIX = "local-dir:"
PREFIXES = (OPENCLIP_PREFIX, HF_HUB_PREFIX, LOCAL_DIR_PREFIX)
INSTALL_HINT = "python3 -m pip install -r requirements-openclip.txt"

CONFIG_FILE = "open_clip_config.json"
# OpenCLIP's own preference when a folder holds both (safetensors first).
WEIGHTS_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
REACH_TIMEOUT_S = 5  # a host that does not answer in this time is taken as unreachable

_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


class OpenClipMissingError(ImportError):
    """An OpenCLIP backbone was named but open-clip-torch is not installed."""


def is_openclip_name(name: str) -> bool:
    """Whether MODEL.BACKBONE.NAME names an OpenCLIP model (as opposed to OpenAI's)."""
    return name.startswith(PREFIXES)


def import_open_clip() -> ModuleType:
    """The open_clip module, or an error that says how to install it."""
    try:
        import open_clip
    except ImportError as err:
        raise OpenClipMissingError(
            f"OpenCLIP backbones need the optional package open-clip-torch, which is not "
            f"installed ({err}). Fix: {INSTALL_HINT}"
        ) from err
    return open_clip


def hf_hub_cache() -> Path:
    """The Hugging Face cache folder, read from the environment now (as huggingface_hub does at
    import): $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def openclip_url_cache() -> Path:
    """Where OpenCLIP's URL downloads land when no cache folder is given."""
    return Path("~/.cache/clip").expanduser()


def _weights_dir() -> Path | None:
    value = os.environ.get(WEIGHTS_DIR_ENV)
    return Path(value).expanduser() if value else None


def _in_hf_cache(repo: str, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, cache_dir=hf_hub_cache())
    return Path(found) if isinstance(found, str) and os.path.isfile(found) else None


@dataclass(frozen=True)
class Located:
    """Where an OpenCLIP model's files are: its weights, and for hf-hub/local-dir its config."""

    weights: Path
    config: Path | None = None


@dataclass(frozen=True)
class OpenClipName:
    """A parsed backbone name: kind is "tag", "hf-hub" or "local-dir"."""

    kind: str
    arch: str = ""
    tag: str = ""
    repo: str = ""
    folder: str = ""

    @classmethod
    def parse(cls, name: str) -> OpenClipName:
        if name.startswith(HF_HUB_PREFIX):
            repo = name[len(HF_HUB_PREFIX) :].strip("/")
            if repo.count("/") != 1:
                raise ValueError(
                    f"MODEL.BACKBONE.NAME {name!r}: write hf-hub:ORG/REPO, e.g. "
                    "hf-hub:laion/CLIP-ViT-B-16-laion2B-s34B-b88K"
                )
            return cls("hf-hub", repo=repo)
        if name.startswith(LOCAL_DIR_PREFIX):
            return cls("local-dir", folder=name[len(LOCAL_DIR_PREFIX) :])
        arch, _, tag = name[len(OPENCLIP_PREFIX) :].partition("/")
        if not arch or not tag:
            raise ValueError(
                f"MODEL.BACKBONE.NAME {name!r}: write openclip:ARCH/TAG with OpenCLIP's "
                "architecture and pretrained tag, e.g. openclip:ViT-B-16/laion2b_s34b_b88k "
                "(open_clip.list_pretrained() lists them); TAG may be a weights file instead"
            )
        return cls("tag", arch=arch, tag=tag)


def _tag_files(pretrained_cfg: dict[str, Any]) -> tuple[str, list[str], str]:
    """(Hugging Face repo, its candidate file names (safetensors first), URL) of a tag."""
    repo, filename = os.path.split(pretrained_cfg.get("hf_hub", ""))
    names = []
    if repo:
        filename = filename or WEIGHTS_FILES[1]
        if filename == WEIGHTS_FILES[1]:
            names.append(WEIGHTS_FILES[0])
        elif filename.endswith((".bin", ".pth")):
            names.append(filename[:-4] + ".safetensors")
        names.append(filename)
    return repo, names, pretrained_cfg.get("url", "")


def _locate_tag(open_clip: ModuleType, parsed: OpenClipName, download: bool) -> Path:
    arch, tag = parsed.arch, parsed.tag
    if os.path.isfile(tag):
        return Path(tag)
    if arch not in open_clip.list_models():
        hint = did_you_mean(arch, open_clip.list_models(), n=3, quote="'")
        raise WeightsNotFoundError(
            f"'{arch}' is not an OpenCLIP architecture.{hint} open_clip.list_models() lists them"
        )
    pretrained_cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not pretrained_cfg:
        raise WeightsNotFoundError(
            f"'{tag}' is neither a pretrained tag of OpenCLIP's {arch} nor an existing file. "
            f"Tags of {arch}: {open_clip.list_pretrained_tags_by_model(arch)}"
        )
    repo, hf_names, url = _tag_files(pretrained_cfg)
    url_name = os.path.basename(url)
    for name in hf_names:
        if (found := _in_hf_cache(repo, name)) is not None:
            return found
    if url_name and (openclip_url_cache() / url_name).is_file():
        return openclip_url_cache() / url_name
    env = _weights_dir()
    env_folder = env / "openclip" / arch / tag if env else None
    for name in [*hf_names, url_name]:
        if env_folder is not None and name and (env_folder / name).is_file():
            return env_folder / name

    error = None
    if download:
        try:
            require_reachable(_hf_endpoint() if repo else url)
            return Path(open_clip.download_pretrained(pretrained_cfg))
        except (OSError, RuntimeError) as err:
            error = err
    name = (hf_names or [url_name])[0]
    source = f"https://huggingface.co/{repo}" if repo else url
    target = env_folder or Path(f"${WEIGHTS_DIR_ENV}/openclip/{arch}/{tag}")
    searched = [f"the Hugging Face cache {hf_hub_cache()}"] if repo else []
    searched += [f"OpenCLIP's URL cache {openclip_url_cache()}"] if url else []
    raise WeightsNotFoundError(
        f"OpenCLIP weights for '{arch}/{tag}' are not on this machine{_download_failure(error)}. "
        f"Searched {', '.join(searched)} and ${WEIGHTS_DIR_ENV}/openclip/{arch}/{tag}. Fix: put "
        f"the file {name} (from {source}) at {target / name} with {WEIGHTS_DIR_ENV} exported, or "
        f"name the file itself: openclip:{arch}/<path to the file>"
    ) from error


def _download_failure(error: Exception | None) -> str:
    """How a download failed, for the not-found messages ("" when none was tried)."""
    return f" and could not be downloaded ({type(error).__name__}: {error})" if error else ""


def require_reachable(url: str) -> None:
    """Raise ConnectionError at once when ``url``'s host cannot be reached: offline, OpenCLIP's
    download would retry for about a minute before failing."""
    host = urllib.parse.urlparse(url).hostname or url
    try:
        socket.create_connection((host, 443), timeout=REACH_TIMEOUT_S).close()
    except OSError as err:
        raise ConnectionError(f"{host} cannot be reached from this machine: {err}") from err


def _hf_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _folder_files(folder: Path) -> Located | None:
    """The config and weights in one folder, or None when either is missing. The weights file
    is the one OpenCLIP's `local-dir:` loading picks from these names (safetensors first)."""
    config = folder / CONFIG_FILE
    weights = [folder / name for name in WEIGHTS_FILES if (folder / name).is_file()]
    return Located(weights[0], config) if config.is_file() and weights else None


def _locate_hf_hub(open_clip: ModuleType, parsed: OpenClipName, download: bool) -> Located:
    repo = parsed.repo
    cached_config = _in_hf_cache(repo, CONFIG_FILE)
    if cached_config is not None:
        found = _folder_files(cached_config.parent)
        if found is not None:
            return found
    env = _weights_dir()
    env_folder = env / "hf-hub" / repo if env else None
    if env_folder is not None and (found := _folder_files(env_folder)) is not None:
        return found
    error = None
    if download:
        try:
            require_reachable(_hf_endpoint())
            config = open_clip.pretrained.download_pretrained_from_hf(repo, filename=CONFIG_FILE)
            weights = open_clip.pretrained.download_pretrained_from_hf(repo)
        except (OSError, RuntimeError) as err:
            error = err
    if error is not None or not download:
        target = env_folder or Path(f"${WEIGHTS_DIR_ENV}/hf-hub/{repo}")
        raise WeightsNotFoundError(
            f"OpenCLIP model hf-hub:{repo} is not on this machine{_download_failure(error)}. "
            f"Searched: the Hugging Face cache ({hf_hub_cache()}) and "
            f"${WEIGHTS_DIR_ENV}/hf-hub/{repo}. Fix: put {CONFIG_FILE} and {WEIGHTS_FILES[0]} "
            f"(or {WEIGHTS_FILES[1]}) from https://huggingface.co/{repo} into {target}/ with "
            f"{WEIGHTS_DIR_ENV} exported, or fill the Hugging Face cache on a machine with "
            "network access (huggingface-cli download ...)"
        ) from error
    found = _folder_files(Path(config).parent)
    if found is None or found.weights != Path(weights):
        raise WeightsNotFoundError(
            f"hf-hub:{repo}: the download left {CONFIG_FILE} and the weights in different "
            f"folders ({config}, {weights}); delete both and run again"
        )
    return found


def _locate_local_dir(parsed: OpenClipName) -> Located:
    folder = Path(parsed.folder).expanduser()
    found = _folder_files(folder)
    if found is None:
        raise WeightsNotFoundError(
            f"local-dir:{parsed.folder} must be a folder holding {CONFIG_FILE} and one of "
            f"{', '.join(WEIGHTS_FILES)} (OpenCLIP's layout); put them there"
        )
    return found


def locate(name: str, download: bool = True) -> Located:
    """The files of OpenCLIP backbone `name`, offline first (see the module docstring);
    `download=False` stops before the download (a sweep's preflight: are the files here?)."""
    open_clip = import_open_clip()
    parsed = OpenClipName.parse(name)
    if parsed.kind == "tag":
        return Located(_locate_tag(open_clip, parsed, download))
    if parsed.kind == "hf-hub":
        return _locate_hf_hub(open_clip, parsed, download)
    return _locate_local_dir(parsed)


@dataclass
class LoadedOpenClip:
    """An OpenCLIP model in fp32 on the CPU, with what it needs beside: tokenizer and files."""

    model: nn.Module
    tokenizer: Any
    weights: Path
    preprocess: dict[str, Any]
    model_cfg: dict[str, Any]  # OpenCLIP's model config the model was built from


def _tokenizer_from_config(open_clip: ModuleType, text_cfg: dict[str, Any]) -> Any:
    """The tokenizer an OpenCLIP config names (OpenCLIP's rule for configs read from files)."""
    kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
    length = text_cfg.get("context_length", open_clip.tokenizer.DEFAULT_CONTEXT_LENGTH)
    if text_cfg.get("hf_tokenizer_name"):
        return open_clip.tokenizer.HFTokenizer(
            text_cfg["hf_tokenizer_name"],
            context_length=length,
            tokenizer_mode=text_cfg.get("tokenizer_mode"),
            **kwargs,
        )
    return open_clip.SimpleTokenizer(context_length=length, **kwargs)


def load_openclip(name: str) -> LoadedOpenClip:
    """Build OpenCLIP backbone `name` with its weights (fp32, CPU, eval mode)."""
    open_clip = import_open_clip()
    parsed = OpenClipName.parse(name)
    located = locate(name)
    if located.config is None:
        pretrained_cfg = open_clip.get_pretrained_cfg(parsed.arch, parsed.tag) or {}
        model = open_clip.create_model(
            parsed.arch,
            pretrained=str(located.weights),
            pretrained_text=False,
            force_preprocess_cfg={
                k: pretrained_cfg[k] for k in _PREPROCESS_KEYS if k in pretrained_cfg
            },
        )
        tokenizer = open_clip.get_tokenizer(parsed.arch)
        model_cfg = open_clip.get_model_config(parsed.arch.replace("/", "-"))
    else:
        # OpenCLIP reads the folder: its config and the weights file `_folder_files` names.
        model = open_clip.create_model(
            f"{LOCAL_DIR_PREFIX}{located.config.parent}", pretrained_text=False
        )
        model_cfg = json.loads(located.config.read_text())["model_cfg"]
        tokenizer = _tokenizer_from_config(open_clip, model_cfg.get("text_cfg", {}))
    model.eval()
    return LoadedOpenClip(
        model,
        tokenizer,
        located.weights,
        dict(open_clip.get_model_preprocess_cfg(model)),
        model_cfg,
    )


def text_tower(model: nn.Module) -> nn.Module:
    """The module holding the text tower's parts: the model itself for OpenCLIP's `CLIP` class
    (it flattens them onto itself), `model.text` for the others (SigLIP, CoCa, HF towers)."""
    text = getattr(model, "text", None)
    return model if text is None else text


def is_builtin_text_tower(tower: nn.Module) -> bool:
    """OpenCLIP's own transformer text tower (token embeddings, runnable from embeddings)."""
    open_clip = import_open_clip()
    return isinstance(tower, (open_clip.CLIP, open_clip.transformer.TextTransformer))


def half_(model: nn.Module) -> None:
    """OpenCLIP's fp16 layouts (those of `open_clip.create_model(precision="fp16")`): its own
    modules as `convert_weights_to_lp` leaves them (norms in fp32); with a tower from another
    library (timm image tower, Hugging Face text tower) or a biased text projection, which that
    function cannot convert, everything in fp16 but OpenCLIP's fp32 LayerNorms."""
    open_clip = import_open_clip()
    tower = text_tower(model)
    if (
        isinstance(model.visual, open_clip.timm_model.TimmModel)
        or not is_builtin_text_tower(tower)
        or isinstance(getattr(tower, "text_projection", None), nn.Linear)
    ):
        model.half()
        for module in model.modules():
            if isinstance(module, open_clip.transformer.LayerNormFp32):
                module.float()
    else:
        open_clip.convert_weights_to_lp(model, torch.float16)
