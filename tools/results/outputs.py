"""The folders the results tool writes (``--export``, ``--figures``): checked before any run is
read, and a failed write is one line naming the path and the fix, never a traceback."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .runs import ResultsError


def check_folder(folder: Path, flag: str) -> None:
    """Create ``folder`` when missing and make sure a file can be written in it."""
    if folder.exists() and not folder.is_dir():
        raise ResultsError(
            f"{flag} {folder} is a file, not a folder. Pass {flag} a folder (it is created when "
            "missing), e.g. a new folder name."
        )
    with writing(folder, flag):
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass


@contextmanager
def writing(path: Path, flag: str) -> Iterator[None]:
    """Turn an OSError raised while writing ``path`` into a ResultsError that names it."""
    try:
        yield
    except OSError as err:
        raise ResultsError(
            f"cannot write {path} ({flag}): {err.strerror or err}. Make it writable, or pass "
            f"{flag} a folder you can write to."
        ) from None
