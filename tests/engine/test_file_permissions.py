"""Files are written readable by others, as upstream writes them, and a file this user may not
read is reported as a permission problem, not as a truncated checkpoint."""

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch.nn as nn

from dassl.data.datasets import Datum
from dassl.utils import load_checkpoint, load_pickle, save_checkpoint, save_pickle

NOBODY = 65534


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder others may enter (pytest's own tmp folders are private to their owner)."""
    previous = os.umask(0o022)  # the usual umask, whatever the test runner's is
    path = Path(tempfile.mkdtemp())
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)
    os.umask(previous)


def _as_colleague(fn: Callable[[], str]) -> str:
    """``fn()`` as another user: in a forked child switched to uid/gid nobody (needs root).
    Returns what ``fn`` returned, or "<ExceptionType>: <message>"."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        os.close(read_end)
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            result = fn()
        except BaseException as err:
            result = f"{type(err).__name__}: {err}"
        os.write(write_end, result.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        result = f.read()
    os.waitpid(pid, 0)
    return result


def _write_checkpoint_and_cache(folder: Path) -> tuple[Path, Path]:
    save_checkpoint({"state_dict": nn.Linear(2, 2).state_dict(), "epoch": 1}, str(folder / "model"))
    cache = folder / "split_fewshot" / "shot_1-seed_1.pkl"
    save_pickle({"train": [Datum(impath="a.png", label=0, classname="a")], "val": []}, cache)
    return folder / "model" / "model.pth.tar-1", cache


def test_checkpoints_and_caches_are_written_0644_under_umask_022(shared_dir: Path) -> None:
    checkpoint, cache = _write_checkpoint_and_cache(shared_dir)
    for path in (checkpoint, shared_dir / "model" / "checkpoint", cache):
        assert path.stat().st_mode & 0o777 == 0o644, path


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_a_colleague_can_read_them(shared_dir: Path) -> None:
    checkpoint, cache = _write_checkpoint_and_cache(shared_dir)
    (shared_dir / "model").chmod(0o755)
    (shared_dir / "split_fewshot").chmod(0o755)

    def read_both() -> str:
        epoch = load_checkpoint(str(checkpoint))["epoch"]
        return f"epoch {epoch}, {len(load_pickle(cache)['train'])} item"

    assert _as_colleague(read_both) == "epoch 1, 1 item"


def test_unreadable_checkpoint_is_a_permission_error_not_truncation(shared_dir: Path) -> None:
    checkpoint, _ = _write_checkpoint_and_cache(shared_dir)
    (shared_dir / "model").chmod(0o755)
    as_root = os.geteuid() == 0
    mode = 0o600 if as_root else 0o000  # root reads anything: then the reader is nobody
    checkpoint.chmod(mode)

    def load() -> str:
        try:
            return str(load_checkpoint(str(checkpoint)))
        except Exception as err:
            return f"{type(err).__name__}: {err}"

    message = _as_colleague(load) if as_root else load()
    assert message.startswith("PermissionError: "), message
    assert str(checkpoint) in message and f"mode {mode:o}" in message and "chmod a+r" in message
    assert "truncated" not in message
