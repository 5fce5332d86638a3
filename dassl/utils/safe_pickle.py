"""Pickle I/O for dataset caches that never runs code from the file.

Few-shot caches (``split_fewshot/shot_K-seed_S.pkl``) and ImageNet's ``preprocessed.pkl`` hold
lists of ``Datum``. They may come from upstream Dassl or from a shared drive, so they are read with
an unpickler that only admits the few classes such files contain; a crafted file that names any
other callable (``os.system``, ``builtins.eval``, ...) is refused before anything runs.
"""

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
    # protocol 0/1 pickles spell these with Python 2 module names
    ("__builtin__", "object"),
    ("copy_reg", "_reconstructor"),
    ("dassl.data.datasets.base_dataset", "Datum"),
}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that references a global outside the allowed set."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f'Refused to load "{self._source}": it references {module}.{name}, which a '
                "dataset cache never contains (only lists/dicts of Datum are allowed). The file "
                "may have been tampered with: delete it and the cache will be rebuilt."
            )
        return super().find_class(module, name)


def load_pickle(path: PathLike) -> Any:
    """Load a dataset cache pickle through the restricted unpickler."""
    with open(path, "rb") as f:
        return _RestrictedUnpickler(f, str(path)).load()


def save_pickle(obj: Any, path: PathLike) -> None:
    """Write ``obj`` atomically, so an interrupted run never leaves a truncated cache."""
    with atomic_write(path, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
