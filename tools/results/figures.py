"""The paper's figures with matplotlib (Agg canvas, no display needed), saved as PNG and PDF.

``accuracy_vs_shots``: one panel per dataset plus an average panel; one line per method over the
shot counts on a log2 axis, with a band of ± the spread over seeds; zero-shot methods, which have
no shots, are a dashed horizontal line. The average panel plots only averages over every dataset
of the figure (a partial average would compare methods on different datasets).

``residual_figure``: the TaskRes residual analysis (see ``residuals``), one panel per TaskRes row.
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .residuals import Analysis
from .runs import dataset_title
from .tables import Results, Stat, average_of, datasets_of, find_key, in_domain, rows_of, stat_of

PANEL_SIZE = (3.4, 2.8)  # inches per panel
MAX_COLUMNS = 4
LEGEND_COLUMNS = 4


def new_figure(panels: int, footer: float = 0.0) -> tuple[Figure, list]:
    """A figure on an Agg canvas with a grid of ``panels`` axes (unused grid cells hidden) and
    ``footer`` inches below them (for a legend)."""
    columns = min(panels, MAX_COLUMNS)
    rows = math.ceil(panels / columns)
    fig = Figure(figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows + footer))
    FigureCanvasAgg(fig)
    grid = fig.subplots(rows, columns, squeeze=False).ravel().tolist()
    for ax in grid[panels:]:
        ax.set_visible(False)
    return fig, grid[:panels]


def save_figure(fig: Figure, stem: Path) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf``; returns both paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(stem.name + ext) for ext in (".png", ".pdf")]
    for path in paths:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return paths


def accuracy_vs_shots(results: Results) -> Figure | None:
    """Accuracy against shots per dataset and on average; None when no trained run has shots."""
    keys = results.keys(in_domain)
    shots = sorted({k.shots for k in keys if not k.row.zero_shot and k.shots > 0})
    if not shots:
        return None
    datasets = datasets_of(keys)
    rows = rows_of(keys)
    panels = [*datasets, None] if len(datasets) > 1 else datasets  # None: the average panel
    legend_rows = math.ceil(len(rows) / LEGEND_COLUMNS)
    footer = 0.3 * legend_rows + 0.2
    fig, axes = new_figure(len(panels), footer)
    colours = {row: f"C{i % 10}" for i, row in enumerate(rows)}
    for ax, dataset in zip(axes, panels):
        for row in rows:
            series: list[tuple[int, Stat]] = []
            for n in [0] if row.zero_shot else shots:
                stat = _panel_stat(results, keys, row, dataset, datasets, n)
                if stat is not None:
                    series.append((n, stat))
            _draw(ax, row.label, colours[row], series, row.zero_shot)
        ax.set_xscale("log", base=2)
        ax.set_xlim(shots[0] / 1.4, shots[-1] * 1.4)  # the same shot axis on every panel
        ax.set_xticks(shots, labels=[str(n) for n in shots])
        ax.minorticks_off()
        ax.set_title("Average" if dataset is None else dataset_title(dataset))
        ax.set_xlabel("shots per class")
        ax.set_ylabel(f"{results.metric} (%)")
        ax.grid(alpha=0.3)
    handles = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(list(handles.values()), list(handles), loc="lower center",
               ncol=min(len(handles), LEGEND_COLUMNS), frameon=False)  # fmt: skip
    fig.tight_layout(rect=(0, footer / fig.get_figheight(), 1, 1))
    return fig


def _panel_stat(results, keys, row, dataset, datasets, shots) -> Stat | None:
    """The cell of one dataset, or (dataset None) the complete average over ``datasets``."""
    if dataset is not None:
        cell = results.cells.get(find_key(keys, row, dataset, shots))
        return None if cell is None else stat_of(list(cell.values()), results.ci95)
    cells = [results.cells.get(find_key(keys, row, d, shots)) for d in datasets]
    if any(c is None for c in cells):
        return None
    return average_of(cells, len(datasets), results.ci95)


def _draw(ax, label: str, colour: str, series: list[tuple[int, Stat]], zero_shot: bool) -> None:
    if not series:
        return
    if zero_shot:
        ax.axhline(series[0][1].mean, color=colour, linestyle="--", label=label)
        return
    xs = [n for n, _ in series]
    means = [s.mean for _, s in series]
    spreads = [s.spread or 0.0 for _, s in series]
    ax.plot(xs, means, marker="o", color=colour, label=label)
    if any(spreads):
        lower = [m - s for m, s in zip(means, spreads)]
        upper = [m + s for m, s in zip(means, spreads)]
        ax.fill_between(xs, lower, upper, color=colour, alpha=0.2, linewidth=0)


def residual_figure(analyses: list[Analysis]) -> Figure | None:
    """One panel per analysis: mean |residual| against relative transfer difficulty (log axis),
    each point labelled by its dataset; None when no analysis has a point."""
    shown = [a for a in analyses if a.points]
    if not shown:
        return None
    fig, axes = new_figure(len(shown))
    for ax, analysis in zip(axes, shown):
        xs = [p.difficulty for p in analysis.points]
        ys = [p.magnitude for p in analysis.points]
        ax.scatter(xs, ys, color="C0")
        for point in analysis.points:
            ax.annotate(
                dataset_title(point.dataset),
                (point.difficulty, point.magnitude),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
        ax.set_xscale("log")
        result = analysis.correlation
        summary = "" if result is None else f"\nPearson r = {result.pearson:.2f}"
        ax.set_title(analysis.title + summary, fontsize=9)
        ax.set_xlabel("relative transfer difficulty (1/K) / zero-shot acc")
        ax.set_ylabel("mean |residual|")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
