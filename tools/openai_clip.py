"""OpenAI's reference `clip` package (installed aside in .oracle), the parity tests' oracle.

Its import name clashes with ours, so it is imported under the name `openai_clip`; the CLIP tests
and benchmarks/clip_speed.py both load it through here.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path
from types import ModuleType

ORACLE_DIR = Path(__file__).resolve().parents[1] / ".oracle" / "clip"
INSTALL_HINT = (
    "install it with `pip install --no-deps --target .oracle openai-clip` (needs setuptools<81)"
)


def load_openai_clip(oracle_dir: Path = ORACLE_DIR) -> ModuleType | None:
    """The reference package from `oracle_dir` as `openai_clip` (imported once), or None when it
    is not installed there."""
    if not (oracle_dir / "__init__.py").is_file():
        return None
    if "openai_clip" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "openai_clip", oracle_dir / "__init__.py", submodule_search_locations=[str(oracle_dir)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["openai_clip"] = module
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its pkg_resources import is deprecated
            spec.loader.exec_module(module)
    return sys.modules["openai_clip"]
