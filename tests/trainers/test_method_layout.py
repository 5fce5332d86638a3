"""Methods live in trainers/methods/, apart from the shared plumbing; one method file that fails
to import is reported by name and leaves the others working."""

import sys
from pathlib import Path

import pytest

from dassl.utils.registry import import_submodules

GOOD = """
from toy_methods import REGISTRY

@REGISTRY.register()
class GoodMethod:
    pass
"""


def test_a_broken_method_module_is_named_and_the_others_keep_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    package = tmp_path / "toy_methods"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from dassl.utils.registry import Registry\nREGISTRY = Registry('TRAINER')\n"
    )
    (package / "good.py").write_text(GOOD)
    (package / "broken.py").write_text("import a_module_that_does_not_exist\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import toy_methods

    registry = toy_methods.REGISTRY
    import_submodules("toy_methods", toy_methods.__path__, isolate_in=registry)
    assert "toy_methods.broken failed to import" in capsys.readouterr().out
    assert registry.get("GoodMethod").__name__ == "GoodMethod"
    with pytest.raises(
        ImportError, match="toy_methods.broken.*a_module_that_does_not_exist"
    ) as err:
        registry.get("BrokenMethod")
    assert isinstance(err.value.__cause__, ModuleNotFoundError)
    for name in [m for m in sys.modules if m.startswith("toy_methods")]:
        monkeypatch.delitem(sys.modules, name)


def test_methods_are_apart_from_the_shared_plumbing() -> None:
    import trainers
    from dassl.engine import TRAINER_REGISTRY

    root = Path(trainers.__file__).parent
    for name in TRAINER_REGISTRY.registered_names():
        module = sys.modules[TRAINER_REGISTRY.get(name).__module__]
        if module.__name__.startswith("trainers."):
            assert Path(module.__file__).parent == root / "methods", name
