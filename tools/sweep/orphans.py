"""A train.py started by a sweep stops when that sweep dies, even by SIGKILL.

An orphaned train.py would go on training its folder while the sweep, run again, starts a second
writer there. So each child gets SIGTERM (it saves and exits, as on Ctrl-C) once its parent is
gone: on Linux through the kernel's parent-death signal (``prctl(PR_SET_PDEATHSIG)``, set in the
child before exec); elsewhere through a small watchdog process that polls its own parent pid (it
changes when the sweep dies and the watchdog is re-parented) and then signals the child.

    python -m tools.sweep.orphans SWEEP_PID CHILD_PID     # the watchdog (started by watch())
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

STOP_SIGNAL = signal.SIGTERM  # train.py saves at the next batch boundary and exits
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCH_POLL_S = 1.0
REPO = Path(__file__).resolve().parents[2]

_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
KERNEL_SIGNAL = _LIBC is not None  # whether children get the parent-death signal from Linux


def stop_with_parent(parent_pid: int) -> None:
    """In the child, before exec (a preexec_fn; the setting survives exec): get STOP_SIGNAL when
    the thread that started this process exits. Exits at once if the parent already died between
    fork and this call. Does nothing where Linux's prctl is unavailable (see ``watch``)."""
    if _LIBC is None:
        return
    _LIBC.prctl(PR_SET_PDEATHSIG, int(STOP_SIGNAL), 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


def watch(child_pid: int) -> subprocess.Popen:
    """For where the kernel gives no parent-death signal (not KERNEL_SIGNAL): start a watchdog
    that sends STOP_SIGNAL to ``child_pid`` once this process dies. The caller terminates the
    watchdog when the child has ended."""
    return subprocess.Popen(
        [sys.executable, "-m", "tools.sweep.orphans", str(os.getpid()), str(child_pid)],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C meant for the sweep does not stop the watchdog first
    )


def watchdog(parent_pid: int, child_pid: int, poll_s: float = WATCH_POLL_S) -> None:
    """Poll until the child has ended (return) or this process's parent changed (signal it)."""
    while _alive(child_pid):
        if os.getppid() != parent_pid:
            os.kill(child_pid, STOP_SIGNAL)
            return
        time.sleep(poll_s)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, but is another user's: the pid was reused
        return False
    return True


if __name__ == "__main__":
    watchdog(int(sys.argv[1]), int(sys.argv[2]))
