"""Small file, image, seeding and environment helpers shared by the engine, datasets and methods."""

import difflib
import hashlib
import importlib
import json
import os
import platform
import random
import re
import secrets
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

import numpy as np
import PIL
import torch
from PIL import Image

PathLike = str | os.PathLike
T = TypeVar("T")


class ImageReadError(OSError):
    """An image file that is missing, truncated or not an image; the message names the file."""


def mkdir_if_missing(dirname: PathLike) -> None:
    os.makedirs(dirname, exist_ok=True)


def check_isfile(fpath: PathLike) -> bool:
    """True when ``fpath`` is an existing file; warns otherwise (upstream behaviour)."""
    isfile = os.path.isfile(fpath)
    if not isfile:
        print(f'Warning: no file found at "{fpath}"')
    return isfile


# atomic_write's temp files: ".<name>.<8 random chars>.tmp" (also mkstemp's names, used before).
_TEMP_FILE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


@contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Write through a temp file in the same folder, then rename it over ``path``.

    A crash or an exception mid-write leaves the previous ``path`` (if any) untouched and no
    partial file behind, which is what keeps checkpoints, split files and caches trustworthy.
    The temp file is created as ``open()`` creates files (0o666 minus the umask), so colleagues
    can read the result as they read upstream's files. Only a kill -9 can leave the temp file
    behind: readers never see it (a dot-file) and ``remove_stale_temp_files`` deletes it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp_name = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp_name, flags, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)
        raise


def remove_stale_temp_files(folder: PathLike) -> list[str]:
    """Delete the temp files ``atomic_write`` left in ``folder`` when a process was killed.

    Only for folders a single run owns (its OUTPUT_DIR): in shared folders (few-shot caches)
    another live process may be writing one, so there they are left alone (readers skip them).
    Returns the names removed.
    """
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in sorted(os.listdir(folder)):
        fpath = os.path.join(folder, name)
        if _TEMP_FILE.match(name) and os.path.isfile(fpath):
            os.remove(fpath)
            removed.append(name)
    return removed


_CHUNK = 1 << 20


def file_sha256(path: PathLike) -> str:
    """SHA-256 of a file, read in chunks (weights files are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


_SHA256_MEMO: dict[tuple, str] = {}


def remembered_sha256(path: PathLike) -> str:
    """``file_sha256``, hashed once per process while the file stays the one hashed: remembered by
    path, size, mtime, ctime and inode (no copy tool restores ctime or inode, so a file replaced
    in place is hashed again)."""
    real = os.path.realpath(path)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
    if key not in _SHA256_MEMO:
        _SHA256_MEMO[key] = file_sha256(real)
    return _SHA256_MEMO[key]


def read_json(fpath: PathLike) -> Any:
    with open(fpath) as f:
        return json.load(f)


def write_json(obj: Any, fpath: PathLike) -> None:
    with atomic_write(fpath, "w") as f:
        json.dump(obj, f, indent=4, separators=(",", ": "))


def listdir_nohidden(path: PathLike, sort: bool = False) -> list[str]:
    """Entries of ``path`` without dot-files (e.g. .DS_Store left by archives)."""
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    if sort:
        items.sort()
    return items


def _high_depth_to_rgb(img: Image.Image, path: PathLike) -> Image.Image | None:
    """8-bit RGB of a single-channel image deeper than 8 bits, or None for other modes.

    PIL's ``convert("RGB")`` clips these modes to 255 instead of scaling them (a 16-bit PNG turns
    white), so they are scaled here:
    - ``I;16*`` (16-bit PNGs and TIFFs) and ``I`` (32-bit integer, read as 16-bit values, the
      range PIL writes to 16-bit files): round(value / 257), so 65535 -> 255; an ``I`` value
      outside [0, 65535] is refused;
    - ``F`` (32-bit float): round(value * 255) for values in [0, 1]; others are refused.
    """
    if img.mode.startswith("I;16") or img.mode == "I":
        values = np.asarray(img).astype(np.float64)
        low, high, limit = 0.0, 65535.0, "[0, 65535] (16-bit)"
        scale = 1 / 257
    elif img.mode == "F":
        values = np.asarray(img).astype(np.float64)
        low, high, limit = 0.0, 1.0, "[0, 1]"
        scale = 255.0
    else:
        return None
    finite = np.isfinite(values).all()
    if values.size and not (finite and low <= values.min() <= values.max() <= high):
        raise ImageReadError(
            f'Image "{path}" has {img.mode} pixels (PIL mode) outside {limit}, which have no '
            "defined 8-bit rendering. Fix: save it as an 8-bit RGB or grayscale image (or with "
            f"values in {limit})."
        )
    gray = np.rint(values * scale).astype(np.uint8)
    return Image.fromarray(gray, "L").convert("RGB")


def read_image(path: PathLike) -> Image.Image:
    """Open an image as RGB, decoding it fully so a truncated file fails here, by name.

    An image over PIL's ``Image.MAX_IMAGE_PIXELS`` (about 89 megapixels) is an error here, not
    just PIL's unnamed DecompressionBombWarning (PIL itself refuses twice that): no benchmark
    image comes near it, so such a file is corrupt or hostile. It is refused before decoding.
    Single-channel images of more than 8 bits are scaled to 8 bits (``_high_depth_to_rgb``).
    """
    try:
        with Image.open(path) as img:
            limit = Image.MAX_IMAGE_PIXELS
            if limit and img.width * img.height > limit:
                raise Image.DecompressionBombError(
                    f"{img.width}x{img.height} pixels, more than PIL's Image.MAX_IMAGE_PIXELS "
                    f"({limit})"
                )
            img.load()
            return _high_depth_to_rgb(img, path) or img.convert("RGB")
    except ImageReadError:
        raise
    except FileNotFoundError as err:
        raise ImageReadError(
            f'Image file not found: "{path}". Check DATASET.ROOT and that the dataset folder is '
            "complete (python -m datasets.check --root DATA NAME lists what is missing)."
        ) from err
    except Image.DecompressionBombError as err:
        raise ImageReadError(
            f'Image "{path}" is too large to decode safely ({err}). It is corrupt or a '
            "decompression bomb: replace it with a good copy from the original dataset archive "
            "(or, if it is a genuine photo, save a downscaled copy in its place)."
        ) from err
    except (OSError, SyntaxError, ValueError) as err:
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            raise ImageReadError(
                f'Image file "{path}" is empty (0 bytes), e.g. left by an interrupted copy or '
                "unpacking: replace it with a good copy from the original dataset archive."
            ) from err
        raise ImageReadError(
            f'Cannot read image "{path}" ({err}). The file is corrupt or not an image: replace it '
            "with a good copy from the original dataset archive."
        ) from err


def import_keeping_rng(name: str) -> Any:
    """Import module ``name`` during a run without moving Python's global RNG.

    For heavy modules imported when first used rather than at start-up (scikit-learn takes
    seconds, which ``train.py --help`` should not wait for). scikit-learn's import draws from
    ``random``; restoring the state keeps a run's random stream independent of when that import
    happened, so a resumed run still equals an unbroken one.
    """
    state = random.getstate()
    try:
        return importlib.import_module(name)
    finally:
        random.setstate(state)


def set_random_seed(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def collect_env_info() -> str:
    """A short report of the software and devices, printed at the start of every run's log."""
    import torchvision

    lines = [
        f"Python: {sys.version.split()[0]} ({platform.platform()})",
        f"PyTorch: {torch.__version__}",
        f"torchvision: {torchvision.__version__}",
        f"NumPy: {np.__version__}",
        f"Pillow: {PIL.__version__}",
        f"CPU threads: {torch.get_num_threads()}",
        f"CUDA available: {torch.cuda.is_available()}",
    ]
    if torch.cuda.is_available():
        lines.append(f"CUDA: {torch.version.cuda}, cuDNN: {torch.backends.cudnn.version()}")
        for i in range(torch.cuda.device_count()):
            lines.append(f"GPU {i}: {torch.cuda.get_device_name(i)}")
    return "\n".join(lines)


def close_matches(
    name: str, candidates: Iterable[str], n: int = 1, cutoff: float = 0.6
) -> list[str]:
    """The candidates most like ``name``: those equal to it but for case first (the usual slip
    with config keys and registry names), else difflib's ``n`` closest above ``cutoff``."""
    name, candidates = str(name), list(candidates)
    same_but_case = [c for c in candidates if c.lower() == name.lower()]
    return same_but_case or difflib.get_close_matches(name, candidates, n=n, cutoff=cutoff)


def did_you_mean(
    name: str, candidates: Iterable[str], n: int = 1, cutoff: float = 0.6, quote: str = '"'
) -> str:
    """The hint that errors about an unknown name end with: ``' Did you mean "X"?'`` (``"X" or
    "Y"`` for several), or "" when no candidate is close."""
    close = close_matches(name, candidates, n, cutoff)
    if not close:
        return ""
    return f" Did you mean {' or '.join(f'{quote}{c}{quote}' for c in close)}?"


def get_most_similar_str_to_a_from_b(a: str, b: list[str]) -> str:
    """The string in ``b`` closest to ``a`` (upstream's name for ``close_matches``)."""
    close = close_matches(a, b, cutoff=0.0)
    return close[0] if close else ""


def check_availability(requested: str, available: list[str]) -> None:
    if requested not in available:
        closest = get_most_similar_str_to_a_from_b(requested, available)
        raise ValueError(
            f'"{requested}" is not available; choose one of {available} (did you mean "{closest}"?)'
        )


class ReadOnly(Generic[T]):
    """A read-only attribute backed by ``self._<name>``, declared as ``label = ReadOnly[int]()``.

    Upstream's Datum, DatasetBase and DataManager keep their state in ``_``-attributes (pickles
    of Datum rely on those names) behind read-only properties; this is that property, once.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> T:
        if obj is None:
            return self  # type: ignore[return-value]  # the descriptor itself, as a property
        return getattr(obj, f"_{self._name}")

    def __set__(self, obj: Any, value: Any) -> None:
        raise AttributeError(f"{type(obj).__name__}.{self._name} is read-only")


def tolist_if_not(x: Any) -> list:
    return x if isinstance(x, list) else [x]
