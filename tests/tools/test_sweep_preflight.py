"""A sweep's preflight and its report: cells whose dataset is incomplete or whose weights are not on
this machine are "cannot start" (with the run's own message) and never launched; a folder whose
run died before its first epoch is a fresh start; a failed cell's summary shows its last error line
and each log path once. Tiny grids (1 or 2 cells); only the failing-cell test starts a train.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from dassl.config.run_config import build_parser, setup_cfg
from dassl.config.run_identity import write_run_record
from tools.demo import write_demo_checkpoint, write_demo_dataset
from tools.sweep.cli import main as sweep_main
from tools.sweep.grid import expand, load_grid

CONFIG = "TaskRes/adam_lr2e-3_B256_ep100"
TINY = [
    "INPUT.SIZE", "(32, 32)", "USE_CUDA", "False", "DATALOADER.NUM_WORKERS", "0",
    "TRAINER.TaskRes.PREC", "fp32", "OPTIM.MAX_EPOCH", "1",
]  # fmt: skip


def grid_file(tmp_path: Path, datasets: list[str], seeds: tuple[int, ...] = (1,)) -> Path:
    data = {
        "trainer": "TaskRes", "config": CONFIG, "datasets": datasets, "shots": [1],
        "seeds": list(seeds), "output": "{dataset}/seed{seed}",
    }  # fmt: skip
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def world(tmp_path, monkeypatch) -> dict:
    """Caltech101's layout present, DTD's absent; a tiny CLIP file; no CLIP weights cached."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # ~/.cache/clip: empty
    monkeypatch.delenv("CLIP_WEIGHTS_DIR", raising=False)
    data = tmp_path / "data"
    write_demo_dataset(data, per_class=(2, 1, 2))
    return {"data": data, "clip": write_demo_checkpoint(tmp_path / "clip.pt"), "tmp": tmp_path}


def argv(
    world: dict, datasets: list[str], backbone: str, *options: str, seeds: tuple[int, ...] = (1,)
) -> list[str]:
    return [
        str(grid_file(world["tmp"], datasets, seeds)), "--root", str(world["data"]),
        "--output-root", str(world["tmp"] / "out"), "--workers", "1", *options,
        "MODEL.BACKBONE.NAME", backbone, *TINY,
    ]  # fmt: skip


def test_dry_run_says_which_cells_cannot_start_and_why(world, capsys):
    assert sweep_main(argv(world, ["caltech101", "dtd"], str(world["clip"]), "--dry-run")) == 0
    out = capsys.readouterr().out
    assert re.search(r"\n  pending +caltech101 1-shot seed 1 +caltech101/seed1\n", out)
    assert re.search(r"\n  cannot start dtd 1-shot seed 1 +dtd/seed1\n", out)
    # The dataset's own layout error, with the folder it lacks and how to fix it.
    assert f"dataset folder: {world['data'] / 'dtd'}" in out
    assert "DATASETS.md#describabletextures" in out
    assert "1 finished" not in out and "1 pending, 0 conflicting, 0 blocked, 1 cannot start" in out


def test_dry_run_looks_for_named_weights_on_this_machine_only(world, capsys):
    assert sweep_main(argv(world, ["caltech101"], "RN50", "--dry-run", seeds=(1, 2))) == 0
    out = capsys.readouterr().out
    assert re.search(r"\n  cannot start caltech101 1-shot seed 1 ", out)
    assert re.search(r"\n  cannot start caltech101 1-shot seed 2 ", out)
    # Explained in full for the first cell, named for the next.
    assert out.count("CLIP weights for 'RN50' are not on this machine. Put the file RN50.pt") == 2
    assert out.count("Put the file RN50.pt into one of:\n") == 1
    assert "into one of: - the folder named by $CLIP_WEIGHTS_DIR (as above)\n" in out
    assert not (world["tmp"] / "home" / ".cache" / "clip" / "RN50.pt").exists()


def test_a_sweep_launches_no_cell_that_cannot_start(world, capsys):
    missing = str(world["tmp"] / "no-such-clip.pt")
    assert sweep_main(argv(world, ["caltech101", "dtd"], missing)) == 1
    out = capsys.readouterr().out
    assert "0 to run, 0 already finished (skipped), 0 not run (conflicting or blocked), 2 " in out
    assert (
        "Summary: 0 done, 0 failed, 0 skipped (already finished), 0 conflicting, 0 blocked, "
        "2 cannot start, 0 interrupted" in out
    )
    # dtd lacks its data (the first reason), caltech101 its weights.
    assert re.search(r"\n  cannot start dtd 1-shot seed 1 +DescribableTextures: the dataset", out)
    assert re.search(rf"\n  cannot start caltech101 1-shot seed 1 +'{missing}' is neither", out)
    assert "Running on" not in out and not (world["tmp"] / "out" / "caltech101").exists()


def test_a_run_that_died_before_its_first_epoch_is_a_fresh_start(world, capsys):
    """train.py writes config.yaml first; a run that then died left no checkpoint or result."""
    options = argv(world, ["caltech101"], str(world["clip"]))
    grid_path, overrides = Path(options[0]), options[options.index("MODEL.BACKBONE.NAME") :]
    (cell,) = expand(
        load_grid(grid_path), world["data"], world["tmp"] / "out", overrides=overrides
    )[0]
    cfg = setup_cfg(build_parser().parse_args(list(cell.argv)), notes=[])
    cell.output_dir.mkdir(parents=True)
    write_run_record(cfg, ["train.py", *cell.argv])

    assert sweep_main([*options[: -len(overrides)], "--dry-run", *overrides]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\n  pending +caltech101 1-shot seed 1 +caltech101/seed1\n", out), out
    (cell.output_dir / "prompt_learner").mkdir()
    (cell.output_dir / "prompt_learner" / "model.pth.tar-1").write_bytes(b"saved epoch")
    assert sweep_main([*options[: -len(overrides)], "--dry-run", *overrides]) == 0
    assert "caltech101/seed1 (resumes)\n" in capsys.readouterr().out


@pytest.mark.slow
def test_a_failed_cell_shows_its_last_error_line_and_each_path_once(world, capsys):
    """The weights file exists (the preflight passes) but is not a checkpoint: train.py fails."""
    broken = world["tmp"] / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    assert sweep_main(argv(world, ["caltech101"], str(broken))) == 1
    out = capsys.readouterr().out
    summary = out.split("\nSummary: ")[1]
    assert summary.startswith("0 done, 1 failed,")
    (failed,) = [line for line in summary.splitlines() if line.startswith("  failed ")]
    assert re.search(r"train\.py exited with status 1: \S*Error: .*broken\.pt", failed), failed
    console = Path("sweeps/tiny/console/caltech101/seed1.txt")
    assert out.count(str(console)) == 1 and str(world["tmp"] / "out" / console) in summary
