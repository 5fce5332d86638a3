"""A run folder: its result record, one writer at a time, failed starts, content-based identity
and identity scoped to the run's own method."""

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from clip.clip import _MODELS, _url_sha256, weights_digest
from dassl.config.run_identity import (
    CONFIG_FILE,
    INPUTS_FILE,
    RunConflictError,
    conflict_message,
    content_digests,
    diff_configs,
    flatten,
    inspect_output_dir,
)
from dassl.evaluation.result_record import (
    RESULT_FILE,
    holds_result,
    read_log_metrics,
    read_result_record,
)
from dassl.utils.run_lock import LOCK_FILE, RunFolderBusy, hold_run_folder
from datasets.synthetic import TINY_IMAGES, write_tiny_image_dataset
from tests.support.tiny_run import full_cfg, run_train_in_process
from tools.results.logs import read_run

from .helpers import MODEL_NAME, REPO_ROOT, train_argv

SKIPPED = "already holds a finished run with this config"


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    write_tiny_image_dataset(root)
    return root


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_root) -> Path:
    out = tmp_path_factory.mktemp("folder") / "run"
    run_train_in_process(train_argv(tiny_root, out, OPTIM__MAX_EPOCH="2"))
    return out


def copy_run(run: Path, tmp_path: Path) -> Path:
    """A copy of a finished run (config.yaml names its own OUTPUT_DIR, which is not compared)."""
    return Path(shutil.copytree(run, tmp_path / "run"))


# ---- the result record ----------------------------------------------------------------------


def test_the_engine_records_its_result(finished_run):
    record = read_result_record(finished_run)
    log = read_log_metrics(finished_run / "log.txt")
    assert record["split"] == "test"
    assert round(record["accuracy"], 1) == log["accuracy"]
    assert round(record["macro_f1"], 1) == log["macro_f1"]
    assert round(record["error"], 1) == log["error"]
    assert (record["total"], record["correct"]) == (log["total"], log["correct"])
    # TEST.FINAL_MODEL best_val: model-best.pth.tar, chosen on the val split's 6 items
    assert record["selection"] == {"rule": "best_val", "val_split": "val", "val_size": 6}
    # the config's, nothing searched
    assert record["hyperparameters"] == {"rule": "fixed", "source": "config"}
    assert record["model"]["epoch"] in (1, 2)
    assert record["shots"] == {"requested": -1, "per_class_min": 4, "per_class_max": 4}


def test_last_step_records_the_last_epoch(tmp_path, tiny_root):
    out = tmp_path / "run"
    run_train_in_process(
        train_argv(tiny_root, out, OPTIM__MAX_EPOCH="2", TEST__FINAL_MODEL="last_step")
    )
    record = read_result_record(out)
    assert record["selection"] == {"rule": "last_epoch"}
    assert record["model"] == {"epoch": 2}


def test_an_evaluation_records_the_checkpoint_it_loaded(tmp_path, finished_run, tiny_root):
    out = tmp_path / "eval"
    argv = train_argv(tiny_root, out, OPTIM__MAX_EPOCH="2")
    run_train_in_process(
        ["--eval-only", "--model-dir", str(finished_run), "--load-epoch", "1", *argv]
    )
    record = read_result_record(out)
    assert record["selection"] == {"rule": "fixed"} and record["model"] == {"epoch": 1}
    assert "shots" not in record  # an evaluation trains on nothing


def test_a_log_cut_inside_its_result_block_is_not_finished(tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path)
    (run / RESULT_FILE).unlink()  # an upstream run: only its log tells
    text = (run / "log.txt").read_text()
    cut = text.index("* correct:", text.index("Evaluate on the *test* set"))
    (run / "log.txt").write_text(text[: text.index("\n", cut) + 1])
    assert read_log_metrics(run / "log.txt") is None
    assert not holds_result(run)
    assert read_run(run).metrics is None


def test_the_record_decides_over_the_log(tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path)
    (run / "log.txt").write_text("no result here\n")
    assert (
        holds_result(run)
        and read_run(run).metrics["accuracy"] == read_result_record(run)["accuracy"]
    )
    (run / RESULT_FILE).write_text('{"accuracy": 50.0')  # cut mid-write by hand
    assert not holds_result(run)


def test_log_totals_with_thousands_separators_parse(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text(
        "=> result\n* total: 1,234\n* correct: 1,000\n* accuracy: 81.0%\n* error: 19.0%\n"
        "* macro_f1: 80.0%\n"
    )
    assert read_log_metrics(log) == {
        "total": 1234.0, "correct": 1000.0, "accuracy": 81.0, "error": 19.0, "macro_f1": 80.0,
    }  # fmt: skip


def test_train_py_and_the_sweep_import_no_tools_and_no_method_flags():
    for path in (REPO_ROOT / "train.py", REPO_ROOT / "tools" / "sweep" / "state.py"):
        tree = ast.parse(path.read_text())
        imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [m for m in imported if m == "train" or m.startswith("tools")], path
    assert "enhanced" not in (REPO_ROOT / "tools" / "sweep" / "state.py").read_text()


# ---- actual shots ---------------------------------------------------------------------------


def test_shots_above_the_images_per_class_are_recorded_and_logged(tmp_path, tiny_root):
    out = tmp_path / "run"
    log = run_train_in_process(
        train_argv(tiny_root, out, OPTIM__MAX_EPOCH="1", DATASET__NUM_SHOTS="8")
    )
    assert "DATASET.NUM_SHOTS is 8, but some classes have fewer train images" in log
    assert "trains on 4 per class" in log  # the tiny dataset has 4 train images per class
    shots = read_result_record(out)["shots"]
    assert shots == {"requested": 8, "per_class_min": 4, "per_class_max": 4}


# ---- one writer per folder ------------------------------------------------------------------


def test_a_second_writer_is_refused_before_any_work(tmp_path, tiny_root):
    out = tmp_path / "run"
    argv = train_argv(tiny_root, out, OPTIM__MAX_EPOCH="1")
    with hold_run_folder(str(out)):
        with pytest.raises(RunFolderBusy, match=f"pid {os.getpid()}"):
            run_train_in_process(argv)
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]
    run_train_in_process(argv)  # released: the run goes ahead
    assert holds_result(out)


def test_the_lock_dies_with_its_process(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import sys, time; from dassl.utils.run_lock import hold_run_folder\n"
            "with hold_run_folder(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunFolderBusy):
        with hold_run_folder(str(tmp_path)):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with hold_run_folder(str(tmp_path)):
        pass


# ---- failed starts --------------------------------------------------------------------------


def test_a_failed_start_is_kept_aside_and_the_run_proceeds(tmp_path, tiny_root):
    out = tmp_path / "run"
    empty = tmp_path / "emptydata"
    empty.mkdir()
    with pytest.raises(FileNotFoundError):
        run_train_in_process(train_argv(empty, out, OPTIM__MAX_EPOCH="1"))
    log = run_train_in_process(train_argv(tiny_root, out, OPTIM__MAX_EPOCH="1"))
    assert "never finished an epoch (no checkpoint, no result)" in log
    assert "DATASET.ROOT" in log
    aside = sorted(p.name for p in out.iterdir() if "-failed-" in p.name)
    assert [name.split("-failed-")[0] for name in aside] == ["command.txt", CONFIG_FILE, "log.txt"]
    assert holds_result(out)


def test_a_run_that_finished_an_epoch_is_still_a_conflict(tmp_path, finished_run, tiny_root):
    run = copy_run(finished_run, tmp_path)
    (run / RESULT_FILE).unlink()
    (run / "log.txt").write_text("interrupted\n")  # checkpoints stay: it finished epochs
    with pytest.raises(RunConflictError, match="OPTIM.LR"):
        run_train_in_process(train_argv(tiny_root, run, OPTIM__MAX_EPOCH="2", OPTIM__LR="0.5"))
    assert (run / MODEL_NAME).is_dir() and not list(run.glob("*-failed-*"))


@pytest.mark.parametrize(
    ("launcher", "fix"),
    [
        ("scripts", "OUTPUT_ROOT=<another folder>"),
        ("sweep", "--output-root <another folder>"),
        ("", "pass another --output-dir"),
    ],
)
def test_the_refusal_names_the_fix_of_the_launcher(
    tmp_path, finished_run, tiny_root, monkeypatch, launcher, fix
):
    monkeypatch.setenv("RUN_LAUNCHER", launcher)
    argv = train_argv(tiny_root, finished_run, OPTIM__MAX_EPOCH="2", OPTIM__LR="0.5")
    with pytest.raises(RunConflictError) as err:
        run_train_in_process(argv)
    assert fix in str(err.value) and "Fix: " in str(err.value)


def test_the_scripts_and_the_sweep_say_how_they_launch():
    assert "RUN_LAUNCHER=scripts" in (REPO_ROOT / "scripts" / "common.sh").read_text()
    assert '"RUN_LAUNCHER"] = "sweep"' in (REPO_ROOT / "tools" / "sweep" / "job.py").read_text()


# ---- identity follows content ---------------------------------------------------------------


def test_the_same_data_at_another_root_is_the_same_run(tmp_path, finished_run, tiny_root, capsys):
    moved = Path(shutil.copytree(tiny_root, tmp_path / "staged"))
    run_train_in_process(
        ["--skip-finished", *train_argv(moved, finished_run, OPTIM__MAX_EPOCH="2")]
    )
    assert SKIPPED in capsys.readouterr().out


def test_other_data_at_the_same_root_is_refused(tmp_path, tiny_root):
    root = Path(shutil.copytree(tiny_root, tmp_path / "data"))
    out = tmp_path / "run"
    run_train_in_process(train_argv(root, out, OPTIM__MAX_EPOCH="1"))
    split = root / TINY_IMAGES.dataset_dir / TINY_IMAGES.split_file
    data = json.loads(split.read_text())
    data["test"] = data["test"][:-1]
    split.write_text(json.dumps(data))
    with pytest.raises(RunConflictError, match=r"DATASET.ROOT \(content\)"):
        run_train_in_process(["--skip-finished", *train_argv(root, out, OPTIM__MAX_EPOCH="1")])


def test_a_run_recorded_without_digests_compares_the_root(tmp_path, finished_run, tiny_root):
    run = copy_run(finished_run, tmp_path)
    (run / INPUTS_FILE).unlink()  # written before content digests existed
    run_train_in_process(["--skip-finished", *train_argv(tiny_root, run, OPTIM__MAX_EPOCH="2")])
    moved = Path(shutil.copytree(tiny_root, tmp_path / "staged"))
    with pytest.raises(RunConflictError, match="DATASET.ROOT"):
        run_train_in_process(["--skip-finished", *train_argv(moved, run, OPTIM__MAX_EPOCH="2")])


def test_the_backbone_compares_by_weights(tmp_path):
    defaults = flatten(full_cfg())
    old = {**defaults, "MODEL.BACKBONE.NAME": "/a/w.pt"}
    new = {**defaults, "MODEL.BACKBONE.NAME": "/b/w.pt"}
    same = {"MODEL.BACKBONE.NAME": {"weights": "1" * 64}}
    other = {"MODEL.BACKBONE.NAME": {"weights": "2" * 64}}
    assert diff_configs(old, new, defaults, same, same) == []
    assert [d.key for d in diff_configs(old, old, defaults, same, other)] == [
        "MODEL.BACKBONE.NAME (content)"
    ]
    assert [d.key for d in diff_configs(old, new, defaults, {}, same)] == ["MODEL.BACKBONE.NAME"]


def test_weights_replaced_in_place_get_a_new_digest(tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(b"a" * 1000)
    first = weights_digest(str(path))
    stat = path.stat()
    path.write_bytes(b"b" * 1000)  # same size, mtime restored as cp -p would
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert weights_digest(str(path)) != first
    assert weights_digest("RN50") == _url_sha256(_MODELS["RN50"])
    assert weights_digest("ViT-B-32-quickgelu") is None  # compared by name


# ---- identity is scoped to the run's own method ---------------------------------------------


def test_other_methods_nodes_are_not_compared():
    defaults = flatten(full_cfg())
    run = {**defaults, "TRAINER.NAME": "TaskRes"}
    recorded = {**run, "TRAINER.TIP_ADAPTER.PREC": "fp16", "TRAINER.COOP.N_CTX": 4}
    assert diff_configs(recorded, run, defaults) == []  # a moved-away method, another method
    recorded["TRAINER.TaskRes.RESIDUAL_SCALE"] = 0.1
    recorded["TRAINER.PROTOCOL"] = "plain"
    assert [d.key for d in diff_configs(recorded, run, defaults)] == [
        "TRAINER.PROTOCOL",
        "TRAINER.TaskRes.RESIDUAL_SCALE",
    ]


def test_an_enhanced_base_compares_by_content(tmp_path):
    """A TaskRes* run's base file is an input: rebuilt in place it is another run; the same file
    under another path is the same run."""
    import trainers  # noqa: F401  (registers TaskRes)

    base = tmp_path / "built" / "enhanced_base.pth.tar"
    base.parent.mkdir()
    base.write_bytes(b"first base")
    cfg = full_cfg({"TRAINER.NAME": "TaskRes", "TRAINER.TaskRes.ENHANCED_BASE": str(base)})
    defaults, run = flatten(full_cfg()), flatten(cfg)
    first = content_digests(cfg)
    assert "TRAINER.TaskRes.ENHANCED_BASE" in first

    base.write_bytes(b"other base")  # the base stage ran again in place
    rebuilt = content_digests(cfg)
    assert [d.key for d in diff_configs(run, run, defaults, first, rebuilt)] == [
        "TRAINER.TaskRes.ENHANCED_BASE (content)"
    ]

    copy = tmp_path / "copy.pth.tar"
    shutil.copy(base, copy)
    moved = full_cfg({"TRAINER.NAME": "TaskRes", "TRAINER.TaskRes.ENHANCED_BASE": str(copy)})
    assert diff_configs(run, flatten(moved), defaults, rebuilt, content_digests(moved)) == []


def test_a_finished_run_stays_finished_when_a_method_goes(
    tmp_path, finished_run, tiny_root, capsys
):
    run = copy_run(finished_run, tmp_path)
    config = (run / CONFIG_FILE).read_text()
    (run / CONFIG_FILE).write_text(
        config.replace("TRAINER:\n", "TRAINER:\n  GHOST:\n    PREC: fp16\n")
    )
    run_train_in_process(["--skip-finished", *train_argv(tiny_root, run, OPTIM__MAX_EPOCH="2")])
    assert SKIPPED in capsys.readouterr().out


def test_conflict_message_in_sweep_terms(finished_run, tiny_root):
    cfg = full_cfg({"DATASET.NAME": "TinyImages", "DATASET.ROOT": str(tiny_root)})
    cfg.OUTPUT_DIR = str(finished_run)
    status = inspect_output_dir(cfg, full_cfg())
    assert "Fix: run the grid again with --output-root" in conflict_message(status, "sweep")


def test_a_resumed_run_names_its_earlier_logs(tmp_path, finished_run, tiny_root):
    run = copy_run(finished_run, tmp_path)
    (run / RESULT_FILE).unlink()  # as if killed before its final test: the re-run resumes
    log = run_train_in_process(train_argv(tiny_root, run, OPTIM__MAX_EPOCH="2"))
    assert "Earlier logs of this folder, oldest first: log.txt. This log holds only" in log
    assert len(list(run.glob("log.txt-*"))) == 1
