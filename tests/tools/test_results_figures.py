"""The accuracy-vs-shots figure: its panels, lines, bands and axis hold the runs' numbers (checked
on the plotted data, not on pixels); it is written as PNG and PDF."""

from __future__ import annotations

import re
import statistics

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgba

from tests.tools.grid import GRID, ZERO_SHOT, per_seed_average, write_grid
from tests.tools.logs import write_run
from tools import parse_test_res as ptr
from tools.results.figures import PALETTE, accuracy_vs_shots, save_figure
from tools.results.runs import collect_records, collect_settings
from tools.results.tables import Results

DATASETS = {"Caltech101": "Caltech101", "DescribableTextures": "DTD"}


@pytest.fixture
def figure(tmp_path):
    write_grid(tmp_path)
    results = Results(collect_records(collect_settings(tmp_path)), "accuracy")
    return accuracy_vs_shots(results)


def panels(fig) -> dict:
    return {ax.get_title(): ax for ax in fig.axes if ax.get_visible() and ax.get_title()}


def line(ax, label: str):
    (found,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return found


def band(ax, colour) -> np.ndarray:
    """Vertices of the fill_between band drawn in ``colour``."""
    (poly,) = [
        c
        for c in ax.collections
        if isinstance(c, PolyCollection) and np.allclose(c.get_facecolor()[0][:3], colour[:3])
    ]
    return poly.get_paths()[0].vertices


def legend_texts(fig) -> list[str]:
    """The one legend of a figure: below the panels, or in a grid cell no panel uses."""
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    (legend,) = legends
    return [t.get_text() for t in legend.get_texts()]


def test_one_panel_per_dataset_and_an_average_panel(figure):
    assert list(panels(figure)) == ["Caltech101", "DTD", "Average"]
    legend = legend_texts(figure)
    assert legend == ["Zero-shot CLIP (ensemble)", "CoOp", "TaskRes"]


def test_lines_are_the_mean_over_seeds_on_a_log2_shot_axis(figure):
    axes = panels(figure)
    for dataset, title in DATASETS.items():
        ax = axes[title]
        assert ax.get_xscale() == "log" and ax.xaxis.get_transform().base == 2
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "16"]
        for method in ("TaskRes", "CoOp"):
            plotted = line(ax, method)
            np.testing.assert_allclose(plotted.get_xdata(), [1, 16], rtol=0.05)  # dodged
            means = [statistics.mean(GRID[(method, dataset, s)]) for s in (1, 16)]
            np.testing.assert_allclose(plotted.get_ydata(), means)


def test_band_is_the_std_over_seeds(figure):
    ax = panels(figure)["Caltech101"]
    plotted = line(ax, "TaskRes")
    vertices = band(ax, to_rgba(plotted.get_color()))
    for shots, x in zip((1, 16), plotted.get_xdata()):
        accs = GRID[("TaskRes", "Caltech101", shots)]
        ys = vertices[np.isclose(vertices[:, 0], x), 1]
        mean, std = statistics.mean(accs), statistics.pstdev(accs)
        assert min(ys) == pytest.approx(mean - std) and max(ys) == pytest.approx(mean + std)


def test_zero_shot_is_a_dashed_level(figure):
    for dataset, title in DATASETS.items():
        zero_shot = line(panels(figure)[title], "Zero-shot CLIP (ensemble)")
        assert zero_shot.get_linestyle() == "--"
        assert list(zero_shot.get_ydata()) == [ZERO_SHOT[dataset]] * 2


def test_average_panel_averages_datasets_per_seed(figure):
    ax = panels(figure)["Average"]
    for method in ("TaskRes", "CoOp"):
        averages = [
            statistics.mean(
                per_seed_average(
                    GRID[(method, "Caltech101", s)], GRID[(method, "DescribableTextures", s)]
                )
            )
            for s in (1, 16)
        ]
        np.testing.assert_allclose(line(ax, method).get_ydata(), averages)
    assert line(ax, "Zero-shot CLIP (ensemble)").get_ydata()[0] == pytest.approx(
        statistics.mean(ZERO_SHOT.values())
    )


def test_average_panel_leaves_out_averages_over_some_datasets_only(tmp_path):
    write_run(tmp_path, "a/1", 50.0, DATASET__NAME="Caltech101", DATASET__NUM_SHOTS=1)
    write_run(tmp_path, "a/2", 60.0, DATASET__NAME="Caltech101", DATASET__NUM_SHOTS=2)
    write_run(tmp_path, "b/2", 40.0, DATASET__NAME="EuroSAT", DATASET__NUM_SHOTS=2)
    fig = accuracy_vs_shots(Results(collect_records(collect_settings(tmp_path)), "accuracy"))
    average = line(panels(fig)["Average"], "TaskRes")
    assert list(average.get_xdata()) == [2] and list(average.get_ydata()) == [50.0]
    assert len(fig.axes) == 3


def test_saved_as_png_and_pdf(figure, tmp_path):
    png, pdf = save_figure(figure, tmp_path / "out" / "accuracy_vs_shots")
    assert png.read_bytes().startswith(b"\x89PNG") and pdf.read_bytes().startswith(b"%PDF")


def test_cli_writes_the_figure(tmp_path, capsys):
    write_grid(tmp_path / "runs")
    assert ptr.main([str(tmp_path / "runs"), "--figures", str(tmp_path / "figs")]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'figs' / 'accuracy_vs_shots.png'}" in out
    assert (tmp_path / "figs" / "accuracy_vs_shots.pdf").is_file()


def test_each_method_has_its_own_colour_marker_and_line_style(figure):
    for ax in panels(figure).values():
        styles = {
            ln.get_label(): (ln.get_color(), ln.get_marker(), str(ln.get_linestyle()))
            for ln in ax.get_lines()
        }
        assert len(styles) == 3
        for part in range(3):  # each of colour, marker, line style alone tells them apart
            assert len({style[part] for style in styles.values()}) == 3
        assert {colour for colour, _, _ in styles.values()} <= set(PALETTE)


def test_coinciding_points_stay_visible(tmp_path):
    for trainer in ("CoOp", "TaskRes"):
        for shots in (1, 4):
            write_run(tmp_path, f"{trainer}/{shots}", 70.0, TRAINER__NAME=trainer,
                      DATASET__NUM_SHOTS=shots)  # fmt: skip
    fig = accuracy_vs_shots(Results(collect_records(collect_settings(tmp_path)), "accuracy"))
    (ax,) = fig.axes
    coop, taskres = line(ax, "CoOp").get_xdata(), line(ax, "TaskRes").get_xdata()
    assert all(a < 0.98 * b for a, b in zip(coop, taskres))  # apart ...
    np.testing.assert_allclose([*coop, *taskres], [1, 4, 1, 4], rtol=0.05)  # ... at their shots


def test_a_single_panel_has_one_axes_and_its_legend_inside(tmp_path):
    for shots, acc in ((1, 60.0), (4, 70.0)):
        write_run(tmp_path, f"a/{shots}", acc, DATASET__NUM_SHOTS=shots)
    fig = accuracy_vs_shots(Results(collect_records(collect_settings(tmp_path)), "accuracy"))
    (ax,) = fig.axes
    assert ax.get_legend() is not None and not fig.legends  # no band of space below the panel


@pytest.mark.parametrize("size, width", [("one-column", 3.3), ("two-column", 6.9)])
def test_paper_sizes_keep_their_width_and_legible_fonts(tmp_path, size, width):
    write_grid(tmp_path / "runs")
    results = Results(collect_records(collect_settings(tmp_path / "runs")), "accuracy")
    fig = accuracy_vs_shots(results, size)
    assert fig.get_figwidth() == pytest.approx(width)
    texts = [t for ax in fig.axes for t in (ax.title, ax.xaxis.label, *ax.get_xticklabels())]
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    assert len(legends) == 1
    texts += list(legends[0].get_texts())
    assert all(6 <= t.get_fontsize() <= 9 for t in texts)
    _, pdf = save_figure(fig, tmp_path / size)
    media_box = re.search(rb"/MediaBox \[\s*0 0 ([0-9.]+) ([0-9.]+)", pdf.read_bytes())
    assert float(media_box.group(1)) == pytest.approx(width * 72)  # exactly a column wide


def test_the_pdf_is_vector_with_its_fonts_embedded(figure, tmp_path):
    _, pdf = save_figure(figure, tmp_path / "fig")
    data = pdf.read_bytes()
    assert b"/FontFile2" in data and b"/Type3" not in data  # TrueType embedded (fonttype 42)
    assert b"/Subtype /Image" not in data  # no raster inside: lines and text are vectors


def test_cli_figure_size(tmp_path):
    write_grid(tmp_path / "runs")
    figs = tmp_path / "figs"
    assert ptr.main([str(tmp_path / "runs"), "--figures", str(figs), "--figure-size",
                     "one-column"]) == 0  # fmt: skip
    media_box = re.search(
        rb"/MediaBox \[\s*0 0 ([0-9.]+)", (figs / "accuracy_vs_shots.pdf").read_bytes()
    )
    assert float(media_box.group(1)) == pytest.approx(3.3 * 72)
