"""Name -> class registries, so configs can name trainers, datasets and evaluators as strings."""

import difflib
import importlib
import pkgutil
import sys
from collections.abc import Iterable
from typing import Any


class Registry:
    """Maps ``obj.__name__`` to ``obj``; an unknown name fails with the list of known ones."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._obj_map: dict[str, Any] = {}

    def _do_register(self, name: str, obj: Any, force: bool) -> None:
        if name in self._obj_map and not force:
            raise KeyError(
                f'An object named "{name}" is already registered in the {self._name} registry; '
                "pass force=True to replace it"
            )
        self._obj_map[name] = obj

    def register(self, obj: Any = None, force: bool = False) -> Any:
        """Use as ``@REG.register()`` or ``REG.register(obj)``."""
        if obj is None:

            def wrapper(fn_or_class: Any) -> Any:
                self._do_register(fn_or_class.__name__, fn_or_class, force)
                return fn_or_class

            return wrapper
        self._do_register(obj.__name__, obj, force)
        return obj

    def get(self, name: str) -> Any:
        if name not in self._obj_map:
            known = self.registered_names()
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.0)
            hint = f' Did you mean "{close[0]}"?' if close else ""
            raise KeyError(
                f'No object named "{name}" in the {self._name} registry.{hint} '
                f"Registered names: {', '.join(known) or '(none)'}"
            )
        return self._obj_map[name]

    def registered_names(self) -> list[str]:
        return sorted(self._obj_map)

    def __contains__(self, name: object) -> bool:
        return name in self._obj_map

    def __repr__(self) -> str:
        return f"Registry({self._name!r}, {self.registered_names()})"


def import_submodules(package: str, path: Iterable[str]) -> None:
    """Import every module of ``package`` (``path`` is its ``__path__``), so that each one
    registers what it defines: adding a file is all it takes, with no import list to keep.

    The module being run with ``python -m`` is left to runpy, which would otherwise find it
    imported already and warn that it may run twice."""
    argv = sys.orig_argv
    running = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else None
    for module in pkgutil.iter_modules(path):
        name = f"{package}.{module.name}"
        if name != running:
            importlib.import_module(name)
