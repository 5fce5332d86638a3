"""Finding, verifying and loading CLIP weights; tokenising text; the matching image transform.

Weights are looked up offline first (see `resolve_checkpoint`), so a machine without network
works as soon as the checkpoint file is on disk. Both OpenAI's TorchScript archives and plain
state dicts load, and neither kind can run code: archives are read as data (`clip.archive`),
state dicts with `torch.load(weights_only=True)`. `build_model` reads the architecture off the
tensor shapes and checks every shape before it allocates anything.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torchvision.transforms import (
    CenterCrop,
    Compose,
    InterpolationMode,
    Normalize,
    Resize,
    ToTensor,
)
from tqdm import tqdm

from dassl.utils.tools import atomic_write, did_you_mean, file_sha256, remembered_sha256
from dassl.utils.user_error import UserError

from .archive import CheckpointError, is_torchscript_archive, read_torchscript_state_dict
from .model import CLIP, build_model, convert_weights
from .simple_tokenizer import EOT, SOT, SimpleTokenizer

__all__ = [
    "available_models",
    "build_model",
    "convert_weights",
    "load",
    "load_clip_to_cpu",
    "resolve_checkpoint",
    "tokenize",
    "CLIP_MEAN",
    "CLIP_STD",
    "CheckpointError",
    "ChecksumMismatchError",
    "ContextLengthError",
    "WeightsNotFoundError",
]

WEIGHTS_DIR_ENV = "CLIP_WEIGHTS_DIR"

# Each URL carries the file's SHA256 digest as its second-to-last path segment.
_MODELS = {
    "RN50": "https://openaipublic.azureedge.net/clip/models/afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt",
    "RN101": "https://openaipublic.azureedge.net/clip/models/8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599/RN101.pt",
    "RN50x4": "https://openaipublic.azureedge.net/clip/models/7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd/RN50x4.pt",
    "RN50x16": "https://openaipublic.azureedge.net/clip/models/52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa/RN50x16.pt",
    "RN50x64": "https://openaipublic.azureedge.net/clip/models/be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c/RN50x64.pt",
    "ViT-B/32": "https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
    "ViT-B/16": "https://openaipublic.azureedge.net/clip/models/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
    "ViT-L/14": "https://openaipublic.azureedge.net/clip/models/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
    "ViT-L/14@336px": "https://openaipublic.azureedge.net/clip/models/3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
}  # fmt: skip

_DEFAULT_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
_CHUNK = 1 << 20
_DOWNLOAD_TIMEOUT_S = 60
_NETWORK_ERRORS = (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException)
# The per-channel pixel mean and std CLIP was trained with (INPUT.PIXEL_MEAN/PIXEL_STD of its runs).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class WeightsNotFoundError(UserError, FileNotFoundError):
    """The checkpoint is on no local path and could not be downloaded."""


class ChecksumMismatchError(UserError, RuntimeError):
    """A weight file's SHA256 digest differs from the one in its URL."""


class ContextLengthError(RuntimeError):
    """A text encodes to more tokens than the context holds (RuntimeError, as upstream)."""


def available_models() -> list[str]:
    """Names accepted by `load` besides file paths."""
    return list(_MODELS)


def _default_cache() -> Path:
    return Path(os.path.expanduser("~/.cache/clip"))


def _url_sha256(url: str) -> str:
    return url.split("/")[-2]


def weights_digest(name: str) -> str | None:
    """SHA-256 of the weights MODEL.BACKBONE.NAME names: a file's own (hashed once per process
    while unchanged), an OpenAI model name's published one (``load`` checks the file against it);
    None for other names (OpenCLIP's), which run identity compares as given."""
    if os.path.isfile(name):
        return remembered_sha256(name)
    if name in _MODELS:
        return _url_sha256(_MODELS[name])
    return None


class _WrongDigest(Exception):
    """Raised inside `atomic_write` to discard a download whose digest is not the expected one."""


def _fetch(url: str, target: Path, expected_sha256: str) -> str:
    """Stream `url` into a temp file beside `target`; return the SHA256 of what arrived.

    `atomic_write` renames the temp file to `target` only when it is complete and has the
    expected digest, so neither an interrupted nor a wrong download ever sits under the final
    name; the file gets the permissions a plain `open` gives, so colleagues sharing the cache can
    read it.
    """
    digest = hashlib.sha256()
    try:
        with (
            atomic_write(target, "wb") as out,
            urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as source,
        ):
            size = source.headers.get("Content-Length")
            with tqdm(
                total=int(size) if size else None,
                ncols=80,
                unit="iB",
                unit_scale=True,
                unit_divisor=1024,
                desc=target.name,
            ) as bar:
                for chunk in iter(lambda: source.read(_CHUNK), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            if digest.hexdigest() != expected_sha256:
                raise _WrongDigest
    except _WrongDigest:
        pass
    return digest.hexdigest()


def _download(url: str, root: str | os.PathLike) -> str:
    """Return the path of the verified file for `url` under `root`, downloading it if needed.

    A cached file whose SHA256 matches the digest in the URL is used without any request. A
    mismatching file (cached or freshly downloaded) is fetched again once; a second mismatch is
    refused with `ChecksumMismatchError`; a mismatching download never replaces the file.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    target = root / os.path.basename(url)
    expected = _url_sha256(url)

    if target.exists() and not target.is_file():
        raise RuntimeError(f"{target} exists and is not a regular file; move it away and retry")
    if target.is_file():
        if remembered_sha256(target) == expected:
            return str(target)
        warnings.warn(
            f"{target} exists but its SHA256 does not match {expected}; downloading it again",
            stacklevel=2,
        )

    got = ""
    for _attempt in range(2):
        got = _fetch(url, target, expected)
        if got == expected:
            return str(target)
    raise ChecksumMismatchError(
        f"{url} was downloaded twice and its SHA256 (last: {got}) is not {expected}: the "
        "server (or a proxy) serves a different file. Fetch it another way, check its SHA256, "
        f"and put it at {target}"
    )


def _not_found_message(
    name: str, filename: str, url: str, download_root: Path, downloaded: bool = True
) -> str:
    env = os.environ.get(WEIGHTS_DIR_ENV)
    env_line = f"${WEIGHTS_DIR_ENV} = {env}" if env else f"the folder named by ${WEIGHTS_DIR_ENV}"
    tried = " and could not be downloaded" if downloaded else ""
    return (
        f"CLIP weights for '{name}' are not on this machine{tried}. "
        f"Put the file {filename} into one of:\n  - {env_line}\n  - {download_root}\n"
        f"or pass the file's path instead of the name. On a machine with network access, "
        f"fetch it from:\n  {url}"
    )


def resolve_checkpoint(
    name: str, download_root: str | os.PathLike | None = None, download: bool = True
) -> Path:
    """Find the file for a model name or path, offline first.

    Order: `name` as an existing file path; `$CLIP_WEIGHTS_DIR/<file name from the URL>`
    (e.g. ViT-B-16.pt); `download_root` (default ~/.cache/clip); finally a download into
    `download_root`. Files found by name are checked against the SHA256 in their URL.
    `download=False` stops before the download (a sweep's preflight: is the file here?), and
    leaves a cached file's digest for the run to check.
    """
    if os.path.isfile(name):
        return Path(name)
    if name not in _MODELS:
        hint = did_you_mean(name, _MODELS, quote="'")
        raise WeightsNotFoundError(
            f"'{name}' is neither an existing checkpoint file nor a CLIP model name.{hint} "
            f"Available models: {available_models()}"
        )

    url = _MODELS[name]
    filename = os.path.basename(url)
    env_dir = os.environ.get(WEIGHTS_DIR_ENV)
    if env_dir and (Path(env_dir) / filename).is_file():
        candidate = Path(env_dir) / filename
        if remembered_sha256(candidate) != _url_sha256(url):
            raise ChecksumMismatchError(
                f"{candidate} is not the official {name} file (its SHA256 differs from the one in "
                f"{url}). Replace it with a fresh copy from that URL, or pass its path instead of "
                "the name to load it as it is"
            )
        return candidate

    root = Path(download_root) if download_root else _default_cache()
    if not download:
        if (root / filename).is_file():
            return root / filename
        raise WeightsNotFoundError(_not_found_message(name, filename, url, root, downloaded=False))
    try:
        return Path(_download(url, root))
    except _NETWORK_ERRORS as err:
        message = _not_found_message(name, filename, url, root)
        raise WeightsNotFoundError(f"{message}\n(download error: {err})") from err


@contextmanager
def quiet_torchscript() -> Iterator[None]:
    """Silence torch's TorchScript deprecation notices: OpenAI ships its weights as TorchScript
    archives, and users who merely read them can do nothing about the notice."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=FutureWarning)
        yield


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """The state dict of a TorchScript archive or a saved state dict, without running its code."""
    if is_torchscript_archive(path):
        return dict(read_torchscript_state_dict(path))
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"{path} is neither a TorchScript archive nor a saved state dict ({err}); if it was "
            "downloaded, it may be truncated: delete it and fetch it again"
        ) from err
    if isinstance(state_dict, Mapping) and isinstance(state_dict.get("state_dict"), Mapping):
        state_dict = state_dict["state_dict"]
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(
            f"{path} holds a {type(state_dict).__name__}, not a state dict; save the model with "
            "torch.save(model.state_dict(), path)"
        )
    return dict(state_dict)


def _load_official_archive(path: Path) -> torch.jit.ScriptModule:
    """`torch.jit.load` runs code stored in the archive, so only OpenAI's own files get there."""
    if file_sha256(path) not in {_url_sha256(url) for url in _MODELS.values()}:
        raise CheckpointError(
            f"{path} is a TorchScript archive but not one of OpenAI's published files (its "
            "SHA256 matches none of them), and jit=True would run the code stored in it. Load "
            "it with jit=False: the eager model has the same weights and runs no archive code"
        )
    with quiet_torchscript():
        return torch.jit.load(str(path), map_location="cpu").eval()


def _to_rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


def _transform(n_px: int) -> Callable[[Image.Image], torch.Tensor]:
    """CLIP's test-time preprocessing: bicubic resize, centre crop, CLIP mean/std."""
    return Compose(
        [
            Resize(n_px, interpolation=InterpolationMode.BICUBIC),
            CenterCrop(n_px),
            _to_rgb,
            ToTensor(),
            Normalize(CLIP_MEAN, CLIP_STD),
        ]
    )


def _retarget_archive(archive: torch.jit.ScriptModule, device: torch.device) -> None:
    """Rewrite the device and fp16 constants baked into an OpenAI archive (traced on CUDA in fp16)
    so it runs on `device`; on CPU it also runs in fp32."""
    with quiet_torchscript():
        device_holder = torch.jit.trace(lambda: torch.ones([]).to(device), example_inputs=[])
        float_holder = torch.jit.trace(lambda: torch.ones([]).float(), example_inputs=[])
    device_node = [
        n for n in device_holder.graph.findAllNodes("prim::Constant") if "Device" in repr(n)
    ][-1]
    float_node = None
    if device.type == "cpu":
        float_node = list(float_holder.graph.findNode("aten::to").inputs())[1].node()

    def constant(node: Any) -> Any:
        return getattr(node, node.kindOf("value"))("value")  # e.g. node.s("value") for strings

    def graphs_of(module: Any) -> list[Any]:
        try:
            graphs = [module.graph] if hasattr(module, "graph") else []
        except RuntimeError:  # modules without a forward have no graph
            graphs = []
        if hasattr(module, "forward1"):
            graphs.append(module.forward1.graph)
        return graphs

    def patch(module: Any) -> None:
        for graph in graphs_of(module):
            for node in graph.findAllNodes("prim::Constant"):
                if "value" in node.attributeNames() and str(constant(node)).startswith("cuda"):
                    node.copyAttributes(device_node)
            if float_node is None:
                continue
            for node in graph.findAllNodes("aten::to"):
                # The dtype is the 2nd or 3rd input of aten::to; 5 is torch.half.
                for arg in list(node.inputs())[1:3]:
                    const = arg.node()
                    if "value" in const.attributeNames() and constant(const) == 5:
                        const.copyAttributes(float_node)

    archive.apply(patch)
    patch(archive.encode_image)
    patch(archive.encode_text)
    if float_node is not None:
        archive.float()


def load(
    name: str,
    device: str | torch.device = _DEFAULT_DEVICE,
    jit: bool = False,
    download_root: str | None = None,
) -> tuple[CLIP | torch.jit.ScriptModule, Callable[[Image.Image], torch.Tensor]]:
    """Load a CLIP model and its image preprocessing, as `openai/CLIP`'s `clip.load`.

    `name` is a name from `available_models()` or a checkpoint path (TorchScript archive or state
    dict). As upstream, the model is fp16 on GPU and fp32 on CPU; `jit=True` returns the archive
    itself (retargeted to `device`) instead of the eager model. Running an archive runs its code,
    so `jit=True` accepts only OpenAI's published files (checked by SHA256).
    """
    device = torch.device(device)
    path = resolve_checkpoint(name, download_root)
    if jit and is_torchscript_archive(path):
        archive = _load_official_archive(path)
        _retarget_archive(archive, device)
        archive = archive.to(device)
        return archive, _transform(int(archive.input_resolution.item()))
    if jit:
        warnings.warn(
            f"{path} is not a TorchScript archive; loading it as a state dict", stacklevel=2
        )

    model = build_model(_read_checkpoint(path)).to(device)
    if device.type != "cpu":
        convert_weights(model)
    return model, _transform(model.visual.input_resolution)


def load_clip_to_cpu(cfg: Any) -> CLIP:
    """Build the fp32 eager CLIP on CPU named by `cfg.MODEL.BACKBONE.NAME` (name or file path).

    Upstream returns fp16 weights here; ours are fp32 and the caller applies its precision
    (`convert_weights(model)` for fp16).
    """
    return build_model(_read_checkpoint(resolve_checkpoint(cfg.MODEL.BACKBONE.NAME)))


@lru_cache(maxsize=1)
def _tokenizer() -> SimpleTokenizer:
    return SimpleTokenizer()


def tokenize(
    texts: str | list[str], context_length: int = 77, truncate: bool = False
) -> torch.LongTensor:
    """Token ids [number of texts, context_length]: start token, BPE ids, end token, zeros.

    A text longer than the context raises `ContextLengthError` unless `truncate=True`, which
    cuts it and makes the last token the end token (so `argmax` still finds it).
    """
    if isinstance(texts, str):
        texts = [texts]
    if context_length < 2:
        raise ValueError(
            f"context_length must be at least 2 (start and end tokens), not {context_length}"
        )
    tokenizer = _tokenizer()
    sot, eot = tokenizer.encoder[SOT], tokenizer.encoder[EOT]
    result = torch.zeros(len(texts), context_length, dtype=torch.long)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"tokenize expects strings, but item {i} is a {type(text).__name__}")
        tokens = [sot, *tokenizer.encode(text), eot]
        if len(tokens) > context_length:
            if not truncate:
                raise ContextLengthError(
                    f"text {i} ({text[:40]!r}...) is {len(tokens)} tokens long, more than the "
                    f"context length {context_length}; shorten it or pass truncate=True"
                )
            tokens = tokens[:context_length]
            tokens[-1] = eot
        result[i, : len(tokens)] = torch.tensor(tokens)
    return result
