"""Pickle I/O for dataset caches that never runs code from the file.

Few-shot caches (``split_fewshot/shot_K-seed_S.pkl``) and ImageNet's ``preprocessed.pkl`` hold
lists of ``Datum``. They may come from upstream Dassl or from a shared drive, so they are read with
an unpickler that only admits the few classes such files contain; a crafted file that names any
other callable (``os.system``, ``builtins.eval``, ...) is refused before anything runs.
"""

import _compat_pickle
import importlib
import pickle
from typing import Any

from .tools import PathLike, atomic_write

_ALLOWED_GLOBALS = {
    ("builtins", "list"),
    ("builtins", "dict"),
    ("builtins", "tuple"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "object"),
    ("collections", "OrderedDict"),
    ("copyreg", "_reconstructor"),
    ("dassl.data.datasets.base_dataset", "Datum"),
}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that references a global outside the allowed set."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves globals only through ``allowed_global``, so a file can name no
    callable outside its reader's allowlist. Python 2 names (``__builtin__``, ``copy_reg``) that
    protocol 0-2 pickles use are mapped to Python 3's first, as pickle itself does."""

    def allowed_global(self, module: str, name: str) -> Any | None:
        """The object ``module.name`` stands for when the file may use it, else None."""
        raise NotImplementedError

    def refusal(self, module: str, name: str) -> str:
        """The error message for a global the file may not use."""
        raise NotImplementedError

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        obj = self.allowed_global(module, name)
        if obj is None:
            raise UnsafePickleError(self.refusal(module, name))
        return obj


class _DatasetCacheUnpickler(RestrictedUnpickler):
    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file)
        self._source = source

    def allowed_global(self, module: str, name: str) -> Any | None:
        if (module, name) not in _ALLOWED_GLOBALS:
            return None
        return getattr(importlib.import_module(module), name)

    def refusal(self, module: str, name: str) -> str:
        return (
            f'Refused to load "{self._source}": it references {module}.{name}, which a '
            "dataset cache never contains (only lists/dicts of Datum are allowed). The file "
            "may have been tampered with: delete it and the cache will be rebuilt."
        )


def load_pickle(path: PathLike) -> Any:
    """Load a dataset cache pickle through the restricted unpickler."""
    with open(path, "rb") as f:
        return _DatasetCacheUnpickler(f, str(path)).load()


def save_pickle(obj: Any, path: PathLike) -> None:
    """Write ``obj`` atomically, so an interrupted run never leaves a truncated cache."""
    with atomic_write(path, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
