"""Name -> class registries, so configs can name trainers, datasets and evaluators as strings."""

import importlib
import pkgutil
import sys
from collections.abc import Iterable
from typing import Any

from .tools import did_you_mean
from .user_error import UserError


class RegistryLookupError(UserError, KeyError, ValueError):
    """A name that is empty or not registered; the message lists the registered ones (a
    KeyError as upstream's for an unknown name, a ValueError for an empty one)."""

    def __str__(self) -> str:
        return str(self.args[0])  # the message, not KeyError's quoted repr of it


class Registry:
    """Maps ``obj.__name__`` to ``obj``; an unknown name fails with the list of known ones.

    ``key`` is the config key that names an entry (default ``<name>.NAME``) and ``how_to_set``
    tells the user how to set it: both go into the error for an empty name.
    """

    def __init__(self, name: str, key: str = "", how_to_set: str = "") -> None:
        self._name = name
        self._key = key or f"{name}.NAME"
        self._how_to_set = how_to_set or f"set {self._key} in a config file or on the command line"
        self._obj_map: dict[str, Any] = {}
        # Modules that failed to import (name -> error): one may have defined the name asked for.
        self._unimportable: dict[str, Exception] = {}

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

    def note_unimportable(self, module: str, error: Exception) -> None:
        """Record a module that failed to import, so that asking for a name it may have
        registered raises its import error instead of "no object named"."""
        self._unimportable[module] = error

    def get(self, name: str) -> Any:
        if not name:
            raise RegistryLookupError(
                f"{self._key} is empty: {self._how_to_set}. Registered {self._name.lower()}s: "
                f"{', '.join(self.registered_names()) or '(none)'}"
            )
        if name not in self._obj_map and self._unimportable:
            module, error = next(iter(self._unimportable.items()))
            others = [m for m in self._unimportable if m != module]
            raise ImportError(
                f'No object named "{name}" in the {self._name} registry, and module {module}, '
                f"which may define it, failed to import: {type(error).__name__}: {error}"
                + (f" (also failed: {', '.join(others)})" if others else "")
                + f". Registered names: {', '.join(self.registered_names()) or '(none)'}"
            ) from error
        if name not in self._obj_map:
            known = self.registered_names()
            raise RegistryLookupError(
                f'No object named "{name}" in the {self._name} registry.'
                f"{did_you_mean(name, known, cutoff=0.0)} "
                f"Registered names: {', '.join(known) or '(none)'}"
            )
        return self._obj_map[name]

    def build(self, name: str, *args: Any, verbose: bool = False, **kwargs: Any) -> Any:
        """Instantiate the entry ``name`` with ``args`` and ``kwargs`` (the one body of every
        ``build_x``); ``verbose`` prints upstream's "Loading <kind>: <name>" line."""
        obj = self.get(name)
        if verbose:
            print(f"Loading {self._name.lower()}: {name}")
        return obj(*args, **kwargs)

    def registered_names(self) -> list[str]:
        return sorted(self._obj_map)

    def __contains__(self, name: object) -> bool:
        return name in self._obj_map

    def __repr__(self) -> str:
        return f"Registry({self._name!r}, {self.registered_names()})"


def import_submodules(
    package: str, path: Iterable[str], isolate_in: Registry | None = None
) -> None:
    """Import every module of ``package`` (``path`` is its ``__path__``), so that each one
    registers what it defines: adding a file is all it takes, with no import list to keep.

    With ``isolate_in``, a module that fails to import is reported by name and noted in that
    registry (asking it for a missing name raises the module's error); the others still load.

    The module being run with ``python -m`` is left to runpy, which would otherwise find it
    imported already and warn that it may run twice."""
    argv = sys.orig_argv
    running = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else None
    for module in pkgutil.iter_modules(path):
        name = f"{package}.{module.name}"
        if name == running:
            continue
        if isolate_in is None:
            importlib.import_module(name)
            continue
        try:
            importlib.import_module(name)
        except Exception as error:
            print(
                f"Warning: {name} failed to import ({type(error).__name__}: {error}); "
                "the other modules are loaded"
            )
            isolate_in.note_unimportable(name, error)
