"""The grid command for real: the shipped TaskRes grid narrowed to 2 datasets x 2 shots x 2 seeds,
run by train.py with the tiny CLIP on two tiny datasets (Caltech101's and DTD's layouts), through
the local launcher and through submitit's LocalExecutor (no Slurm, nothing mocked).

Two module fixtures build one output folder, each once, whichever test asks first: seed 1
through the local launcher, where one job is killed mid-run (the others finish); then the whole
grid through submitit, which skips the finished cells, resumes the killed one and requeues it when
it gets the preemption signal. The tests read what they recorded, and the re-runs that skip
everything or report a changed config leave the folder as they found it, so each test passes
alone and in any order.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.datasets.conftest import write_split_dataset
from tests.engine.test_run_identity import snapshot
from tools.demo import write_demo_checkpoint, write_demo_dataset
from tools.parse_test_res import read_run
from tools.sweep import orphans
from tools.sweep.cli import main as sweep_main
from tools.sweep.grid import GridError, expand, load_grid
from tools.sweep.job import CellJob
from tools.sweep.launch import SlurmOptions, local_devices, make_executor

REPO = Path(__file__).resolve().parents[2]
GRID = REPO / "configs" / "grids" / "taskres_regular.yaml"
CONFIG = "adam_lr2e-3_B256_ep100"  # the grid's choice for 1 and 2 shots outside ImageNet
NARROW = ["--datasets", "caltech101", "dtd", "--shots", "1", "2", "--seeds", "1", "2"]
CELLS = [(d, s, seed) for s in (1, 2) for d in ("caltech101", "dtd") for seed in (1, 2)]
DTD_CLASSES = ("banded", "blotchy", "braided")


def cell_dir(out: Path, dataset: str, shots: int, seed: int) -> Path:
    """Where scripts/taskres/main.sh puts this run (the layout the grid must keep)."""
    return out / "FINAL" / "debug" / dataset / f"{CONFIG}_{shots}shots" / f"seed{seed}"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("sweep")
    data = tmp / "data"
    write_demo_dataset(data, per_class=(4, 2, 4))
    write_split_dataset(
        data / "dtd" / "images",
        data / "dtd" / "split_zhou_DescribableTextures.json",
        dict.fromkeys(DTD_CLASSES, (4, 2, 4)),
    )
    clip = write_demo_checkpoint(tmp / "clip.pt")
    tiny = [
        "MODEL.BACKBONE.NAME", str(clip), "INPUT.SIZE", "(32, 32)", "USE_CUDA", "False",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "8",
        "TRAINER.TaskRes.PREC", "fp32", "TRAIN.PRINT_FREQ", "100",
    ]  # fmt: skip
    return {"data": data, "out": tmp / "out", "tiny": tiny, "tmp": tmp}


EPOCHS = 50  # long enough to be killed mid-run (an epoch of the tiny model takes ~30 ms)


def sweep_argv(world: dict, out: Path, *options: str, epochs: int = EPOCHS) -> list[str]:
    return [
        str(GRID), "--root", str(world["data"]), "--output-root", str(out), *NARROW, *options,
        *world["tiny"], "OPTIM.MAX_EPOCH", str(epochs), "TRAIN.CHECKPOINT_FREQ", "1",
    ]  # fmt: skip


def start_sweep(argv: list[str]) -> subprocess.Popen:
    """``python -m tools.sweep`` from the repository root, as a user runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "tools.sweep", *argv],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def _train_pid(run_dir: Path, proc: subprocess.Popen) -> int:
    """The train.py process writing ``run_dir`` (found before it trains, so that a signal sent
    right after a checkpoint appears lands mid-run)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        for entry in Path("/proc").iterdir():
            try:
                args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except (OSError, ValueError):
                continue
            if "train.py" in args and str(run_dir) in args:
                return int(entry.name)
        time.sleep(0.05)
    raise AssertionError(f"no train.py for {run_dir} started in time")


def _saved_epoch(run_dir: Path) -> int:
    """The epoch of the run's latest checkpoint (0 before the first)."""
    pointer = run_dir / "prompt_learner" / "checkpoint"
    text = pointer.read_text().strip() if pointer.is_file() else ""
    match = re.fullmatch(r"model\.pth\.tar-(\d+)", text)
    return int(match.group(1)) if match else 0


def _wait_for_epoch(run_dir: Path, after: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while _saved_epoch(run_dir) <= after:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.005)


def _parent(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^PPid:\s+(\d+)$", status, re.MULTILINE).group(1))


@pytest.fixture(scope="module")
def local_sweep(world) -> dict:
    """Seed 1 through the local launcher on two workers; the first cell's train.py is SIGKILLed
    after its first saved epoch (the others finish). What the tests check is recorded here, as
    it was when this sweep ended."""
    killed = cell_dir(world["out"], "caltech101", 1, 1)
    proc = start_sweep(sweep_argv(world, world["out"], "--seeds", "1", "--workers", "2"))
    pid = _train_pid(killed, proc)
    _wait_for_epoch(killed, 0, proc)
    os.kill(pid, signal.SIGKILL)
    code, out = finish(proc)
    return {
        "code": code,
        "out": out,
        "killed": killed,
        "killed_metrics": read_run(killed).metrics,
        "killed_at": _saved_epoch(killed),
    }


@pytest.fixture(scope="module")
def submitit_sweep(world, local_sweep) -> dict:
    """The whole grid through submitit after ``local_sweep``: it skips the finished cells and
    resumes the killed one, whose job gets USR2 (as from Slurm) after it saved a later epoch."""
    listing = io.StringIO()
    with contextlib.redirect_stdout(listing):
        dry_run_status = sweep_main(["--dry-run", *sweep_argv(world, world["out"])])
    finished = cell_dir(world["out"], "dtd", 1, 1)
    before = snapshot(finished)
    resumed = local_sweep["killed"]
    submitit = ["--launcher", "slurm", "--submitit-cluster", "local", "--gpus-per-job", "0"]
    proc = start_sweep(sweep_argv(world, world["out"], *submitit))
    pid = _train_pid(resumed, proc)
    _wait_for_epoch(resumed, local_sweep["killed_at"], proc)
    preempted_at = _saved_epoch(resumed)
    os.kill(_parent(pid), signal.SIGUSR2)  # the submitit worker running this cell
    code, out = finish(proc)
    return {
        "dry_run_status": dry_run_status,
        "listing": listing.getvalue(),
        "finished_before": before,
        "finished_after": snapshot(finished),
        "preempted_at": preempted_at,
        "code": code,
        "out": out,
    }


@pytest.mark.slow
def test_local_launcher_runs_two_workers_and_a_killed_job_does_not_stop_the_others(
    world, local_sweep
):
    """Seed 1 only; the first cell's train.py is SIGKILLed after its first saved epoch."""
    code, out = local_sweep["code"], local_sweep["out"]
    assert code == 1, out
    assert "Running on 2 CPU worker(s)" in out
    assert (
        "Summary: 3 done, 1 failed, 0 skipped (already finished), 0 conflicting, 0 blocked" in out
    )
    assert re.search(r"\[\d/4 done, 2 running, \d failed, \d waiting \| elapsed [0-9:]+, ETA", out)
    (failed,) = [line for line in out.splitlines() if line.startswith("  failed ")]
    assert "caltech101 1-shot seed 1" in failed and "train.py exited with status -9" in failed
    assert local_sweep["killed_metrics"] is None
    assert 1 <= local_sweep["killed_at"] < EPOCHS
    for dataset, shots in (("dtd", 1), ("caltech101", 2), ("dtd", 2)):
        log = cell_dir(world["out"], dataset, shots, 1) / "log.txt"
        assert read_run(log.parent).metrics is not None
        assert re.search(rf"\n  done +{dataset} {shots}-shot seed 1 +{re.escape(str(log))}\n", out)
    # The results table of this grid's finished cells ends the output.
    assert re.search(r"\nmethod +Caltech101 +DTD +Average\n", out)
    assert re.search(r"\nTaskRes +\d+\.\d+ \(n=1\) +\d+\.\d+ \(n=1\) +\d+\.\d+ \(n=1\)\n", out)


@pytest.mark.slow
def test_submitit_path_skips_finished_cells_and_requeues_a_preempted_job(
    world, local_sweep, submitit_sweep
):
    """The killed cell resumes; when its job gets the signal Slurm sends before a time limit or
    a preemption (USR2), submitit's checkpoint stops train.py and requeues it, and it resumes."""
    assert submitit_sweep["dry_run_status"] == 0
    listing = submitit_sweep["listing"]
    assert "3 finished, 5 pending, 0 conflicting, 0 blocked" in listing
    assert re.search(r"pending +caltech101 1-shot seed 1 .*seed1 \(resumes\)", listing)

    code, out = submitit_sweep["code"], submitit_sweep["out"]
    assert code == 0, out
    assert "5 to run, 3 already finished (skipped)" in out
    assert re.search(r"Submitted 5 job\(s\) \(\d+", out)
    assert "Summary: 5 done, 0 failed, 3 skipped (already finished)" in out
    assert submitit_sweep["finished_after"] == submitit_sweep["finished_before"]
    for dataset, shots, seed in CELLS:
        assert read_run(cell_dir(world["out"], dataset, shots, seed)).metrics is not None
    job_files = world["out"] / "sweeps/taskres_regular/submitit"
    assert len(list(job_files.glob("*_result.pkl"))) == 5
    job_logs = "".join(p.read_text() for p in job_files.glob("*_log.out"))
    assert "Calling checkpoint method." in job_logs and "Requeued job" in job_logs

    console = (
        world["out"] / f"sweeps/taskres_regular/console/FINAL/debug/caltech101/{CONFIG}_1shots"
    )
    text = (console / "seed1.txt").read_text()
    assert text.count(f"train.py --root {world['data']}") == 3  # killed, preempted, finished
    starts = [int(e) for e in re.findall(r"Previous epoch: (\d+)", text)]
    assert len(starts) == 2
    killed_at, preempted_at = local_sweep["killed_at"], submitit_sweep["preempted_at"]
    assert killed_at <= starts[0] < preempted_at <= starts[1] < EPOCHS
    assert f"epoch [{EPOCHS}/{EPOCHS}]" in text
    # The methods x shots table: both seeds of every cell counted.
    cell = r"\d+\.\d+ ± \d+\.\d+ \(n=2\)"
    assert re.search(rf"\nmethod +1-shot +2-shot\n-+ +-+ +-+\nTaskRes +{cell} +{cell}\n", out)


@pytest.mark.slow
def test_overrides_and_per_cell_choices_reach_every_cell(world, submitit_sweep):
    for dataset, shots, seed in CELLS:
        run_dir = cell_dir(world["out"], dataset, shots, seed)
        recorded = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert recorded["MODEL"]["BACKBONE"]["NAME"] == world["tiny"][1]
        assert recorded["OPTIM"]["MAX_EPOCH"] == EPOCHS  # the command line's, not the config's
        assert recorded["OPTIM"]["LR"] == 0.002
        assert recorded["DATASET"]["NUM_SHOTS"] == shots
        assert recorded["SEED"] == seed
        assert recorded["TRAINER"]["TaskRes"]["RESIDUAL_SCALE"] == 0.5


@pytest.mark.slow
def test_rerun_skips_every_finished_cell(world, submitit_sweep, capsys):
    before = {c: snapshot(cell_dir(world["out"], *c)) for c in CELLS}
    assert sweep_main(sweep_argv(world, world["out"], "--dry-run")) == 0
    listing = capsys.readouterr().out
    assert listing.count("  finished ") == 8 and "0 pending, 0 conflicting" in listing

    assert sweep_main(sweep_argv(world, world["out"])) == 0
    out = capsys.readouterr().out
    assert "0 to run, 8 already finished (skipped)" in out
    assert "Summary: 0 done, 0 failed, 8 skipped (already finished), 0 conflicting" in out
    assert {c: snapshot(cell_dir(world["out"], *c)) for c in CELLS} == before


@pytest.mark.slow
def test_a_scripts_run_and_a_grid_cell_are_the_same_run(world, submitit_sweep):
    """scripts/taskres/main.sh with the same settings finds the grid's run finished: it skips."""
    env = {**os.environ, "PYTHON": sys.executable, "DATA": str(world["data"]),
           "OUTPUT_ROOT": str(world["out"]), "SEEDS": "2", "OMP_NUM_THREADS": "1"}  # fmt: skip
    result = subprocess.run(
        ["bash", "scripts/taskres/main.sh", "dtd", CONFIG, "none", "2", "0.5", *world["tiny"],
         "OPTIM.MAX_EPOCH", str(EPOCHS)],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"Skipping {cell_dir(world['out'], 'dtd', 2, 2)}: it already holds a finished run" in (
        result.stdout
    )


@pytest.mark.slow
def test_a_changed_config_is_reported_with_its_keys_and_left_alone(world, submitit_sweep, capsys):
    before = {c: snapshot(cell_dir(world["out"], *c)) for c in CELLS}
    changed = [*sweep_argv(world, world["out"], "--seeds", "1"), "OPTIM.LR", "0.05"]
    assert sweep_main(["--dry-run", *changed]) == 0
    listing = capsys.readouterr().out
    assert listing.count("  conflicting ") == 4
    assert listing.count("- OPTIM.LR: 0.002 in the folder, 0.05 now") == 4

    assert sweep_main(changed) == 1
    out = capsys.readouterr().out
    assert "0 to run, 0 already finished (skipped), 4 not run (conflicting or blocked)" in out
    assert "Summary: 0 done, 0 failed, 0 skipped (already finished), 4 conflicting" in out
    # In full for each cell, then on each cell's summary line after the folder it names.
    assert out.count("- OPTIM.LR: 0.002 in the folder, 0.05 now") == 8
    assert out.count("config.yaml): - OPTIM.LR: 0.002 in the folder, 0.05 now\n") == 4
    assert {c: snapshot(cell_dir(world["out"], *c)) for c in CELLS} == before


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stopped_sweep_reports_the_running_job_interrupted_and_starts_no_other(world, stop):
    out = world["tmp"] / f"stopped-{stop.name}"
    argv = sweep_argv(world, out, "--datasets", "caltech101", "--shots", "1", "--workers", "1")
    proc = start_sweep(argv)
    pid = _train_pid(cell_dir(out, "caltech101", 1, 1), proc)
    proc.send_signal(stop)
    code, output = finish(proc)
    assert code == 130, output
    summary = output.split("\nSummary: ")[1]
    assert summary.startswith("0 done, 0 failed,") and ", 1 interrupted;" in summary, output
    assert re.search(r"\n  interrupted +caltech101 1-shot seed 1 +train\.py exited", summary)
    assert summary.rstrip().endswith(
        "Interrupted: run the same command to resume (finished cells are skipped, interrupted "
        "ones continue from their last saved epoch)."
    )
    assert "start  caltech101 1-shot seed 2" not in output
    assert not Path(f"/proc/{pid}").exists()


def _gone(pid: int) -> bool:
    """Whether a process has exited (a zombie nobody has reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _all_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not all(_gone(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.slow
def test_a_sigkilled_sweep_stops_its_train_py_children(world):
    """No orphan goes on writing its folder: each train.py gets SIGTERM, saves and exits."""
    out = world["tmp"] / "orphans"
    argv = sweep_argv(world, out, "--shots", "1", "--seeds", "1", "--workers", "2", epochs=5000)
    proc = start_sweep(argv)
    runs = [cell_dir(out, dataset, 1, 1) for dataset in ("caltech101", "dtd")]
    pids = [_train_pid(run, proc) for run in runs]
    try:
        for run in runs:
            _wait_for_epoch(run, 0, proc)
        proc.kill()
        proc.communicate()
        assert _all_gone(pids, timeout=30)
    finally:
        for pid in pids:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
    for run in runs:
        console = out / "sweeps/taskres_regular/console" / run.relative_to(out).parent
        text = (console / f"{run.name}.txt").read_text()
        # The signal lands inside an epoch or between two; either way the run stops cleanly.
        assert re.search(r"Interrupted by SIGTERM during (the start of )?epoch", text), text[-2000:]
        assert 1 <= _saved_epoch(run) < 5000


def test_without_the_kernel_signal_a_watchdog_stops_the_orphan():
    """The fallback where Linux's parent-death signal is missing: a watchdog process stops the
    child once its parent dies, and not before."""
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time\n"
         "from tools.sweep import orphans\n"
         "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
         "orphans.watch(child.pid)\n"
         "print(child.pid, flush=True)\n"
         "time.sleep(60)\n"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    child = int(parent.stdout.readline())
    try:
        time.sleep(3 * orphans.WATCH_POLL_S)
        assert not _gone(child)
        parent.kill()
        parent.communicate()
        assert _all_gone([child], timeout=10 * orphans.WATCH_POLL_S)
    finally:
        if not _gone(child):
            os.kill(child, signal.SIGKILL)


def test_options_after_the_overrides_are_refused(world, capsys):
    with pytest.raises(SystemExit):
        sweep_main([*sweep_argv(world, world["out"]), "--dry-run"])
    assert "--dry-run comes after the KEY VALUE overrides" in capsys.readouterr().err


def test_grid_files_name_their_mistakes(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: TaskRes\nconfig: TaskRes/adam_lr2e-3_B256_ep100\ndataset: [dtd]\n")
    with pytest.raises(GridError, match=r"Unknown key 'dataset' in grid file .*bad.yaml.*datasets"):
        load_grid(bad)
    bad.write_text(
        "trainer: TaskRes\nconfig: TaskRes/adam_lr{lr}\ndatasets: [dtd]\noutput: '{dataset}'\n"
    )
    with pytest.raises(GridError, match=r'"config" of stage "bad".* uses \{lr\}'):
        expand(load_grid(bad), "data", tmp_path)
    with pytest.raises(
        GridError, match="shots 3 is not in grid .*; its shots values are: 1 2 4 8 16"
    ):
        expand(load_grid(GRID), "data", tmp_path, shots=[3])


@pytest.mark.parametrize(
    ("grid", "count", "first_dir"),
    [
        ("taskres_regular", 165, "FINAL/debug/stanford_cars/adam_lr2e-3_B256_ep100_1shots/seed1"),
        (
            "taskres_enhanced",
            330,
            "FINAL/enhanced_base/stanford_cars/adam_lr2e-4_B256_ep100_1shots/seed1",
        ),
        ("coop", 165, "stanford_cars/CoOp/rn50_ep50_1shots/nctx16_cscFalse_ctpend/seed1"),
        ("cocoop", 165, "stanford_cars/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1_1shots/seed1"),
        (
            "base_to_new",
            66,
            "base2new/train_base/stanford_cars/shots_16/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1/seed1",
        ),
        ("clip_adapter", 165, "stanford_cars/CLIP_Adapter/rn50_1shots/ratio0.2/seed1"),
        ("kgcoop", 165, "stanford_cars/KgCoOp/rn50_ep100_1shots/w8.0/seed1"),
        ("prograd", 165, "stanford_cars/ProGrad/rn50_ep50_1shots/lambda1.0/seed1"),
        ("linear_probe", 165, "stanford_cars/LinearProbeCLIP/rn50_1shots/seed1"),
        ("clap", 165, "stanford_cars/CLAP/SGD_lr1e-1_B256_ep300_ZSInit_l2Constraint_1shots/seed1"),
        ("clip_lora", 165, "stanford_cars/CLIP_LoRA/vit_b16_1shots/seed1"),
        ("zeroshot_single", 15, "ZeroshotCLIP/rn50/stanford_cars"),
        ("zeroshot_ensemble", 15, "ZeroshotCLIP2/rn50/stanford_cars"),
        ("generalization", 15, "FINAL/debug/imagenet/generalization_rn50_16shots/seed1"),
        # 3 ImageNet trainings, then 14 targets x 3 seeds
        (
            "cross_dataset",
            45,
            "xd/train/imagenet/shots_16/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1/seed1",
        ),
        # 10 datasets x 5 shot counts x 3 seeds x 6 candidates (alpha x lr)
        (
            "taskres_search",
            900,
            "FINAL/search_candidates/stanford_cars/adam_lr2e-4_alpha0.25_ep100_1shots/seed1",
        ),
        (
            "taskres_validation_free",
            165,
            "FINAL/validation_free_val_none/stanford_cars/adam_lr2e-3_B256_ep100_alpha0.5_1shots/seed1",
        ),
        (
            "coop_validation_free",
            165,
            "validation_free_val_none/stanford_cars/CoOp/rn50_ep50_1shots/seed1",
        ),
        (
            "clip_adapter_validation_free",
            165,
            "validation_free_val_none/stanford_cars/CLIP_Adapter/rn50_1shots/ratio0.2/seed1",
        ),
    ],
)
def test_shipped_grids_lay_out_runs_as_the_scripts_do(grid, count, first_dir, tmp_path):
    stages = expand(load_grid(REPO / "configs" / "grids" / f"{grid}.yaml"), "data", tmp_path)
    cells = [cell for cells in stages for cell in cells]
    assert len(cells) == count
    assert cells[0].output_dir == tmp_path / first_dir
    assert len({cell.output_dir for cell in cells}) == count


def test_slurm_options_reach_the_sbatch_script(tmp_path, monkeypatch):
    """The real submitit Slurm executor, up to the sbatch call: Slurm's binaries are stand-ins
    that keep the batch script submitit wrote."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = tmp_path / "batch.sh"
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {script}\necho "Submitted batch job 77"\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    options = SlurmOptions(
        folder=tmp_path / "jobs", partition="gpu", timeout_min=600, gpus_per_job=1,
        cpus_per_job=6, mem_gb=40, array_parallelism=2, job_name="sweep-coop",
        extra={"account": "proj", "qos": "high"},
    )  # fmt: skip
    jobs = [CellJob(["--seed", str(s)], tmp_path / f"c{s}.txt") for s in (1, 2, 3)]
    submitted = make_executor(options).submit_array(jobs)
    assert [job.job_id for job in submitted] == ["77_0", "77_1", "77_2"]
    lines = script.read_text().splitlines()
    for expected in ["--partition=gpu", "--time=600", "--gpus-per-node=1", "--cpus-per-task=6",
                     "--mem=40GB", "--array=0-2%2", "--account=proj", "--qos=high",
                     "--job-name=sweep-coop", "--signal=USR2@90"]:  # fmt: skip
        assert f"#SBATCH {expected}" in lines
    assert f"export PYTHONPATH={REPO}" + "${PYTHONPATH:+:$PYTHONPATH}" in lines


def test_slurm_launcher_without_slurm_says_what_to_do(world, monkeypatch, capsys):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert sweep_main(sweep_argv(world, world["tmp"] / "none", "--launcher", "slurm")) == 2
    assert "needs Slurm's sbatch and srun" in capsys.readouterr().err


def test_local_workers_are_pinned_to_one_device_each(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert local_devices(None, 2) == (["3", "5"], None)
    assert local_devices(3, 2) == (["3", "5", "3"], None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert local_devices(None, 2) == (["0", "1"], None)
    devices, threads = local_devices(2, 0)
    assert devices == ["", ""] and threads == max(1, (os.cpu_count() or 1) // 2)


# ---- grids and options refused before any work ------------------------------------------------


def own_grid(tmp_path: Path, **keys) -> Path:
    """A grid file of 2 datasets x 1 shot count x 2 seeds, with ``keys`` replaced."""
    data = {
        "trainer": "TaskRes", "config": f"TaskRes/{CONFIG}", "datasets": ["caltech101", "dtd"],
        "shots": [1], "seeds": [1, 2], "output": "{dataset}/{shots}shots/seed{seed}", **keys,
    }  # fmt: skip
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_grid_mapping_two_cells_to_one_folder_is_refused_naming_them(tmp_path, capsys):
    grid = own_grid(tmp_path, output="{dataset}/{shots}shots")  # no {seed}
    folder = tmp_path / "out" / "caltech101" / "1shots"
    with pytest.raises(GridError) as refused:
        expand(load_grid(grid), "data", tmp_path / "out")
    assert str(refused.value) == (
        f'Grid file "{grid}" maps the cells caltech101 1-shot seed 1 and caltech101 1-shot '
        f'seed 2 to one folder, {folder}; add {{seed}} to the "output" template so that each '
        "cell writes its own folder."
    )
    assert sweep_main([str(grid), "--output-root", str(tmp_path / "out")]) == 2
    assert "to one folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "output",
    ["../../..", "{dataset}/../../elsewhere/seed{seed}", "/elsewhere/{dataset}/seed{seed}", "."],
)
def test_an_output_outside_the_output_root_is_refused(tmp_path, capsys, output):
    argv = [str(own_grid(tmp_path, output=output)), "--output-root", str(tmp_path / "out")]
    assert sweep_main([*argv, "--dry-run"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert f"is {output!r}, which gives " in line
    assert f"not a folder below the output root {tmp_path / 'out'}" in line
    assert "pass --output-root to write elsewhere" in line


def test_an_absolute_output_below_the_output_root_is_the_relative_one(world, tmp_path, capsys):
    """``{output_root}/...`` spells the same folders; a root given with '..' works too."""
    relative = expand(load_grid(own_grid(tmp_path)), "data", tmp_path / "out")
    absolute = own_grid(tmp_path, output="{output_root}/{dataset}/{shots}shots/seed{seed}")
    roundabout = tmp_path / "x" / ".." / "out"
    assert expand(load_grid(absolute), "data", roundabout) == relative
    argv = [str(absolute), "--root", str(world["data"]), "--output-root", str(roundabout)]
    assert sweep_main([*argv, "--dry-run", *world["tiny"]]) == 0
    listing = capsys.readouterr().out
    assert "pending      caltech101 1-shot seed 1 caltech101/1shots/seed1\n" in listing
    assert "0 finished, 4 pending, 0 conflicting, 0 blocked" in listing


@pytest.mark.parametrize(
    "keys",
    [
        {"output": "{dataset.__class__.__name__}/seed{seed}"},
        {"output": "{dataset[0]}/{shots}shots/seed{seed}"},
        {"output": "{dataset!r}/{shots}shots/seed{seed}"},
        {"output": "{dataset}/seed{seed:03d}"},
        {"opts": {"OPTIM.LR": "{seed.real}"}},
    ],
)
def test_templates_allow_only_plain_fields(tmp_path, keys):
    with pytest.raises(GridError, match=r"templates allow only plain \{name\} fields"):
        expand(load_grid(own_grid(tmp_path, **keys)), "data", tmp_path)


@pytest.mark.parametrize(
    "option",
    [("--workers", "-1"), ("--workers", "0"), ("--progress-interval", "-1"),
     ("--timeout-min", "0"), ("--array-parallelism", "-2")],
)  # fmt: skip
def test_numbers_out_of_range_are_one_usage_line(tmp_path, capsys, option):
    with pytest.raises(SystemExit) as stop:
        sweep_main([str(own_grid(tmp_path)), *option])
    assert stop.value.code == 2
    assert f"argument {option[0]}: '{option[1]}' is not a" in capsys.readouterr().err


def test_cross_dataset_evaluates_each_seeds_imagenet_model_on_every_target(tmp_path):
    grid = load_grid(REPO / "configs" / "grids" / "cross_dataset.yaml")
    for method, trainer in (("CoCoOp", "CoCoOp"), ("CoOp", "CoOp")):
        train, test = [s for s in expand(grid, "data", tmp_path, variables={"method": method}) if s]
        trained = {c.seed: c.output_dir for c in train}
        assert {c.dataset for c in train} == {"imagenet"} and len(test) == 14 * 3
        for cell in test:
            argv = list(cell.argv)
            assert argv[argv.index("--trainer") + 1] == trainer and "--eval-only" in argv
            assert Path(argv[argv.index("--model-dir") + 1]) == trained[cell.seed]


def test_base_to_new_evaluates_each_trained_model_on_the_new_classes(tmp_path):
    grid = load_grid(REPO / "configs" / "grids" / "base_to_new.yaml")
    for method in ("CoCoOp", "CoOp", "KgCoOp"):
        train, new = [s for s in expand(grid, "data", tmp_path, variables={"method": method}) if s]
        trained = {(c.dataset, c.seed): c.output_dir for c in train}
        assert len(train) == len(new) == 33
        for cell in new:
            argv = list(cell.argv)
            assert argv[argv.index("--trainer") + 1] == method
            assert Path(argv[argv.index("--model-dir") + 1]) == trained[cell.dataset, cell.seed]
            assert argv[argv.index("DATASET.SUBSAMPLE_CLASSES") + 1] == "new"


@pytest.mark.parametrize("name", ["linear_probe", "tip_adapter", "gda", "lp_plus_plus"])
def test_grids_that_select_on_val_read_test_on_imagenet_only_and_say_so(name, tmp_path):
    """ImageNet's val split is its test set: those cells reproduce upstream's selection there,
    allowed by TEST.SELECT_ON_TEST (and recorded); every other cell keeps it refused."""
    grid = load_grid(REPO / "configs" / "grids" / f"{name}.yaml")
    for cells in expand(grid, "data", tmp_path, shots=[1], seeds=[1]):
        for cell in cells:
            argv = list(cell.argv)
            allowed = argv[argv.index("TEST.SELECT_ON_TEST") + 1]
            assert allowed == ("True" if cell.dataset == "imagenet" else "False"), cell.dataset
