"""``python -c CODE ...``, ``python -m MODULE ...`` and ``python SCRIPT ...`` without paying
torch's import in each: a fork server that imported torch, torchvision and the project once
(multiprocessing's forkserver, started on first use) forks every one.

A child is still a process of its own, as the command would start: its own pid and session (a
signal to its process group reaches only it and its DataLoader workers), its own signal handlers,
registries and later imports, and the exit status a signal or ``sys.exit`` gives it (-9 for
kill -9, 143 for ``sys.exit(143)``). It runs torch on one thread. What it cannot show is what a
bare interpreter imports: a test of that starts a real ``python``.
"""

from __future__ import annotations

import multiprocessing
import os
import runpy
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# What the server imports before it forks: the slow part of every train.py start. A child imports
# anything else (toy methods, test trainers) itself, so they are registered in it only.
PRELOAD = ["torch", "torchvision", "datasets", "trainers", "dassl.engine", "train"]

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(PRELOAD)


def _run_command(args: list[str], env: dict[str, str], cwd: str, output: str) -> None:
    """In the forked child: a session of its own, ``env``, ``cwd``, stdout and stderr to
    ``output``, torch on one thread; then ``args`` as ``python`` runs them."""
    import torch

    os.setsid()
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(output, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    torch.set_num_threads(1)
    # multiprocessing made this child's default start method the server's; a fresh interpreter
    # has the platform's (fork on Linux), which DataLoader workers use.
    multiprocessing.set_start_method(None, force=True)
    if args[0] == "-c":
        sys.argv = ["-c", *args[2:]]
        sys.path.insert(0, cwd)
        exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__"})
    elif args[0] == "-m":
        sys.argv = [args[1], *args[2:]]
        sys.path.insert(0, cwd)
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(args)
        sys.path.insert(0, str(Path(args[0]).resolve().parent))
        runpy.run_path(args[0], run_name="__main__")


class WarmPython:
    """``python *args`` in a child of the fork server, with ``env`` (default: this process's) in
    ``cwd``; ``wait`` returns its exit status and its stdout and stderr together."""

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | Path = REPO_ROOT,
    ) -> None:
        fd, self._output = tempfile.mkstemp(prefix="warm_python_", suffix=".txt")
        os.close(fd)
        full_env = dict(os.environ if env is None else env)
        self._process = _CONTEXT.Process(
            target=_run_command, args=(list(args), full_env, str(cwd), self._output)
        )
        self._process.start()
        self.pid = self._process.pid

    def wait(self, timeout: float = 300) -> tuple[int, str]:
        try:
            self._process.join(timeout)
            if self._process.exitcode is None:
                self._process.kill()
                self._process.join()
                raise TimeoutError(f"python still ran after {timeout} s")
            return self._process.exitcode, Path(self._output).read_text()
        finally:
            os.unlink(self._output)


def run_python(
    args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 300
) -> tuple[int, str]:
    """``WarmPython(args, env).wait(timeout)``: exit status, stdout and stderr together."""
    return WarmPython(args, env).wait(timeout)
