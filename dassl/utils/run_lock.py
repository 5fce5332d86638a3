"""One writer per run folder: an OS lock (``flock``) on ``OUTPUT_DIR/run.lock``.

The OS releases the lock when its process dies, however it dies (kill -9 included), so a stale lock
never blocks a folder. A second process asking for a held folder is refused at once, before any
work, with the holder's pid, host and start time (written into the lock file).
"""

from __future__ import annotations

import datetime
import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from dassl.utils.user_error import UserError

LOCK_FILE = "run.lock"


class RunFolderBusy(UserError, RuntimeError):
    """Another live process holds the run folder."""


@contextmanager
def hold_run_folder(output_dir: str) -> Iterator[None]:
    """Hold ``output_dir`` (created if missing) for the ``with`` block, or raise
    ``RunFolderBusy`` when another process holds it."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown"
            raise RunFolderBusy(
                f'"{output_dir}" is in use by another run ({holder}): two processes writing one '
                "run folder would corrupt it. Fix: wait for that run to finish (or stop it), then "
                "run this command again; it resumes or skips as the folder then says."
            ) from None
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n".encode(), 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
