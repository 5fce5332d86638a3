"""Stages that depend on each other: the shipped TaskRes* grid builds each seed's enhanced base,
then runs TaskRes* on it (the tiny CLIP, the demo's Caltech101-layout data, the local launcher),
and a re-run skips both stages; plus what the grid file may say about stage dependencies."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from tools.demo import write_demo_checkpoint, write_demo_dataset
from tools.sweep.cli import main as sweep_main
from tools.sweep.grid import GridError, expand, load_grid

REPO = Path(__file__).resolve().parents[2]
GRID = REPO / "configs" / "grids" / "taskres_enhanced.yaml"
BASE = "FINAL/enhanced_base/caltech101/adam_lr2e-4_B256_ep100_1shots/seed{}"
TASKRES = "FINAL/enhanced_built/caltech101/adam_lr2e-3_B256_ep100_1shots/seed{}"


@pytest.mark.slow
def test_two_stage_grid_builds_each_seeds_base_then_taskres_and_reruns_skip(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    write_demo_dataset(data, per_class=(4, 2, 4))
    clip = write_demo_checkpoint(tmp_path / "clip.pt")
    argv = [
        str(GRID), "--root", str(data), "--output-root", str(out), "--datasets", "caltech101",
        "--shots", "1", "--seeds", "1", "2", "--workers", "2",
        "MODEL.BACKBONE.NAME", str(clip), "INPUT.SIZE", "(32, 32)", "USE_CUDA", "False",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "8", "OPTIM.MAX_EPOCH", "3",
        "TRAINER.TaskRes.PREC", "fp32", "TRAINER.TextProjectionTuning.PREC", "fp32",
    ]  # fmt: skip
    assert sweep_main(argv) == 0, capsys.readouterr().out
    first = capsys.readouterr().out
    assert "Stage base: 2 to run" in first and "Stage taskres: 2 to run" in first
    for seed in (1, 2):
        base_file = out / BASE.format(seed) / "enhanced_base.pth.tar"
        assert torch.load(base_file, weights_only=True)["built_by"]["seed"] == seed
        recorded = yaml.safe_load((out / TASKRES.format(seed) / "config.yaml").read_text())
        assert recorded["TRAINER"]["TaskRes"]["ENHANCED_BASE"] == str(base_file)
        assert recorded["SEED"] == seed

    assert sweep_main(argv) == 0
    again = capsys.readouterr().out
    assert "Stage base: 0 to run, 2 already finished (skipped)" in again
    assert "Stage taskres: 0 to run, 2 already finished (skipped)" in again


def _grid(tmp_path: Path, text: str):
    path = tmp_path / "g.yaml"
    path.write_text(text)
    return load_grid(path)


STAGES = """
trainer: TaskRes
config: TaskRes/adam_lr2e-3_B256_ep100
datasets: [dtd]
shots: [1]
seeds: [1, 2]
vars: {mode: a}
stages:
  - name: first
    when: {mode: a}
    output: "first/{dataset}/seed{seed}"
  - name: second
    args: ["--model-dir", "{output[first]}"]
    output: "second/seed{seed}"
"""


def test_a_stage_reads_an_earlier_stages_folder_for_its_own_cell(tmp_path):
    first, second = expand(_grid(tmp_path, STAGES), "data", tmp_path)
    assert [c.output_dir for c in first] == [
        tmp_path / "first/dtd/seed1",
        tmp_path / "first/dtd/seed2",
    ]
    for cell in second:
        assert cell.argv[cell.argv.index("--model-dir") + 1] == str(
            tmp_path / f"first/dtd/seed{cell.seed}"
        )
    # A variable given on the command line chooses the cells a stage's "when" keeps.
    first, second = expand(_grid(tmp_path, STAGES), "data", tmp_path, variables={"mode": "b"})
    assert first == [] and len(second) == 2


def test_stage_dependency_mistakes_are_named(tmp_path):
    later = STAGES.replace('"{output[first]}"', '"{output[third]}"')
    with pytest.raises(GridError, match=r"output\[third\].*names no earlier stage.*first"):
        expand(_grid(tmp_path, later), "data", tmp_path)
    with pytest.raises(GridError, match="'mood', which is neither an axis.*nor a variable"):
        _grid(tmp_path, STAGES.replace("when: {mode: a}", "when: {mood: a}"))
    nothing = STAGES.replace("  - name: second\n", "  - name: second\n    when: {mode: a}\n")
    with pytest.raises(GridError, match="No cell of grid .* matches its stages.*--var"):
        expand(_grid(tmp_path, nothing), "data", tmp_path, variables={"mode": "c"})
