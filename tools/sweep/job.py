"""One cell as a job: ``python train.py ...`` in a subprocess, for both launchers.

The local launcher calls a ``CellJob`` in a worker thread; the Slurm launcher hands it to submitit,
which pickles it and calls it on a compute node. It is checkpointable in submitit's sense: when
Slurm preempts the job or its time limit nears, submitit calls ``checkpoint()``, which stops
train.py and returns the same job, and submitit requeues it. The requeued job runs the same command
into the same folder, and train.py resumes from the last epoch it saved. A job that Slurm or a
person killed outright resumes the same way when the grid command is run again.
"""

from __future__ import annotations

import datetime
import functools
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from submitit import JobEnvironment
from submitit.helpers import Checkpointable, DelayedSubmission

from . import orphans

REPO = Path(__file__).resolve().parents[2]
STOP_GRACE_S = 60  # how long train.py may take to save and exit before it is killed
# A line saying why a run stopped: train.py's "ERROR: ..." or a traceback's last line.
ERROR_LINE = re.compile(r"(ERROR\b|[A-Za-z_][\w.]*(Error|Exception|Interrupted)\b)")


class CellFailed(RuntimeError):
    """train.py exited with an error; the message names its exit status and the last error line
    of its output (one line, which submitit's error report ends with too)."""


def last_error_line(text: str) -> str:
    """The last line of a run's output that says why it stopped, or ""."""
    for line in reversed(text.splitlines()):
        if ERROR_LINE.match(line.strip()):
            return line.strip()
    return ""


def exit_reason(code: int) -> str:
    """ "exited with status N", naming the signal that killed it (negative statuses)."""
    if code < 0:
        try:
            return f"exited with status {code} (killed by {signal.Signals(-code).name})"
        except ValueError:
            pass
    return f"exited with status {code}"


class CellJob(Checkpointable):
    """Run one cell's train.py, its console output appended to ``console``.

    ``device`` pins the run to one GPU through CUDA_VISIBLE_DEVICES ("" hides every GPU; None
    keeps the environment, as on Slurm, which sets it per job). ``threads`` caps a CPU run's
    threads (OMP_NUM_THREADS) when CPU workers share the machine. ``preemptible`` marks a job
    run by submitit: train.py then ignores submitit's preemption signal, which Slurm sends to
    every process of the job, so that ``checkpoint()`` stops it with SIGTERM, the signal that
    makes it save and exit.

    train.py stops (SIGTERM: it saves and exits) when the process that called the job dies, even
    by SIGKILL, so that no orphan goes on writing its folder (``orphans``); on Linux the signal
    comes when the calling *thread* exits, which waits for train.py here. A local job runs in a
    session of its own, so a Ctrl-C at the terminal reaches only the sweep, which stops every
    train.py with one SIGTERM (a second signal would make train.py stop without saving).
    """

    def __init__(
        self,
        argv: Sequence[str],
        console: str | Path,
        device: str | None = None,
        threads: int | None = None,
        preemptible: bool = False,
    ) -> None:
        self.argv = list(argv)
        self.console = Path(console)
        self.device = device
        self.threads = threads
        self.preemptible = preemptible
        self._process: subprocess.Popen | None = None
        self._stop_requested = False  # stop() came before train.py's process was known

    @property
    def command(self) -> list[str]:
        return [sys.executable, "train.py", *self.argv]

    def __call__(self) -> int:
        env = dict(os.environ)
        # run_identity.LAUNCHER_ENV: train.py's refusals then name --output-root, not --output-dir
        env["RUN_LAUNCHER"] = "sweep"
        if self.device is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.device
        if self.threads is not None:
            env.setdefault("OMP_NUM_THREADS", str(self.threads))
        self.console.parent.mkdir(parents=True, exist_ok=True)
        with open(self.console, "a") as out:
            stamp = datetime.datetime.now().isoformat(timespec="seconds")
            out.write(f"# {stamp} (cd {REPO} && {shlex.join(self.command)})\n")
            out.flush()
            started_at = out.tell()  # this attempt's output starts here (the file accumulates)
            self._process = subprocess.Popen(
                self.command,
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=not self.preemptible,
                preexec_fn=functools.partial(_prepare_child, os.getpid(), self.preemptible),
            )
            if self._stop_requested:  # stop() ran while train.py was being started
                self._process.terminate()
            watchdog = None if orphans.KERNEL_SIGNAL else orphans.watch(self._process.pid)
            code = self._process.wait()
        if watchdog is not None:
            watchdog.terminate()
            watchdog.wait()
        self._process = None
        if code != 0:
            with open(self.console, "rb") as out:
                out.seek(started_at)
                error = last_error_line(out.read().decode(errors="replace"))
            raise CellFailed(f"train.py {exit_reason(code)}{f': {error}' if error else ''}")
        return code

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM train.py (it saves and exits), then SIGKILL it after ``grace_s``.

        It waits without reaping the process: submitit calls this from a signal handler while
        ``__call__`` is inside ``Popen.wait``, whose lock a second wait would block on forever.
        Called while ``__call__`` is still starting train.py, it leaves ``__call__`` to stop it.
        """
        self._stop_requested = True
        process = self._process
        if process is None or _exited(process.pid):
            return
        process.terminate()
        deadline = time.monotonic() + grace_s
        while not _exited(process.pid):
            if time.monotonic() > deadline:
                process.kill()
                deadline = float("inf")
            time.sleep(0.05)

    def checkpoint(self) -> DelayedSubmission:
        """submitit's preemption/timeout hook: stop train.py and requeue this same job."""
        self.stop()
        return super().checkpoint()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_process"] = None  # a running process does not travel with a requeued job
        state["_stop_requested"] = False  # the requeued job runs
        return state


def _prepare_child(parent_pid: int, preemptible: bool) -> None:
    """In the child before exec (what it sets survives exec): stop with the parent and, under
    submitit, ignore its preemption signal. It allocates little and takes no lock, as code
    forked from a threaded parent must."""
    orphans.stop_with_parent(parent_pid)
    if preemptible:
        signal.signal(getattr(signal, f"SIG{JobEnvironment.USR_SIG}"), signal.SIG_IGN)


def _exited(pid: int) -> bool:
    """Whether a child has exited, leaving it for its own ``wait`` to reap."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # already reaped
        return True
