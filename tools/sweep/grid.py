"""Grid files: a sweep of train.py runs declared in YAML (``configs/grids/*.yaml``).

A grid names a trainer, a config file, datasets, shot counts and seeds; every combination is a
*cell*, one ``python train.py ... --skip-finished`` run. The paper's per-cell choices (learning
rate, epochs, alpha) are variables that rules set per dataset, shot count or seed, and templates
(``{dataset}``, ``{shots}``, ``{seed}``, ``{dataset_name}``, ``{config_name}``, ``{output_root}``
and the variables) build the config file name, the extra flags, the ``KEY VALUE`` overrides and
the output folder, so the folders are the ones the ``scripts/*/main.sh`` scripts write.

A grid is one stage, or a list of ``stages`` run one after the other (an evaluation stage reads
the models the training stage wrote). Keys given at the top level are defaults for every stage.
A stage's templates may name an earlier stage's run folder for the same dataset, shot count and
seed as ``{output[<stage name>]}`` (TaskRes* reads the base its own seed's first stage built). A
``when`` (axes and variables -> values) may test variables as well as axes: in a rule it sets
variables, on a stage it keeps only the cells it matches, so one variable can choose between
stages and settings (e.g. enhanced bases built here or released ones).
"""

from __future__ import annotations

import itertools
import os
import re
import string
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import dataset_configs

REPO = Path(__file__).resolve().parents[2]
DATASET_CONFIGS = dataset_configs.DATASET_CONFIGS
TRAINER_CONFIGS = REPO / "configs" / "trainers"

STAGE_KEYS = ("name", "trainer", "config", "datasets", "shots", "seeds", "vars", "rules", "args",
              "opts", "output", "when", "search")  # fmt: skip
GRID_KEYS = (*STAGE_KEYS, "description", "stages")
RULE_KEYS = ("when", "vars")
SEARCH_KEYS = ("space", "val", "output")
# Which val split scores a search's candidates: the runs' own few-shot val split (CoOp's
# min(K, 4) images per class, the full val split without NUM_SHOTS).
# The val split a search scores candidates on: the runs' few-shot val (CoOp's min(K, 4) per
# class), or K per class (LP++'s).
SEARCH_VALS = ("fewshot", "kshot")
AXES = ("dataset", "shots", "seed")


class GridError(ValueError):
    """A grid file or a filter that cannot be used; the message names the file, the key and the
    fix."""


@dataclass(frozen=True)
class Cell:
    """One run of the grid: train.py's arguments and the folder it writes."""

    stage: str
    dataset: str
    shots: int | None
    seed: int | None
    output_dir: Path
    argv: tuple[str, ...]
    # A search's candidate: its values of the searched variables, and the folder of the test
    # evaluation of its (dataset, shots, seed)'s winner.
    candidate: tuple[tuple[str, str], ...] = ()
    winner_dir: Path | None = None

    @property
    def label(self) -> str:
        parts = [self.dataset]
        if self.shots is not None:
            parts.append(f"{self.shots}-shot")
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        if self.candidate:
            parts.append(f"[{', '.join(f'{k}={v}' for k, v in self.candidate)}]")
        return " ".join(parts)


@dataclass(frozen=True)
class Rule:
    when: dict[str, tuple]
    vars: dict[str, Any]

    def matches(self, facts: Mapping[str, Any]) -> bool:
        """Whether the cell's axes and variables (``facts``) hold one of the listed values for
        every key of ``when`` (compared as text: a variable given by --var is a string)."""
        return matches(self.when, facts)


def matches(when: Mapping[str, tuple], facts: Mapping[str, Any]) -> bool:
    return all(str(facts.get(key)) in map(str, values) for key, values in when.items())


@dataclass(frozen=True)
class Search:
    """A search of hyperparameters on val: every candidate (one value per variable of
    ``space``) is a cell that trains and tests the val split; per (dataset, shots, seed) the one
    with the best val accuracy wins, and only it is tested, into the folder ``output`` names."""

    space: dict[str, tuple[str, ...]]
    val: str
    output: str

    def candidates(self) -> list[dict[str, str]]:
        """Every combination of the space's values, in the grid's order (the first wins ties)."""
        names = list(self.space)
        return [dict(zip(names, values)) for values in itertools.product(*self.space.values())]


@dataclass
class Stage:
    name: str
    trainer: str
    config: str
    datasets: list[str]
    shots: list[int] | None
    seeds: list[int] | None
    vars: dict[str, Any] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    opts: dict[str, Any] = field(default_factory=dict)
    output: str = ""
    when: dict[str, tuple] = field(default_factory=dict)  # axis or variable -> values kept
    search: Search | None = None


@dataclass
class Grid:
    path: Path
    name: str
    description: str
    stages: list[Stage]

    def axis_values(self, axis: str) -> list:
        """Every value an axis takes in some stage, in grid order."""
        seen: dict = {}
        for stage in self.stages:
            for value in _stage_axis(stage, axis) or ():
                seen.setdefault(value, None)
        return list(seen)


def _stage_axis(stage: Stage, axis: str) -> list | None:
    return {"dataset": stage.datasets, "shots": stage.shots, "seed": stage.seeds}[axis]


def load_grid(path: str | Path) -> Grid:
    """Read and check a grid file (every problem is named before any run starts)."""
    path = Path(path)
    if not path.is_file():
        shipped = sorted(p.stem for p in (REPO / "configs" / "grids").glob("*.yaml"))
        raise GridError(
            f'Grid file "{path}" does not exist. Shipped grids (configs/grids/): '
            f"{', '.join(shipped)}."
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise GridError(f'Grid file "{path}" is not valid YAML: {err}') from err
    if not isinstance(data, dict):
        raise GridError(f'Grid file "{path}" must hold a mapping of keys ({", ".join(GRID_KEYS)}).')
    _check_keys(data, GRID_KEYS, f'grid file "{path}"')
    defaults = {k: v for k, v in data.items() if k in STAGE_KEYS}
    raw_stages = data.get("stages", [{}])
    if not isinstance(raw_stages, list) or not raw_stages:
        raise GridError(f'"stages" in grid file "{path}" must be a non-empty list of mappings.')
    stages = []
    for index, raw in enumerate(raw_stages):
        where = f'stage {index + 1} of grid file "{path}"'
        if not isinstance(raw, dict):
            raise GridError(f"{where} must be a mapping of keys ({', '.join(STAGE_KEYS)}).")
        _check_keys(raw, STAGE_KEYS, where)
        stages.append(_parse_stage({**defaults, **raw}, path.stem, where))
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise GridError(f'Stages of grid file "{path}" need distinct names; got {names}.')
    return Grid(path, path.stem, str(data.get("description", "")).strip(), stages)


def _check_keys(data: Mapping, allowed: Sequence[str], where: str) -> None:
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise GridError(f"Unknown key {unknown[0]!r} in {where}; known keys: {', '.join(allowed)}.")


def _parse_stage(raw: dict, default_name: str, where: str) -> Stage:
    for key in ("trainer", "config", "datasets", "output"):
        if not raw.get(key):
            raise GridError(f'{where} has no "{key}"; every stage needs one.')
    variables = _mapping(raw.get("vars"), f'"vars" of {where}')
    rules = []
    for i, rule in enumerate(raw.get("rules") or []):
        rule_where = f"rule {i + 1} of {where}"
        if not isinstance(rule, dict) or not isinstance(rule.get("when"), dict):
            raise GridError(f'{rule_where} must be a mapping with "when" and "vars".')
        _check_keys(rule, RULE_KEYS, rule_where)
        when = _when(rule["when"], variables, f'"when" of {rule_where}')
        rules.append(Rule(when, _mapping(rule.get("vars"), f'"vars" of {rule_where}')))
    args = raw.get("args") or []
    if not isinstance(args, list):
        raise GridError(f'"args" of {where} must be a list of train.py arguments.')
    when = _when(_mapping(raw.get("when"), f'"when" of {where}'), variables, f'"when" of {where}')
    return Stage(
        name=str(raw.get("name") or default_name),
        trainer=str(raw["trainer"]),
        config=str(raw["config"]),
        datasets=[str(d) for d in _list(raw["datasets"], "datasets", where)],
        shots=_int_list(raw.get("shots"), "shots", where),
        seeds=_int_list(raw.get("seeds"), "seeds", where),
        vars=variables,
        rules=rules,
        args=[str(a) for a in args],
        opts=_mapping(raw.get("opts"), f'"opts" of {where}'),
        output=str(raw["output"]),
        when=when,
        search=_search(raw.get("search"), where),
    )


def _search(raw: Any, where: str) -> Search | None:
    """The stage's ``search`` (space: variable -> values; val; output: the winner's folder)."""
    if raw is None:
        return None
    where = f'"search" of {where}'
    if not isinstance(raw, dict):
        raise GridError(f"{where} must be a mapping of keys ({', '.join(SEARCH_KEYS)}).")
    _check_keys(raw, SEARCH_KEYS, where)
    space = _mapping(raw.get("space"), f'"space" of {where}')
    if not space:
        raise GridError(f'{where} needs a "space": variable -> list of values to try.')
    for name, values in space.items():
        if not isinstance(values, list) or not values or len(set(map(str, values))) < len(values):
            raise GridError(
                f'"space" {name} of {where} must be a non-empty list of distinct values; got '
                f"{values!r}."
            )
    val = raw.get("val", SEARCH_VALS[0])
    if val not in SEARCH_VALS:
        raise GridError(f'"val" of {where} is {val!r}; choose one of {SEARCH_VALS}.')
    winner = raw.get("output")
    if not winner:
        raise GridError(f'{where} has no "output": the folder of each winner\'s test evaluation.')
    fields = {name for _, name, _, _ in string.Formatter().parse(str(winner)) if name}
    searched = sorted(fields & set(space))
    if searched:
        raise GridError(
            f'"output" of {where} names the searched variable {searched[0]}, which is only '
            "known once the winner is chosen; one folder holds each winner (its value is in "
            "the search report and the result record)."
        )
    return Search({k: tuple(map(str, v)) for k, v in space.items()}, val, str(winner))


def _when(raw: Mapping[str, Any], variables: Mapping[str, Any], where: str) -> dict[str, tuple]:
    """A ``when`` mapping (axis or variable -> a value or a list of values)."""
    unknown = [k for k in raw if k not in AXES and k not in variables]
    if unknown:
        raise GridError(
            f"{where} names {unknown[0]!r}, which is neither an axis ({', '.join(AXES)}) nor "
            f"a variable ({', '.join(variables) or 'none'})."
        )
    return {key: tuple(v if isinstance(v, list) else [v]) for key, v in raw.items()}


def _list(value: Any, key: str, where: str) -> list:
    if not isinstance(value, list) or not value:
        raise GridError(f'"{key}" of {where} must be a non-empty list.')
    return value


def _int_list(value: Any, key: str, where: str) -> list[int] | None:
    """An axis that may be left out: no --seed for zero-shot, no shot count for evaluations."""
    if value is None:
        return None
    values = _list(value, key, where)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise GridError(f'"{key}" of {where} must list whole numbers; got {values}.')
    return values


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GridError(f"{where} must be a mapping.")
    return dict(value)


def dataset_name(dataset: str) -> str:
    """The registered DATASET.NAME in configs/datasets/<dataset>.yaml (e.g. dtd ->
    DescribableTextures), which the released enhanced bases are filed under."""
    try:
        return dataset_configs.dataset_name(dataset)
    except dataset_configs.DatasetConfigError as err:
        raise GridError(str(err)) from None


# An earlier stage's run folder, the one index a template may take: {output[<stage name>]}.
EARLIER_OUTPUT_FIELD = re.compile(r"output\[[A-Za-z_][A-Za-z0-9_-]*\]")


def _check_fields(template: str, where: str) -> None:
    """Only plain ``{name}`` fields (and ``{output[<stage>]}``): no attribute or other index
    access, conversion or format spec, which would let a grid file reach into Python objects
    (``{dataset.__class__}``)."""
    for _, field_name, spec, conversion in string.Formatter().parse(template):
        if field_name is None:
            continue
        plain = field_name.isidentifier() or EARLIER_OUTPUT_FIELD.fullmatch(field_name)
        if not plain or spec or conversion:
            raise GridError(
                f"{where} is {template!r}: templates allow only plain {{name}} fields such as "
                "{dataset}, {shots}, {seed}, a variable's name or {output[<stage>]} (no "
                "attribute or other index access, conversion or format spec)."
            )


def _format(template: Any, context: Mapping[str, Any], where: str) -> str:
    try:
        _check_fields(str(template), where)
        return str(template).format_map(context)
    except KeyError as err:
        raise GridError(
            f"{where} uses {{{err.args[0]}}}, which this cell does not define; defined here: "
            f"{', '.join(context.names())}."
        ) from None
    except (IndexError, ValueError) as err:
        raise GridError(f"{where} is not a valid template ({template!r}): {err}") from None


def _selected(values: list | None, wanted: Iterable | None) -> list:
    if values is None:
        return [None]
    if wanted is None:
        return list(values)
    keep = set(wanted)
    return [v for v in values if v in keep]


def check_filters(grid: Grid, filters: Mapping[str, Sequence | None]) -> None:
    """Refuse filter values that no stage of the grid has (a typo would otherwise run nothing)."""
    for axis, wanted in filters.items():
        if wanted is None:
            continue
        known = grid.axis_values(axis)
        unknown = [v for v in wanted if v not in known]
        if unknown:
            raise GridError(
                f"{axis} {unknown[0]} is not in grid {grid.path}; its {axis} values are: "
                f"{' '.join(map(str, known))}."
            )


def absolute_output_root(path: str | Path) -> Path:
    """The output root as an absolute path without ``..``: the one spelling the cells' folders
    are built on and compared with."""
    return Path(os.path.normpath(Path(path).expanduser().absolute()))


def expand(
    grid: Grid,
    root: str | Path,
    output_root: str | Path,
    datasets: Sequence[str] | None = None,
    shots: Sequence[int] | None = None,
    seeds: Sequence[int] | None = None,
    variables: Mapping[str, str] | None = None,
    overrides: Sequence[str] = (),
) -> list[list[Cell]]:
    """The cells of each stage, in the scripts' order (shots, then datasets, then seeds).

    ``variables`` win over the grid's variables and rules; ``overrides`` (KEY VALUE pairs) come
    last on every cell's command line, so they win over the grid's own overrides.
    """
    check_filters(grid, {"dataset": datasets, "shots": shots, "seed": seeds})
    output_root = absolute_output_root(output_root)
    stages = []
    for index, stage in enumerate(grid.stages):
        cells = []
        for n_shots, dataset, seed in itertools.product(
            _selected(stage.shots, shots), _selected(stage.datasets, datasets),
            _selected(stage.seeds, seeds),
        ):  # fmt: skip
            axes = {"dataset": dataset, "shots": n_shots, "seed": seed}
            earlier = EarlierOutputs(grid, index, axes, output_root, variables or {})
            for candidate in stage.search.candidates() if stage.search else [{}]:
                cell = _cell(
                    grid, stage, axes, str(root), output_root, variables or {}, overrides,
                    earlier, candidate,
                )  # fmt: skip
                if cell is not None:
                    cells.append(cell)
        stages.append(cells)
    if not any(stages):
        whens = "; ".join(f"{s.name}: {dict(s.when)}" for s in grid.stages if s.when)
        raise GridError(
            f'No cell of grid {grid.path} matches its stages\' "when" ({whens}); check the '
            "values given with --var."
        )
    _check_distinct_folders(grid, [cell for cells in stages for cell in cells])
    return stages


class EarlierOutputs(Mapping):
    """``{output[<stage>]}``: the run folder an earlier stage writes for the same axes."""

    def __init__(
        self,
        grid: Grid,
        index: int,
        axes: dict[str, Any],
        output_root: Path,
        variables: Mapping[str, str],
    ) -> None:
        self.grid, self.index, self.axes = grid, index, axes
        self.output_root, self.variables = output_root, variables

    def __getitem__(self, name: str) -> str:
        earlier = {s.name: i for i, s in enumerate(self.grid.stages[: self.index])}
        if name not in earlier:
            raise GridError(
                f'{{output[{name}]}} in stage "{self.grid.stages[self.index].name}" of grid file '
                f'"{self.grid.path}" names no earlier stage; earlier stages: '
                f"{', '.join(earlier) or 'none'}."
            )
        index = earlier[name]
        stage = self.grid.stages[index]
        theirs = EarlierOutputs(self.grid, index, self.axes, self.output_root, self.variables)
        values = stage_values(stage, self.axes, self.variables)
        context = _context(self.grid, stage, self.axes, self.output_root, values, theirs)
        where = f'"output" of {_where(self.grid, stage)}'
        # a search's later stages read its winner's folder
        template = stage.search.output if stage.search else stage.output
        return str(_output_dir(template, context, self.output_root, where))

    def __iter__(self) -> Iterator[str]:
        return iter(s.name for s in self.grid.stages[: self.index])

    def __len__(self) -> int:
        return self.index


def _where(grid: Grid, stage: Stage) -> str:
    return f'stage "{stage.name}" of grid file "{grid.path}"'


def stage_values(
    stage: Stage, axes: Mapping[str, Any], variables: Mapping[str, str]
) -> dict[str, Any]:
    """The stage's variables for this cell, unformatted: the grid's, then the rules that match
    the axes and variables, then --var (which wins, and is what rules test)."""
    values = {**stage.vars, **variables}
    facts = {**values, **axes}
    for rule in stage.rules:
        if rule.matches(facts):
            values.update(rule.vars)
    values.update(variables)
    return values


class CellContext(dict):
    """What a cell's templates may use: the axes, the dataset's registered name, the output
    root, earlier stages' folders (``output``), ``config_name`` and the variables. A variable is
    formatted when a template first uses it, so one that names another stage's folder is only
    read by the stages that use it."""

    def __init__(self, fixed: dict[str, Any], values: Mapping[str, Any], where: str) -> None:
        super().__init__(fixed)
        self.unformatted = dict(values)
        self.where = where

    def __missing__(self, name: str) -> str:
        if name not in self.unformatted:
            raise KeyError(name)
        template = self.unformatted.pop(name)  # a variable using itself is then undefined
        self[name] = _format(template, self, f'variable "{name}" of {self.where}')
        return self[name]

    def names(self) -> list[str]:
        return sorted({*self, *self.unformatted})


def _context(
    grid: Grid,
    stage: Stage,
    axes: dict[str, Any],
    output_root: Path,
    values: Mapping[str, Any],
    earlier: Mapping[str, str],
) -> CellContext:
    where = _where(grid, stage)
    fixed: dict[str, Any] = {k: v for k, v in axes.items() if v is not None}
    fixed["dataset_name"] = dataset_name(axes["dataset"])
    fixed["output_root"] = str(output_root)
    fixed["output"] = earlier
    context = CellContext(fixed, values, where)
    config = _format(stage.config, context, f'"config" of {where}')
    config_file = TRAINER_CONFIGS / f"{config}.yaml"
    if not config_file.is_file():
        raise GridError(
            f"{where} names configs/trainers/{config}.yaml for {axes['dataset']}, which does "
            'not exist. Fix the grid\'s "config" (configs/trainers/<trainer>/<name>, no .yaml).'
        )
    context["config_file"] = config_file
    context["config_name"] = config_file.stem
    return context


def _check_distinct_folders(grid: Grid, cells: Sequence[Cell]) -> None:
    """Two cells writing one folder would train over each other: refuse the grid, naming both
    cells and the axes its "output" template must tell apart."""
    owners: dict[Path, Cell] = {}
    for cell in cells:
        first = owners.setdefault(cell.output_dir, cell)
        if first is cell:
            continue
        axes = [
            f"{{{axis}}}"
            for axis, a, b in (
                ("dataset", first.dataset, cell.dataset),
                ("shots", first.shots, cell.shots),
                ("seed", first.seed, cell.seed),
            )
            if a != b
        ]
        stages = "" if first.stage == cell.stage else f' (stages "{first.stage}", "{cell.stage}")'
        axes += [
            f"{{{name}}}" for (name, a), (_, b) in zip(first.candidate, cell.candidate) if a != b
        ]
        fix = f"add {' and '.join(axes)} to" if axes else "make the cells differ in"
        raise GridError(
            f'Grid file "{grid.path}" maps the cells {first.label} and {cell.label}{stages} to '
            f'one folder, {cell.output_dir}; {fix} the "output" template so that each cell '
            "writes its own folder."
        )
    winners: dict[Path, Cell] = {}
    for cell in cells:
        if cell.winner_dir is None:
            continue
        first = winners.setdefault(cell.winner_dir, cell)
        group, first_group = (
            (cell.dataset, cell.shots, cell.seed),
            (first.dataset, first.shots, first.seed),
        )
        if cell.winner_dir in owners or group != first_group:
            raise GridError(
                f'Grid file "{grid.path}": the "output" of the search of stage "{cell.stage}" '
                f"gives {cell.label} the winner folder {cell.winner_dir}, which another cell or "
                "winner writes too; add {dataset}, {shots} and {seed} to it, and make it differ "
                'from the stage\'s own "output".'
            )


def _output_dir(template: str, context: Mapping[str, Any], output_root: Path, where: str) -> Path:
    """The run folder: strictly below the output root (``..`` and absolute paths elsewhere are
    refused, so that --output-root decides where a grid writes, and the run folder never holds
    another run's folders)."""
    relative = _format(template, context, where)
    folder = Path(os.path.normpath(output_root / relative))
    if folder == output_root or not folder.is_relative_to(output_root):
        raise GridError(
            f"{where} is {template!r}, which gives {folder}: not a folder below the output root "
            f"{output_root}. Make it a relative path without '..' (e.g. "
            "'{dataset}/shots{shots}/seed{seed}'), and pass --output-root to write elsewhere."
        )
    return folder


def _cell(
    grid: Grid,
    stage: Stage,
    axes: dict[str, Any],
    root: str,
    output_root: Path,
    variables: Mapping[str, str],
    overrides: Sequence[str],
    earlier: Mapping[str, str],
    candidate: Mapping[str, str],
) -> Cell | None:
    """The cell of ``stage`` at ``axes`` (for a search, of one ``candidate``: its values win over
    the grid's variables and rules), or None where the stage's ``when`` leaves it out."""
    where = _where(grid, stage)
    values = stage_values(stage, axes, {**variables, **candidate})
    if not matches(stage.when, {**values, **axes}):
        return None
    context = _context(grid, stage, axes, output_root, values, earlier)
    config_file = context.pop("config_file")
    output_dir = _output_dir(stage.output, context, output_root, f'"output" of {where}')
    argv = ["--root", root]
    if axes["seed"] is not None:
        argv += ["--seed", str(axes["seed"])]
    argv += [
        "--trainer", stage.trainer,
        "--dataset-config-file", str(DATASET_CONFIGS / f"{axes['dataset']}.yaml"),
        "--config-file", str(config_file),
        "--output-dir", str(output_dir),
        "--skip-finished",
    ]  # fmt: skip
    argv += [_format(arg, context, f'"args" of {where}') for arg in stage.args]
    for key, value in stage.opts.items():
        argv += [key, _format(value, context, f'"opts" {key} of {where}')]
    argv += list(overrides)
    winner_dir = None
    if stage.search is not None:
        argv += ["TEST.SPLIT", "val"]  # a candidate is scored on val and never tested
        if stage.search.val == "kshot":
            argv += ["DATASET.VAL_SHOTS", "shots"]
        where = f'"output" of "search" of {where}'
        winner_dir = _output_dir(stage.search.output, context, output_root, where)
    return Cell(
        stage.name, axes["dataset"], axes["shots"], axes["seed"], output_dir, tuple(argv),
        tuple(candidate.items()), winner_dir,
    )  # fmt: skip
