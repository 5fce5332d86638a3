"""Name -> class registries, so configs can name trainers, datasets and evaluators as strings."""

from typing import Any

from .tools import did_you_mean


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
            raise KeyError(
                f'No object named "{name}" in the {self._name} registry.'
                f"{did_you_mean(name, known, cutoff=0.0)} "
                f"Registered names: {', '.join(known) or '(none)'}"
            )
        return self._obj_map[name]

    def registered_names(self) -> list[str]:
        return sorted(self._obj_map)

    def __contains__(self, name: object) -> bool:
        return name in self._obj_map

    def __repr__(self) -> str:
        return f"Registry({self._name!r}, {self.registered_names()})"
