"""A search of hyperparameters on val as one grid command: every candidate trains and is scored
on val only, the best val accuracy wins per (dataset, shots, seed), and only the winner is tested;
the winners match a hand computation from the candidates' logs, and no test number of a candidate
exists anywhere."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from datasets.synthetic import Layout, write_synthetic_dataset
from tools.demo import CLASSES, write_demo_checkpoint, write_demo_dataset
from tools.sweep.cli import main as sweep_main
from tools.sweep.grid import GridError, expand, load_grid

REPO = Path(__file__).resolve().parents[2]
DTD = Layout("dtd", "images", "split_zhou_DescribableTextures.json", "image_{:04d}.jpg")
PER_CLASS = (4, 4, 4)  # train, val, test images per class

SEARCH_GRID = """
trainer: TaskRes
config: TaskRes/adam_lr2e-3_B256_ep100
datasets: [caltech101, dtd]
shots: [4]
seeds: [1]
args: [--enhanced-base, none]
opts:
  DATASET.NUM_SHOTS: "{shots}"
  TRAINER.TaskRes.RESIDUAL_SCALE: "{alpha}"
search:
  space: {alpha: ["0.0", "2.0"]}
  output: "searched/{dataset}/seed{seed}"
output: "candidates/{dataset}/alpha{alpha}/seed{seed}"
"""
VAL_BLOCK = re.compile(r"Evaluate on the \*val\* set.*?\* accuracy: ([\d.]+)%", re.S)


def hand_winner(candidates: Path) -> tuple[str, dict[str, float]]:
    """The alpha whose candidate's log shows the best final val accuracy (the first on ties)."""
    scores = {}
    for alpha in ("0.0", "2.0"):  # the grid's order
        log = (candidates / f"alpha{alpha}" / "seed1" / "log.txt").read_text()
        scores[alpha] = float(VAL_BLOCK.findall(log)[-1])
    best = max(scores.values())
    return next(alpha for alpha, score in scores.items() if score == best), scores


@pytest.mark.slow
def test_a_search_grid_tests_only_the_val_winner_of_each_cell(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    write_demo_dataset(data, per_class=PER_CLASS)
    write_synthetic_dataset(data, CLASSES, DTD, PER_CLASS, image_size=32, seed=1)
    clip = write_demo_checkpoint(tmp_path / "clip.pt")
    grid = tmp_path / "search.yaml"
    grid.write_text(SEARCH_GRID)
    argv = [
        str(grid), "--root", str(data), "--output-root", str(out), "--workers", "2",
        "MODEL.BACKBONE.NAME", str(clip), "INPUT.SIZE", "(32, 32)", "USE_CUDA", "False",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "8", "OPTIM.MAX_EPOCH", "2",
        "OPTIM.LR", "0.05", "TRAINER.TaskRes.PREC", "fp32",
    ]  # fmt: skip
    assert sweep_main(argv) == 0, capsys.readouterr().out
    printed = capsys.readouterr().out

    for dataset in ("caltech101", "dtd"):
        alpha, scores = hand_winner(out / "candidates" / dataset)
        for candidate, score in scores.items():
            record = json.loads(
                (out / f"candidates/{dataset}/alpha{candidate}/seed1/result.json").read_text()
            )
            assert record["split"] == "val" and record["accuracy"] == pytest.approx(score, abs=0.05)
        report_file = out / f"sweeps/search/search/searched/{dataset}/seed1.json"
        report = json.loads(report_file.read_text())
        assert report["winner"] == {"alpha": alpha}
        assert [c["val_accuracy"] for c in report["candidates"]] == pytest.approx(
            list(scores.values()), abs=0.05
        )
        # no candidate's test score: each entry holds its values, folder and val accuracy only
        assert all(set(c) == {"values", "run", "val_accuracy"} for c in report["candidates"])
        winner = out / f"searched/{dataset}/seed1"
        record = json.loads((winner / "result.json").read_text())
        assert record["split"] == "test"
        assert record["hyperparameters"] == {
            "rule": "searched", "space": {"alpha": ["0.0", "2.0"]}, "winner": {"alpha": alpha},
            "split": "val", "size": 20,
        }  # fmt: skip
        config = yaml.safe_load((winner / "config.yaml").read_text())
        assert config["RUN"]["MODEL_DIR"] == str(out / f"candidates/{dataset}/alpha{alpha}/seed1")
        assert config["TRAINER"]["TaskRes"]["RESIDUAL_SCALE"] == float(alpha)
    # the selection report lists every candidate's val accuracy; the table only the winners
    assert printed.count("val ") >= 4 and "<- winner" in printed
    assert "TaskRes" in printed and "selection: last epoch, searched on val" in printed
    assert "Stage search, winners' test: 2 to run" in printed

    assert sweep_main(argv) == 0
    again = capsys.readouterr().out
    assert "0 to run, 4 already finished" in again and "winners' test: 0 to run, 2 already" in again


def test_search_grid_mistakes_are_named(tmp_path):
    def grid(text: str):
        path = tmp_path / "g.yaml"
        path.write_text(text)
        return load_grid(path)

    bad_output = SEARCH_GRID.replace('"searched/{dataset}/seed{seed}"', '"s/{alpha}/{dataset}"')
    with pytest.raises(GridError, match="names the searched variable alpha"):
        grid(bad_output)
    with pytest.raises(GridError, match="choose one of"):
        grid(SEARCH_GRID.replace('  output: "searched', '  val: tuned\n  output: "searched'))
    one_folder = SEARCH_GRID.replace("alpha{alpha}/", "")
    with pytest.raises(GridError, match="add {alpha} to"):
        expand(grid(one_folder), "data", tmp_path)


def test_the_shipped_search_grid_expands_every_candidate():
    grid = load_grid(REPO / "configs/grids/taskres_search.yaml")
    (cells,) = expand(grid, "data", "out", datasets=["dtd"], shots=[1], seeds=[1])
    assert [dict(c.candidate) for c in cells] == [
        {"alpha": a, "lr": lr} for a in ("0.25", "0.5", "1.0") for lr in ("2e-4", "2e-3")
    ]
    assert {c.winner_dir for c in cells} == {
        Path("out").absolute() / "FINAL/searched/dtd/ep100_1shots/seed1"
    }
    assert all(c.argv[-2:] == ("TEST.SPLIT", "val") for c in cells)


def test_a_k_shot_val_search_scores_candidates_on_k_images_per_class(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(SEARCH_GRID.replace('  output: "searched', '  val: kshot\n  output: "searched'))
    (cells,) = expand(load_grid(path), "data", tmp_path, datasets=["dtd"], shots=[4], seeds=[1])
    assert all(c.argv[-4:] == ("TEST.SPLIT", "val", "DATASET.VAL_SHOTS", "shots") for c in cells)
    path.write_text(SEARCH_GRID)  # the default: the runs' own few-shot val, min(K, 4)
    (cells,) = expand(load_grid(path), "data", tmp_path, datasets=["dtd"], shots=[4], seeds=[1])
    assert all("DATASET.VAL_SHOTS" not in c.argv for c in cells)
