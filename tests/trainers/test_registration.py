"""Trainers and datasets register by importing their package: every module in it is imported, so
adding a file is enough (no import list to keep), and `python -m` still runs a module once."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Which modules of each package a bare `import trainers, datasets` leaves unimported.
UNIMPORTED = """
import pkgutil, sys
import datasets, trainers
for package in (datasets, trainers):
    for module in pkgutil.iter_modules(package.__path__):
        name = f"{package.__name__}.{module.name}"
        if name not in sys.modules:
            print(name)
"""


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_importing_a_package_imports_every_module_in_it():
    proc = _python("-c", UNIMPORTED)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""


def test_a_module_run_with_dash_m_is_not_imported_first():
    proc = _python("-m", "datasets.check", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage: python -m datasets.check" in proc.stdout
    assert "RuntimeWarning" not in proc.stderr  # runpy's "found in sys.modules" warning
