"""The results tool: which number it reads from a log, and how it aggregates seeds and datasets."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.warm_process import run_python
from tests.tools.logs import result_block, training_log, write_log
from tools import parse_test_res as ptr

REPO = Path(__file__).resolve().parents[2]


def test_reads_the_test_block_not_later_or_earlier_val_blocks(tmp_path):
    log = write_log(tmp_path, training_log(71.5, val_accuracies=(40.0, 88.0)))
    assert ptr.read_test_metrics(log)["accuracy"] == 71.5
    assert ptr.read_test_metrics(log)["macro_f1"] == 70.5


def test_val_only_log_is_not_a_result(tmp_path):
    log = write_log(tmp_path, training_log(None, val_accuracies=(40.0, 55.0)))
    assert ptr.read_test_metrics(log) is None


def test_without_split_markers_the_last_result_block_wins(tmp_path):
    text = "header\n" + result_block(30.0) + "some line\n" + result_block(64.2) + "Elapsed: 1\n"
    log = write_log(tmp_path, text)
    assert ptr.read_test_metrics(log)["accuracy"] == 64.2


def test_metric_lines_outside_a_result_block_are_ignored(tmp_path):
    text = "* accuracy: 99.0%\n" + result_block(50.0) + "=> per-class result\n* average: 12.0%\n"
    log = write_log(tmp_path, text)
    metrics = ptr.read_test_metrics(log)
    assert metrics["accuracy"] == 50.0
    assert "average" not in metrics


def test_newest_log_with_a_result_wins(tmp_path):
    write_log(tmp_path, training_log(60.0), mtime=1_000)
    write_log(tmp_path, training_log(65.0), name="log.txt-2026-01-01-10-00-00", mtime=2_000)
    # the newest log is an unfinished (crashed) rerun: it must not hide the finished result
    write_log(tmp_path, training_log(None), name="log.txt-2026-01-02-10-00-00", mtime=3_000)
    run = ptr.read_run(tmp_path)
    assert run.metrics["accuracy"] == 65.0
    assert run.log.name == "log.txt-2026-01-01-10-00-00"


def test_summary_over_seeds(tmp_path, capsys):
    setting = tmp_path / "caltech101" / "adam_lr2e-3_B256_ep100_4shots"
    accs = [70.0, 72.5, 74.1]
    for seed, acc in enumerate(accs, start=1):
        write_log(setting / f"seed{seed}", training_log(acc))
    assert ptr.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    expected = f"{statistics.mean(accs):.2f}% +- {statistics.pstdev(accs):.2f}%"
    assert f"caltech101/adam_lr2e-3_B256_ep100_4shots: accuracy {expected}" in out
    assert "over 3 run(s)" in out


def test_summary_names_unfinished_seeds(tmp_path, capsys):
    setting = tmp_path / "dtd" / "cfg_1shots"
    write_log(setting / "seed1", training_log(50.0))
    write_log(setting / "seed2", training_log(None, val_accuracies=(30.0,)))
    assert ptr.main([str(setting)]) == 0
    out = capsys.readouterr().out
    assert "accuracy 50.00% +- 0.00% (std) over 1 run(s)" in out
    assert "seed2: no test accuracy" in out


def test_ci95(tmp_path, capsys):
    accs = [60.0, 64.0]
    for seed, acc in enumerate(accs, start=1):
        write_log(tmp_path / f"seed{seed}", training_log(acc))
    ptr.main([str(tmp_path), "--ci95"])
    half_width = 1.96 * statistics.pstdev(accs) / 2**0.5
    assert f"+- {half_width:.2f}% (ci95)" in capsys.readouterr().out


def test_table_of_an_upstream_taskres_grid(tmp_path, capsys):
    """Upstream's TaskRes layout (no config.yaml): FINAL/debug/<dataset>/<config>_<N>shots/seedK."""
    grid = {
        ("caltech101", 1): [80.0, 82.0],
        ("caltech101", 16): [90.0, 91.0],
        ("OxfordPets", 1): [70.0, 74.0],
    }
    for (dataset, shots), accs in grid.items():
        cfg = "adam_lr2e-3_B256_ep100" if shots < 8 else "adam_lr2e-3_B256_ep200"
        for seed, acc in enumerate(accs, start=1):
            run = tmp_path / "FINAL" / "debug" / dataset / f"{cfg}_{shots}shots" / f"seed{seed}"
            write_log(run, training_log(acc))
    assert ptr.main([str(tmp_path), "--table"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at_16 = lines.index(next(line for line in lines if line.startswith("accuracy (%) at 16 shots")))
    assert lines[at_16 + 1].split() == ["method", "Caltech101"]  # the datasets run at 16 shots
    assert lines[at_16 + 3].split() == ["TaskRes", "90.50", "±", "0.50", "(n=2)"]
    by_shots = lines.index(next(line for line in lines if "by shots, averaged over 2" in line))
    assert lines[by_shots + 1].split() == ["method", "1-shot", "16-shot"]
    # 1 shot: per seed (80+70)/2, (82+74)/2 = 75, 78
    assert lines[by_shots + 3].split() == ["TaskRes", "76.50", "±", "1.50", "(n=2)",
                                           "90.50", "±", "0.50", "(n=2)*"]  # fmt: skip


def test_table_collision_is_a_clear_error(tmp_path, capsys):
    for cfg in ("adam_lr2e-3_B256_ep100_1shots", "adam_lr2e-4_B256_ep100_1shots"):
        write_log(tmp_path / "FINAL" / "debug" / "dtd" / cfg / "seed1", training_log(50.0))
    assert ptr.main([str(tmp_path), "--table"]) == 1
    err = capsys.readouterr().err
    assert "same table cell (TaskRes on DTD, 1 shot, seed 1)" in err
    assert "point the tool at a narrower folder" in err
    assert ptr.main([str(tmp_path / "FINAL" / "debug" / "dtd" / cfg), "--table"]) == 0


def test_empty_folder_and_missing_folder(tmp_path, capsys):
    assert ptr.main([str(tmp_path)]) == 1
    assert "no log.txt found" in capsys.readouterr().err
    assert ptr.main([str(tmp_path / "nope")]) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_finished_flag_exit_status(tmp_path):
    done = tmp_path / "done"
    write_log(done, training_log(10.0))
    running = tmp_path / "running"
    write_log(running, training_log(None, val_accuracies=(5.0,)))
    script = str(REPO / "tools" / "parse_test_res.py")
    # Once from a bare interpreter, as a shell runs it; then forked with torch imported.
    assert subprocess.run([sys.executable, script, "--finished", str(done)]).returncode == 0
    assert run_python([script, "--finished", str(running)])[0] == 1
    assert run_python([script, "--finished", str(tmp_path / "never-started")])[0] == 1


@pytest.mark.parametrize("name", ["caltech101", "Caltech101", "CALTECH101"])
def test_dataset_recognised_by_config_or_registered_name(name):
    assert ptr.dataset_of(("runs", name, "x_2shots")) == "caltech101"
    assert ptr.shots_of(("runs", name, "x_2shots")) == 2


def test_runs_with_fewer_images_than_shots_are_filed_under_the_actual_count(tmp_path, capsys):
    from dassl.evaluation.result_record import write_result_record
    from tests.tools.logs import write_config
    from tools.results.runs import collect_records, collect_settings

    run_dir = tmp_path / "caltech101" / "seed1"
    write_config(run_dir, DATASET__NUM_SHOTS=16)
    write_log(run_dir, training_log(None))  # the record, not the log, holds the result
    shots = {"requested": 16, "per_class_min": 5, "per_class_max": 8}
    write_result_record(
        run_dir,
        {"split": "test", "accuracy": 70.0, "error": 30.0, "macro_f1": 69.0, "shots": shots},
    )
    (record,) = collect_records(collect_settings(tmp_path))
    assert record.facts.shots == 8 and record.value("accuracy") == 70.0
    assert ptr.main([str(tmp_path)]) == 0
    assert (
        "seed1: trained on 5 to 8 shots per class (DATASET.NUM_SHOTS 16" in capsys.readouterr().out
    )


def test_runs_behind_symlinks_are_followed_and_counted_once(tmp_path, capsys):
    """A results root gathering runs by links: each run read once, link loops cut."""
    storage = tmp_path / "storage" / "caltech101" / "adam_lr2e-3_B256_ep100_4shots"
    for seed, acc in enumerate([70.0, 72.0], start=1):
        write_log(storage / f"seed{seed}", training_log(acc))
    root = tmp_path / "results"
    root.mkdir()
    (root / "a_link").symlink_to(storage, target_is_directory=True)
    (root / "b_same_run").symlink_to(storage, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)
    assert ptr.main([str(root)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == ["a_link: accuracy 71.00% +- 1.00% (std) over 2 run(s) "
                                "[seed1 70.00, seed2 72.00]"]  # fmt: skip
