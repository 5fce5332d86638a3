"""The accuracy-vs-shots figure: its panels, lines, bands and axis hold the runs' numbers (checked
on the plotted data, not on pixels); it is written as PNG and PDF."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgba

from tests.tools.grid import GRID, ZERO_SHOT, per_seed_average, write_grid
from tests.tools.logs import write_run
from tools import parse_test_res as ptr
from tools.results.figures import accuracy_vs_shots, save_figure
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


def test_one_panel_per_dataset_and_an_average_panel(figure):
    assert list(panels(figure)) == ["Caltech101", "DTD", "Average"]
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend == ["Zero-shot CLIP (ensemble)", "CoOp", "TaskRes"]


def test_lines_are_the_mean_over_seeds_on_a_log2_shot_axis(figure):
    axes = panels(figure)
    for dataset, title in DATASETS.items():
        ax = axes[title]
        assert ax.get_xscale() == "log" and ax.xaxis.get_transform().base == 2
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "16"]
        for method in ("TaskRes", "CoOp"):
            plotted = line(ax, method)
            assert list(plotted.get_xdata()) == [1, 16]
            means = [statistics.mean(GRID[(method, dataset, s)]) for s in (1, 16)]
            np.testing.assert_allclose(plotted.get_ydata(), means)


def test_band_is_the_std_over_seeds(figure):
    ax = panels(figure)["Caltech101"]
    plotted = line(ax, "TaskRes")
    vertices = band(ax, to_rgba(plotted.get_color()))
    for shots in (1, 16):
        accs = GRID[("TaskRes", "Caltech101", shots)]
        ys = vertices[np.isclose(vertices[:, 0], shots), 1]
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


def test_saved_as_png_and_pdf(figure, tmp_path):
    png, pdf = save_figure(figure, tmp_path / "out" / "accuracy_vs_shots")
    assert png.read_bytes().startswith(b"\x89PNG") and pdf.read_bytes().startswith(b"%PDF")


def test_cli_writes_the_figure(tmp_path, capsys):
    write_grid(tmp_path / "runs")
    assert ptr.main([str(tmp_path / "runs"), "--figures", str(tmp_path / "figs")]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'figs' / 'accuracy_vs_shots.png'}" in out
    assert (tmp_path / "figs" / "accuracy_vs_shots.pdf").is_file()
