"""The install files agree with each other, so a researcher's `pip install` never swaps out their
torch and CI tests what the README tells people to type."""

from __future__ import annotations

import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
TEST_TOOLS = {"pytest", "ruff", "setuptools"}
CI_INSTALL = "python3 -m pip install -q -c constraints.txt -r requirements-test.txt"


def read_requirements(name: str) -> list[Requirement]:
    """The requirements in `name`, following `-r` includes."""
    requirements = []
    for raw in (REPO / name).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            requirements += read_requirements(line[3:].strip())
        elif line:
            requirements.append(Requirement(line))
    return requirements


def read_pins() -> dict[str, Version]:
    """constraints.txt as {canonical name: pinned version}."""
    pins = {}
    for raw in (REPO / "constraints.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin; write NAME==VERSION"
            pins[canonicalize_name(name)] = Version(version)
    return pins


def floors() -> dict[str, str]:
    return {
        canonicalize_name(r.name): next(iter(r.specifier)).version
        for r in read_requirements("requirements.txt")
    }


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", (REPO / "README.md").read_text(), re.S)


def test_runtime_requirements_are_floors_without_test_tools() -> None:
    for requirement in read_requirements("requirements.txt"):
        operators = [spec.operator for spec in requirement.specifier]
        assert operators == [">="], (
            f"requirements.txt: {requirement} must be a single floor (NAME>=OLDEST_TESTED); "
            "exact pins belong in constraints.txt"
        )
        assert canonicalize_name(requirement.name) not in TEST_TOOLS, (
            f"requirements.txt: {requirement.name} is a test tool; move it to requirements-test.txt"
        )


def test_constraints_pin_every_requirement_inside_its_range() -> None:
    pins = read_pins()
    for requirement in read_requirements("requirements-test.txt"):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"constraints.txt: no pin for {requirement.name}; regenerate it"
        assert requirement.specifier.contains(pins[name]), (
            f"constraints.txt: {name}=={pins[name]} is outside {requirement}; regenerate it"
        )


def test_readme_names_the_floor_and_the_ci_versions() -> None:
    readme = (REPO / "README.md").read_text()
    pins = read_pins()
    for package in ("torch", "torchvision"):
        assert f"{package} {floors()[package]}" in readme, f"README.md: state the {package} floor"
        assert f"{package} {pins[package]}" in readme, f"README.md: state CI's {package}"


def test_ci_runs_the_readme_test_command_after_the_pinned_install() -> None:
    demo, tests = readme_commands()[:2]
    assert demo == "python3 -m pip install -r requirements.txt && bash scripts/demo.sh"
    assert tests.startswith("python3 -m pip install -r requirements-test.txt && ")
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert tests in ci, ".ci/run: run the README's test command verbatim"
    assert CI_INSTALL in ci[: ci.index(tests)], ".ci/run: install the pinned set before it"
