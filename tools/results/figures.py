"""The paper's figures with matplotlib (Agg canvas, no display needed), saved as PNG and as a
vector PDF whose fonts are embedded (TrueType, ``pdf.fonttype`` 42, as publishers ask).

``accuracy_vs_shots``: one panel per dataset plus an average panel; one line per method over the
shot counts on a log2 axis, with a band of ± the spread over seeds; zero-shot methods, which have
no shots, are a horizontal level. The average panel plots only averages over every dataset of the
figure (a partial average would compare methods on different datasets). Each method has its own
colour (Okabe-Ito, safe for colour-blind readers), marker and line style, the same in every panel,
so the figure reads in grey too; methods are dodged a few percent apart on the shot axis so that
points which coincide stay visible. ``SIZES`` fits the figure to a paper's column.

``residual_figure``: the TaskRes residual analysis (see ``residuals``), one panel per TaskRes row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .residuals import Analysis
from .runs import dataset_title
from .tables import (
    Results,
    Row,
    Stat,
    average_of,
    datasets_of,
    find_key,
    in_domain,
    rows_of,
    stat_of,
)

# Okabe & Ito's palette, distinguishable with every common colour-vision deficiency; yellow last
# (it is faint on white).
PALETTE = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINE_STYLES = ("-", "-.", ":", (0, (5, 1.5)), (0, (3, 1, 1, 1, 1, 1)))  # trained methods
LEVEL_STYLES = ("--", (0, (1, 1.5)), (0, (6, 2, 1, 2)))  # zero-shot levels
DODGE = 0.05  # log2 units between neighbouring methods on the shot axis (3.5% of a shot count)


@dataclass(frozen=True)
class Size:
    """A figure layout: total width (None: ``panel`` inches per panel), panels per row, fonts."""

    width: float | None
    max_columns: int
    font: float
    panel: tuple[float, float] = (3.4, 2.8)


SIZES = {
    "screen": Size(None, 4, 10.0),
    "one-column": Size(3.3, 2, 7.0),  # a column of a two-column paper (~3.3 in)
    "two-column": Size(6.9, 4, 8.0),  # the full text width (~6.9 in)
}


def style_rc(size: Size) -> dict:
    """rcParams of a figure drawn at ``size``: fonts legible once printed at that width."""
    small = size.font - 1
    return {
        "font.size": size.font,
        "axes.titlesize": size.font,
        "axes.labelsize": size.font,
        "xtick.labelsize": small,
        "ytick.labelsize": small,
        "legend.fontsize": small,
        "lines.linewidth": 1.0 if size.width else 1.5,
        "lines.markersize": 3.5 if size.width else 6.0,
        "pdf.fonttype": 42,
        "ps.fonttype": 42,
    }


def new_figure(panels: int, size: Size = SIZES["screen"]) -> tuple[Figure, list, list]:
    """A figure on an Agg canvas with a constrained grid of ``panels`` axes, and the grid's
    unused cells (switched off: a legend may fill them)."""
    columns = min(panels, size.max_columns)
    rows = math.ceil(panels / columns)
    if size.width is None:
        figsize = (size.panel[0] * columns, size.panel[1] * rows)
    else:
        figsize = (size.width, min(size.width / columns * 0.8, 2.6) * rows)
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.subplots(rows, columns, squeeze=False).ravel().tolist()
    for ax in grid[panels:]:
        ax.set_axis_off()
    return fig, grid[:panels], grid[panels:]


def save_figure(fig: Figure, stem: Path, tight: bool = False) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf`` (vector, fonts embedded); returns both paths.
    ``tight`` crops to the drawn content, for figures whose labels may leave the axes."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(stem.name + ext) for ext in (".png", ".pdf")]
    with matplotlib.rc_context({"pdf.fonttype": 42, "ps.fonttype": 42}):
        for path in paths:
            fig.savefig(path, dpi=300, bbox_inches="tight" if tight else None)
    return paths


@dataclass(frozen=True)
class Style:
    colour: str
    marker: str | None
    linestyle: str | tuple
    dodge: float  # log2 units


def method_styles(rows: list[Row]) -> dict[Row, Style]:
    """One colour, marker and line style per row (a zero-shot level: a dash pattern, no
    marker), and each trained row's horizontal dodge, centred on the true shot count."""
    trained = [r for r in rows if not r.zero_shot]
    styles = {}
    levels = 0
    for i, row in enumerate(rows):
        colour = PALETTE[i % len(PALETTE)]
        if row.zero_shot:
            styles[row] = Style(colour, None, LEVEL_STYLES[levels % len(LEVEL_STYLES)], 0.0)
            levels += 1
            continue
        j = trained.index(row)
        dodge = (j - (len(trained) - 1) / 2) * DODGE
        styles[row] = Style(
            colour, MARKERS[j % len(MARKERS)], LINE_STYLES[j % len(LINE_STYLES)], dodge
        )
    return styles


def accuracy_vs_shots(results: Results, size: str = "screen") -> Figure | None:
    """Accuracy against shots per dataset and on average; None when no trained run has shots.
    ``size`` is a key of ``SIZES``."""
    keys = results.keys(in_domain)
    shots = sorted({k.shots for k in keys if not k.row.zero_shot and k.shots > 0})
    if not shots:
        return None
    layout = SIZES[size]
    datasets = datasets_of(keys)
    rows = rows_of(keys)
    panels = [*datasets, None] if len(datasets) > 1 else datasets  # None: the average panel
    styles = method_styles(rows)
    with matplotlib.rc_context(style_rc(layout)):
        fig, axes, spare = new_figure(len(panels), layout)
        for ax, dataset in zip(axes, panels):
            for row in rows:
                series: list[tuple[int, Stat]] = []
                for n in [0] if row.zero_shot else shots:
                    stat = _panel_stat(results, keys, row, dataset, datasets, n)
                    if stat is not None:
                        series.append((n, stat))
                _draw(ax, row, styles[row], series)
            ax.set_xscale("log", base=2)
            ax.set_xlim(shots[0] / 1.4, shots[-1] * 1.4)  # the same shot axis on every panel
            ax.set_xticks(shots, labels=[str(n) for n in shots])
            ax.minorticks_off()
            ax.set_title("Average" if dataset is None else dataset_title(dataset))
            ax.set_xlabel("shots per class")
            ax.set_ylabel(f"{results.metric} (%)")
            ax.grid(alpha=0.3, linewidth=0.5)
        _legend(fig, axes, spare, layout)
    return fig


def _legend(fig: Figure, axes: list, spare: list, size: Size) -> None:
    """One panel: the legend inside it; a grid with an unused cell: the legend fills it; else
    one legend below all panels. No band of space is left empty."""
    handles: dict = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if len(axes) == 1:
        axes[0].legend(list(handles.values()), list(handles), loc="best", frameon=False)
        return
    if spare:
        spare[0].legend(list(handles.values()), list(handles), loc="center", frameon=False)
        return
    columns = 2 if size.width is not None and size.width < 4 else 4
    fig.legend(list(handles.values()), list(handles), loc="outside lower center",
               ncol=min(len(handles), columns), frameon=False)  # fmt: skip


def _panel_stat(results, keys, row, dataset, datasets, shots) -> Stat | None:
    """The cell of one dataset, or (dataset None) the complete average over ``datasets``."""
    if dataset is not None:
        cell = results.cells.get(find_key(keys, row, dataset, shots))
        return None if cell is None else stat_of(list(cell.values()), results.ci95)
    cells = [results.cells.get(find_key(keys, row, d, shots)) for d in datasets]
    if any(c is None for c in cells):
        return None
    return average_of(cells, len(datasets), results.ci95)


def _draw(ax, row: Row, style: Style, series: list[tuple[int, Stat]]) -> None:
    if not series:
        return
    if row.zero_shot:
        ax.axhline(series[0][1].mean, color=style.colour, linestyle=style.linestyle,
                   label=row.label, zorder=2)  # fmt: skip
        return
    xs = [n * 2**style.dodge for n, _ in series]
    means = [s.mean for _, s in series]
    spreads = [s.spread or 0.0 for _, s in series]
    ax.plot(xs, means, marker=style.marker, color=style.colour, linestyle=style.linestyle,
            markeredgecolor="white", markeredgewidth=0.5, label=row.label, zorder=3)  # fmt: skip
    if any(spreads):
        lower = [m - s for m, s in zip(means, spreads)]
        upper = [m + s for m, s in zip(means, spreads)]
        ax.fill_between(xs, lower, upper, color=style.colour, alpha=0.15, linewidth=0, zorder=1)


def residual_figure(analyses: list[Analysis], size: str = "screen") -> Figure | None:
    """One panel per analysis: mean |residual| against relative transfer difficulty (log axis),
    each point labelled by its dataset; None when no analysis has a point."""
    shown = [a for a in analyses if a.points]
    if not shown:
        return None
    layout = SIZES[size]
    with matplotlib.rc_context(style_rc(layout)):
        fig, axes, _ = new_figure(len(shown), layout)
        for ax, analysis in zip(axes, shown):
            _residual_panel(ax, analysis)
    return fig


def _residual_panel(ax, analysis: Analysis) -> None:
    xs = [p.difficulty for p in analysis.points]
    ys = [p.magnitude for p in analysis.points]
    ax.scatter(xs, ys, color=PALETTE[4], marker=MARKERS[0])
    for point in analysis.points:
        ax.annotate(
            dataset_title(point.dataset),
            (point.difficulty, point.magnitude),
            textcoords="offset points",
            xytext=(3, 3),
            fontsize="small",
        )
    ax.set_xscale("log")
    result = analysis.correlation
    summary = "" if result is None else f"\nPearson r = {result.pearson:.2f}"
    ax.set_title(analysis.title + summary, fontsize="medium")
    ax.set_xlabel("relative transfer difficulty (1/K) / zero-shot acc")
    ax.set_ylabel("mean |residual|")
    ax.grid(alpha=0.3, linewidth=0.5)
