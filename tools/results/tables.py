"""The paper's tables from finished runs: methods x datasets at one shot count, methods x shots
averaged over datasets, base-to-new with the harmonic mean, and domain generalisation.

Runs are grouped into cells by their facts (``runs.RunFacts``): a row is a method variant, and
runs that differ in backbone, protocol or selection get rows of their own (the label names the
difference).
Every cell holds one value per seed and shows mean ± spread and the number of seeds. An average
over datasets is taken per seed (the mean over datasets of seed s), over the seeds every dataset
has, so its spread is the spread over seeds of the average, as a paper reports it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .runs import (
    DG_SOURCE,
    DG_TARGETS,
    FULL_DATA,
    METHOD_TITLES,
    Record,
    ResultsError,
    backbone_title,
    dataset_order,
    dataset_title,
)
from .selection import GIVEN_EPOCH, UNRECORDED

Seed = int | None
LOWER_IS_BETTER = ("error",)  # metrics whose best value is the smallest


def mean_and_spread(values: list[float], ci95: bool = False) -> tuple[float, float]:
    """Mean and population std (upstream's convention), or the 95% confidence half-width."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
    return mean, (1.96 * std / math.sqrt(n) if ci95 else std)


@dataclass(frozen=True)
class Stat:
    """A table cell. ``spread`` is None for a single seed (there is none to measure) and for
    derived numbers such as the harmonic mean, which also have no ``seeds``."""

    mean: float
    spread: float | None = None
    seeds: int | None = None
    datasets: int | None = None  # an average: how many datasets it covers
    partial: bool = False  # an average over fewer datasets than its table has


def stat_of(values: list[float], ci95: bool = False) -> Stat:
    mean, spread = mean_and_spread(values, ci95)
    return Stat(mean, spread if len(values) > 1 else None, len(values))


def average_of(cells: list[dict[Seed, float]], expected: int, ci95: bool = False) -> Stat | None:
    """The per-seed mean over ``cells`` (one per dataset), over the seeds all of them have;
    ``expected`` is the number of datasets of the table (fewer makes the average partial)."""
    if not cells:
        return None
    seeds = set.intersection(*(set(cell) for cell in cells))
    if not seeds:
        return None
    per_seed = [sum(cell[s] for cell in cells) / len(cells) for s in _sorted_seeds(seeds)]
    base = stat_of(per_seed, ci95)
    return Stat(base.mean, base.spread, base.seeds, len(cells), len(cells) < expected)


def harmonic_mean(base: Stat | None, new: Stat | None) -> Stat | None:
    """Base-to-new's H: 2BN / (B + N) of the mean accuracies."""
    if base is None or new is None or base.mean + new.mean == 0:
        return None
    return Stat(2 * base.mean * new.mean / (base.mean + new.mean))


def _sorted_seeds(seeds: Iterable[Seed]) -> list[Seed]:
    return sorted(seeds, key=lambda s: (s is not None, s or 0))


def shots_title(shots: int) -> str:
    """A column header: ``16-shot``, ``zero-shot``, ``all data``."""
    if shots == 0:
        return "zero-shot"
    return "all data" if shots == FULL_DATA else f"{shots}-shot"


def shots_phrase(shots: int) -> str:
    """In a sentence: ``16 shots``, ``1 shot``, ``zero-shot``, ``all data``."""
    if shots in (0, FULL_DATA):
        return shots_title(shots)
    return f"{shots} shot{'s' if shots != 1 else ''}"


def trained_with(shots: int) -> str:
    """In a caption: ``with 16 shots per class``, ``on all training data``."""
    return "on all training data" if shots == FULL_DATA else f"with {shots_phrase(shots)} per class"


@dataclass(frozen=True)
class Row:
    """A table row: one method variant, labelled as printed."""

    label: str
    order: tuple
    zero_shot: bool


@dataclass(frozen=True)
class CellKey:
    row: Row
    dataset: str
    source: str | None  # the dataset the model was trained on (None: zero-shot)
    shots: int
    subsample: str


@dataclass
class Table:
    """One table, independent of its output format."""

    name: str  # short identifier (CSV's "table" column)
    title: str
    label_headers: list[str]
    columns: list[str]
    rows: list[tuple[list[str], list[Stat | None]]]
    notes: list[str] = field(default_factory=list)
    caption: str = ""  # the title in plain words, for a paper (LaTeX's \caption)
    metric: str = "accuracy"

    @property
    def lower_is_better(self) -> bool:
        return self.metric in LOWER_IS_BETTER


class Results:
    """Finished runs grouped into cells: the metric of each seed, per (row, dataset, source,
    shots, subsample). Runs whose method, dataset or shots are unknown are set aside."""

    def __init__(self, records: list[Record], metric: str, ci95: bool = False) -> None:
        self.metric = metric
        self.ci95 = ci95
        self.skipped: list[Record] = []
        self.cells: dict[CellKey, dict[Seed, float]] = {}
        self.records: dict[CellKey, list[Record]] = {}
        usable = []
        for record in records:
            facts = record.facts
            known = facts.method and facts.dataset and facts.shots is not None
            if known and record.value(metric) is not None:
                usable.append(record)
            else:
                self.skipped.append(record)
        label = _labeller(usable)
        for record in usable:
            facts = record.facts
            key = CellKey(label(record), facts.dataset, facts.source, facts.shots, facts.subsample)
            cell = self.cells.setdefault(key, {})
            others = self.records.setdefault(key, [])
            if facts.seed in cell:
                other = next(r for r in others if r.facts.seed == facts.seed)
                raise ResultsError(_collision_message(key, facts.seed, other, record))
            cell[facts.seed] = record.value(metric)
            others.append(record)

    def keys(self, keep: Callable[[CellKey], bool]) -> list[CellKey]:
        return [key for key in self.cells if keep(key)]

    def default_shots(self, keep: Callable[[CellKey], bool]) -> int | None:
        """The largest shot count of the trained runs ``keep`` selects (the papers' headline)."""
        shots = {k.shots for k in self.keys(keep) if not k.row.zero_shot}
        positive = [s for s in shots if s > 0]
        return max(positive) if positive else (FULL_DATA if shots else None)

    def describe(self, keys: list[CellKey]) -> str:
        """Backbone, protocol and selection of the runs behind ``keys`` when all share one."""
        records = [r for k in keys for r in self.records[k]]
        backbones = {r.facts.backbone for r in records}
        protocols = {r.facts.protocol for r in records if not r.facts.zero_shot}
        selections = {r.facts.selection for r in records if not r.facts.zero_shot}
        parts = []
        if len(backbones) == 1:
            parts.append(f"backbone {backbone_title(backbones.pop())}")
        if len(protocols) == 1:
            parts.append(f"protocol {protocols.pop()}")
        if len(selections) == 1 and (shared := selections.pop()) != UNRECORDED:
            parts.append(f"selection: {', '.join(shared)}")
        return "; ".join(parts)

    def spread_name(self) -> str:
        return "95% CI" if self.ci95 else "std"

    def caption(self, what: str, keys: list[CellKey], more: str = "") -> str:
        """Sentences for a paper: ``Test accuracy (%) <what>, as the mean ± ...``, then ``more``."""
        spread = "95% confidence half-width" if self.ci95 else "standard deviation"
        described = self.describe(keys)
        return (
            f"Test {self.metric.replace('_', ' ')} (%) {what}, as the mean ± {spread} over "
            "seeds, with the number of seeds in parentheses"
            + (f" ({described})" if described else "")
            + "."
            + (f" {more}" if more else "")
        )

    def headline(self, what: str, keys: list[CellKey]) -> str:
        described = self.describe(keys)
        return f"{self.metric} (%) {what}: mean ± {self.spread_name()} over seeds (n = seeds)" + (
            f"; {described}" if described else ""
        )


def _labeller(records: list[Record]) -> Callable[[Record], Row]:
    """Row labels: the method (and variant), plus the backbone, protocol or selection (how the
    epoch and hyperparameters were chosen) when the runs differ in them, plus each --split-by
    value, so such runs never share a cell."""
    backbones = {r.facts.backbone for r in records}
    protocols = {r.facts.protocol for r in records if not r.facts.zero_shot}
    trained = [r.facts.selection for r in records if not r.facts.zero_shot]
    # An evaluation at a named checkpoint is told apart by its checkpoint (evaluations.py).
    epochs = {selection[0] for selection in trained if selection[0] != GIVEN_EPOCH}
    hyperparameters = {selection[1] for selection in trained}
    methods = list(METHOD_TITLES)

    def label(record: Record) -> Row:
        facts = record.facts
        name = METHOD_TITLES.get(facts.method, facts.method)
        if facts.variant:
            name += f" ({facts.variant})"
        qualifiers = []
        if len(backbones) > 1:
            qualifiers.append(backbone_title(facts.backbone))
        if len(protocols) > 1 and not facts.zero_shot:
            qualifiers.append(f"protocol {facts.protocol}")
        if not facts.zero_shot:
            chosen = [
                part
                for part, kinds in zip(facts.selection, (epochs, hyperparameters))
                if len(kinds) > 1 and part != GIVEN_EPOCH
            ]
            qualifiers += [f"selection: {', '.join(chosen)}"] if chosen else []
        qualifiers += [f"{key.rsplit('.', 1)[-1]}={value}" for key, value in facts.extra]
        text = name + (f" [{', '.join(qualifiers)}]" if qualifiers else "")
        rank = methods.index(facts.method) if facts.method in methods else len(methods)
        return Row(text, (rank, text), facts.zero_shot)

    return label


def _collision_message(key: CellKey, seed: Seed, first: Record, second: Record) -> str:
    where = f"{key.row.label} on {dataset_title(key.dataset)}, {shots_phrase(key.shots)}"
    if key.subsample != "all":
        where += f", {key.subsample} classes"
    if seed is not None:
        where += f", seed {seed}"
    if first.config is not None and second.config is not None:
        from dassl.config.run_identity import diff_configs  # torch: see runs._read_config

        differences = [
            d for d in diff_configs(first.config, second.config, {}) if d.key != "RUN.MODEL_DIR"
        ]
    else:
        differences = []
    if differences:
        keys = ", ".join(f"{d.key} ({d.recorded!r} vs {d.requested!r})" for d in differences[:5])
        more = f" and {len(differences) - 5} more" if len(differences) > 5 else ""
        fix = (
            f"give --split-by {differences[0].key} to give each its own row, or point the tool at "
            "a narrower folder"
        )
        why = f"their configs differ in {keys}{more}"
    else:
        why = "nothing recorded tells them apart"
        fix = "point the tool at a narrower folder, or move one of them out of the tree"
    return (
        f"{first.path} and {second.path} land in the same table cell ({where}): {why}. Fix: {fix}."
    )


# ---- the tables ------------------------------------------------------------------------------


def in_domain(key: CellKey) -> bool:
    """Trained and tested on the same dataset (or zero-shot), all classes, no shift test set."""
    return (
        key.subsample == "all"
        and key.dataset not in DG_TARGETS
        and key.source in (None, key.dataset)
    )


def at_shots(shots: int | None) -> Callable[[CellKey], bool]:
    """Runs at ``shots``, and zero-shot runs (which a table at any shot count lists)."""
    return lambda key: key.row.zero_shot or key.shots == shots


def rows_of(keys: list[CellKey]) -> list[Row]:
    return sorted({k.row for k in keys}, key=lambda row: row.order)


def datasets_of(keys: list[CellKey]) -> list[str]:
    return sorted({k.dataset for k in keys}, key=dataset_order)


def _notes(rows: list[tuple[list[str], list[Stat | None]]], averaged: bool) -> list[str]:
    notes = []
    if averaged:
        notes.append("Averages over datasets are taken per seed, over the seeds every dataset has.")
    if any(cell is not None and cell.partial for _, cells in rows for cell in cells):
        notes.append("*: average over the datasets this row has only.")
    return notes


def by_dataset(results: Results, shots: int | None = None) -> Table | None:
    """Methods x datasets at one shot count (default: the largest), with the average; a tree of
    zero-shot runs only gives their table."""
    shots = results.default_shots(in_domain) if shots is None else shots
    keys = results.keys(lambda k: in_domain(k) and at_shots(shots)(k))
    trained = any(not k.row.zero_shot for k in keys)
    if not keys or (shots is not None and not trained):
        return None
    datasets = datasets_of(keys)
    averaged = len(datasets) > 1
    table_rows = []
    for row in rows_of(keys):
        cells = [results.cells.get(find_key(keys, row, d)) for d in datasets]
        stats = [None if c is None else stat_of(list(c.values()), results.ci95) for c in cells]
        if averaged:
            present = [c for c in cells if c is not None]
            stats.append(average_of(present, len(datasets), results.ci95))
        table_rows.append(([row.label], stats))
    plain = "of each method on each dataset" + (
        f", trained {trained_with(shots)}" if trained else ""
    )
    return Table(
        name="by_dataset",
        title=results.headline(f"at {shots_phrase(shots)}" if trained else "zero-shot", keys),
        metric=results.metric,
        caption=results.caption(plain, keys),
        label_headers=["method"],
        columns=[dataset_title(d) for d in datasets] + (["Average"] if averaged else []),
        rows=table_rows,
        notes=_notes(table_rows, averaged),
    )


def by_shots(results: Results) -> Table | None:
    """Methods x shot counts, each cell averaged over the datasets (shown when runs have more than
    one shot count)."""
    keys = results.keys(in_domain)
    trained_shots = {k.shots for k in keys if not k.row.zero_shot}
    if len(trained_shots) < 2:
        return None
    datasets = datasets_of(keys)
    all_shots = sorted({k.shots for k in keys}, key=lambda s: (s == FULL_DATA, s))
    table_rows = []
    for row in rows_of(keys):
        stats = []
        for shots in all_shots:
            cells = [results.cells.get(find_key(keys, row, d, shots)) for d in datasets]
            present = [c for c in cells if c is not None]
            stats.append(average_of(present, len(datasets), results.ci95))
        table_rows.append(([row.label], stats))
    what = f"by shots, averaged over {len(datasets)} dataset{'s' if len(datasets) > 1 else ''}"
    plain = (
        f"of each method by the number of shots per class, averaged over {len(datasets)} "
        f"dataset{'s' if len(datasets) > 1 else ''}"
    )
    return Table(
        name="by_shots",
        title=results.headline(what, keys),
        metric=results.metric,
        caption=results.caption(plain, keys),
        label_headers=["method"],
        columns=[shots_title(s) for s in all_shots],
        rows=table_rows,
        notes=_notes(table_rows, averaged=len(datasets) > 1),
    )


def base_to_new(results: Results, shots: int | None = None) -> Table | None:
    """Base-to-new generalisation (DATASET.SUBSAMPLE_CLASSES base / new): per dataset and method,
    the base and new accuracies and their harmonic mean H; then the average over datasets."""

    def scope(key: CellKey) -> bool:
        return key.subsample in ("base", "new") and key.source in (None, key.dataset)

    shots = results.default_shots(scope) if shots is None else shots
    if shots is None:
        return None
    keys = results.keys(lambda k: scope(k) and at_shots(shots)(k))
    if not keys:
        return None
    datasets = datasets_of(keys)
    rows = rows_of(keys)
    table_rows = []

    def cell(row: Row, dataset: str, subsample: str) -> dict[Seed, float] | None:
        return results.cells.get(find_key(keys, row, dataset, subsample=subsample))

    for dataset in datasets:
        for row in rows:
            pair = [cell(row, dataset, part) for part in ("base", "new")]
            if pair == [None, None]:
                continue
            base, new = (
                None if c is None else stat_of(list(c.values()), results.ci95) for c in pair
            )
            table_rows.append(
                ([dataset_title(dataset), row.label], [base, new, harmonic_mean(base, new)])
            )
    if len(datasets) > 1:
        for row in rows:
            averages = []
            for part in ("base", "new"):
                present = [c for c in (cell(row, d, part) for d in datasets) if c is not None]
                averages.append(average_of(present, len(datasets), results.ci95))
            table_rows.append((["Average", row.label], [*averages, harmonic_mean(*averages)]))
    return Table(
        name="base_to_new",
        title=results.headline(f"base-to-new at {shots_phrase(shots)}", keys)
        + "; H: harmonic mean of the base and new means",
        metric=results.metric,
        caption=results.caption(
            f"on the base and the new classes of each dataset, trained on the base classes "
            f"{trained_with(shots)}",
            keys,
            "H is the harmonic mean of the base and new means.",
        ),
        label_headers=["dataset", "method"],
        columns=["base", "new", "H"],
        rows=table_rows,
        notes=_notes(table_rows, averaged=len(datasets) > 1),
    )


def generalization(results: Results, shots: int | None = None) -> Table | None:
    """Domain generalisation: models trained on ImageNet, tested on ImageNet and its shifted test
    sets V2, Sketch, A and R, with the average over the four targets."""

    def scope(key: CellKey) -> bool:
        return (
            key.subsample == "all"
            and key.dataset in (DG_SOURCE, *DG_TARGETS)
            and key.source in (None, DG_SOURCE)
        )

    shots = (
        results.default_shots(lambda k: scope(k) and k.dataset in DG_TARGETS)
        if shots is None
        else shots
    )
    if shots is None:
        return None
    keys = results.keys(lambda k: scope(k) and at_shots(shots)(k))
    return source_and_targets_table(
        results, keys, list(DG_TARGETS), shots, "generalization", "domain generalisation",
        "its four shifted test sets",
    )  # fmt: skip


def cross_dataset(results: Results, shots: int | None = None) -> Table | None:
    """Cross-dataset transfer (CoCoOp's protocol): models trained on ImageNet with all its
    classes, tested on ImageNet and on the other datasets (the shifted ImageNet test sets go to
    the generalisation table), with the average over the targets present."""

    def scope(key: CellKey) -> bool:
        return key.subsample == "all" and key.source == DG_SOURCE and key.dataset not in DG_TARGETS

    def target(key: CellKey) -> bool:
        return scope(key) and key.dataset != DG_SOURCE

    shots = results.default_shots(target) if shots is None else shots
    if shots is None:
        return None
    keys = results.keys(lambda k: scope(k) and k.shots == shots)
    targets = sorted({k.dataset for k in keys if k.dataset != DG_SOURCE}, key=dataset_order)
    return source_and_targets_table(
        results, keys, targets, shots, "cross_dataset", "cross-dataset transfer",
        "other datasets",
    )  # fmt: skip


def source_and_targets_table(
    results: Results,
    keys: list[CellKey],
    targets: list[str],
    shots: int,
    name: str,
    what: str,
    target_phrase: str,
) -> Table | None:
    """Models trained on ImageNet (``keys``), one row per method that reached a target: the
    source, each target and the average over the targets present (the generalisation and the
    cross-dataset tables)."""
    rows = [r for r in rows_of(keys) if any(k.row == r and k.dataset in targets for k in keys)]
    if not rows:
        return None
    table_rows = []
    for row in rows:
        cells = [results.cells.get(find_key(keys, row, d)) for d in (DG_SOURCE, *targets)]
        stats = [None if c is None else stat_of(list(c.values()), results.ci95) for c in cells]
        present = [c for c in cells[1:] if c is not None]
        stats.append(average_of(present, len(targets), results.ci95))
        table_rows.append(([row.label], stats))
    return Table(
        name=name,
        title=results.headline(f"{what} at {shots_phrase(shots)}", keys)
        + f"; source {dataset_title(DG_SOURCE)}",
        metric=results.metric,
        caption=results.caption(
            f"of models trained on {dataset_title(DG_SOURCE)} {trained_with(shots)}, tested on it "
            f"and on {target_phrase}",
            keys,
        ),
        label_headers=["method"],
        columns=[dataset_title(d) for d in (DG_SOURCE, *targets)] + ["Average (targets)"],
        rows=table_rows,
        notes=_notes(table_rows, averaged=True),
    )


def find_key(
    keys: list[CellKey],
    row: Row,
    dataset: str,
    shots: int | None = None,
    subsample: str | None = None,
) -> CellKey | None:
    """The key among ``keys`` for this row and dataset (and shots / subsample when given)."""
    for key in keys:
        if key.row != row or key.dataset != dataset:
            continue
        if shots is not None and key.shots != shots:
            continue
        if subsample is not None and key.subsample != subsample:
            continue
        return key
    return None


def all_tables(results: Results, shots: int | None = None) -> list[Table]:
    """Every table the runs support, in the order a paper shows them."""
    tables = [
        by_dataset(results, shots),
        by_shots(results),
        base_to_new(results, shots),
        cross_dataset(results, shots),
        generalization(results, shots),
    ]
    return [t for t in tables if t is not None]
