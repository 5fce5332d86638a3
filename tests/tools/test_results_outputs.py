"""The folders the results tool writes (--export, --figures): a folder it cannot write, or a path
that is a file, is one line naming the path and the fix, before any run is read."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.tools.grid import write_grid
from tools import parse_test_res as ptr

FLAGS = ("--export", "--figures")


def _writable(folder: Path) -> bool:
    try:
        (folder / "probe").touch()
    except OSError:
        return False
    (folder / "probe").unlink()
    return True


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    write_grid(tmp_path / "runs")
    return tmp_path / "runs"


@pytest.fixture
def read_only(tmp_path: Path):
    """A folder this process cannot write: by its mode, or (as root, whom modes do not stop) by
    the immutable attribute."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if _writable(folder) and shutil.which("chattr"):
        locked = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
        immutable = locked.returncode == 0
    try:
        if _writable(folder):
            pytest.skip("no way to make a read-only folder here")
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


@pytest.mark.parametrize("flag", FLAGS)
def test_a_read_only_folder_is_one_line_before_any_run_is_read(runs, read_only, flag, capsys):
    assert ptr.main([str(runs), "--table", flag, str(read_only)]) == 1
    out, err = capsys.readouterr()
    assert out == ""  # refused before the runs were summarised
    assert re.fullmatch(
        rf"ERROR: cannot write {re.escape(str(read_only))} \({flag}\): [A-Za-z ]+\. Make it "
        rf"writable, or pass {flag} a folder you can write to\.\n",
        err,
    )


@pytest.mark.parametrize("flag", FLAGS)
def test_a_path_that_is_a_file_is_one_line_and_the_file_is_kept(runs, tmp_path, flag, capsys):
    target = tmp_path / "results.csv"
    target.write_text("mine")
    assert ptr.main([str(runs), "--table", flag, str(target)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"ERROR: {flag} {target} is a file, not a folder. Pass {flag} a folder (it is created "
        "when missing), e.g. a new folder name.\n"
    )
    assert target.read_text() == "mine"


def test_a_missing_folder_is_created(runs, tmp_path):
    folder = tmp_path / "new" / "paper"
    assert ptr.main([str(runs), "--shots", "1", "--export", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["results.csv", "results.md", "results.tex"]
