"""Tee the console into OUTPUT_DIR/log.txt, the run record that results tools parse.

Engine code logs with plain ``print()``; once ``setup_logger`` has run, stdout and stderr go both
to the console and to the log file. An existing log is never overwritten: a new run in the same
folder writes ``log.txt-<timestamp>`` instead.
"""

import os
import sys
import time
from typing import IO

from .tools import mkdir_if_missing


class _Tee:
    """A text stream writing to the console and to a log file.

    ``keep_last_line_only`` is for stderr, where progress bars redraw one line with ``\\r``: the
    file gets only what the terminal finally shows, one line per bar, not every redraw.
    """

    def __init__(self, console: IO[str], file: IO[str], keep_last_line_only: bool) -> None:
        self.console = console
        self.file = file
        self.keep_last_line_only = keep_last_line_only
        self._pending = ""

    def write(self, msg: str) -> int:
        self.console.write(msg)
        if self.file.closed:
            return len(msg)
        if self.keep_last_line_only:
            text = self._pending + msg
            *lines, self._pending = text.split("\n")
            for line in lines:
                self.file.write(line.rsplit("\r", 1)[-1] + "\n")
        else:
            self.file.write(msg)
        self.file.flush()
        return len(msg)

    def flush(self) -> None:
        self.console.flush()
        if not self.file.closed:
            self.file.flush()

    def close_file(self) -> None:
        if not self.file.closed:
            if self._pending:
                self.file.write(self._pending.rsplit("\r", 1)[-1] + "\n")
                self._pending = ""
            self.file.close()

    def __getattr__(self, name: str) -> object:
        # Anything else (isatty, fileno, encoding, buffer, ...) is the console's.
        return getattr(self.console, name)


def _unwrap(stream: IO[str]) -> IO[str]:
    """The real console behind any tee an earlier ``setup_logger`` call installed."""
    while isinstance(stream, _Tee):
        stream.close_file()
        stream = stream.console
    return stream


def _fresh_log_path(fpath: str) -> str:
    """``fpath`` if free, else ``fpath-<timestamp>`` (plus a counter if that is taken too)."""
    if not os.path.exists(fpath):
        return fpath
    stamped = fpath + time.strftime("-%Y-%m-%d-%H-%M-%S")
    candidate, n = stamped, 1
    while os.path.exists(candidate):
        candidate = f"{stamped}-{n}"
        n += 1
    return candidate


def setup_logger(output: str | None = None) -> str | None:
    """Tee stdout and stderr to ``output``/log.txt (or to ``output`` if it names a .txt/.log file).

    Returns the path of the log file actually written (None when ``output`` is None).
    """
    if output is None:
        return None
    output = str(output)
    if output.endswith((".txt", ".log")):
        fpath = output
    else:
        fpath = os.path.join(output, "log.txt")
    mkdir_if_missing(os.path.dirname(fpath) or ".")

    while True:
        fpath = _fresh_log_path(fpath)
        try:
            # "x": fail rather than overwrite if another process created the file meanwhile.
            file = open(fpath, "x", encoding="utf-8")
            break
        except FileExistsError:
            continue

    stdout, stderr = _unwrap(sys.stdout), _unwrap(sys.stderr)
    sys.stdout = _Tee(stdout, file, keep_last_line_only=False)
    sys.stderr = _Tee(stderr, file, keep_last_line_only=True)
    return fpath


def close_logger() -> None:
    """Unhook the tees and close the log file, for callers running several runs in one process
    (tests, notebooks); a later ``setup_logger`` does this itself."""
    sys.stdout = _unwrap(sys.stdout)
    sys.stderr = _unwrap(sys.stderr)
