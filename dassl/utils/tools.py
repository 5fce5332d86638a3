"""Small file, image, seeding and environment helpers shared by the engine, datasets and methods."""

import difflib
import json
import os
import platform
import random
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import PIL
import torch
from PIL import Image

PathLike = str | os.PathLike


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


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Write through a temp file in the same folder, then rename it over ``path``.

    A crash or an exception mid-write leaves the previous ``path`` (if any) untouched and no
    partial file behind, which is what keeps checkpoints, split files and caches trustworthy.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; give the file the permissions open() would (0666 less the umask),
        # so files shared between users (a feature store, split files) stay readable.
        os.chmod(tmp_name, 0o666 & ~_current_umask())
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)
        raise


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


def read_image(path: PathLike) -> Image.Image:
    """Open an image as RGB, decoding it fully so a truncated file fails here, by name."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError as err:
        raise ImageReadError(
            f'Image file not found: "{path}". Check DATASET.ROOT and that the dataset folder is '
            "complete (python -m datasets.check --root DATA NAME lists what is missing)."
        ) from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(
            f'Cannot read image "{path}" ({err}). The file is corrupt or not an image: replace it '
            "with a good copy from the original dataset archive."
        ) from err


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


def get_most_similar_str_to_a_from_b(a: str, b: list[str]) -> str:
    """The string in ``b`` closest to ``a`` (for "did you mean" messages)."""
    matches = difflib.get_close_matches(a, b, n=1, cutoff=0.0)
    return matches[0] if matches else ""


def check_availability(requested: str, available: list[str]) -> None:
    if requested not in available:
        closest = get_most_similar_str_to_a_from_b(requested, available)
        raise ValueError(
            f'"{requested}" is not available; choose one of {available} (did you mean "{closest}"?)'
        )


def tolist_if_not(x: Any) -> list:
    return x if isinstance(x, list) else [x]
