"""Launchers: run cells on this machine's GPUs (or CPU workers), or as a submitit job array.

Neither schedules anything itself: the local launcher is a thread pool whose workers each own one
device and run one train.py at a time; the Slurm launcher submits one job array through submitit
and follows its jobs. Both report every start and end to ``Progress``.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import os
import queue
import shlex
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from .grid import Cell
from .job import REPO, CellJob

DONE, FAILED = "done", "failed"
INTERRUPTED = "interrupted"  # stopped by the sweep's Ctrl-C or SIGTERM: resumes on a re-run


@dataclass
class Outcome:
    cell: Cell
    status: str  # DONE, FAILED or INTERRUPTED
    seconds: float
    error: str = ""
    logs: list[Path] = field(default_factory=list)  # where to look: console log, job logs


def format_duration(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


class Progress:
    """Counts cells done, running and failed, with elapsed time and an ETA, printed on every
    change and every ``interval`` seconds."""

    def __init__(self, total: int, stream: TextIO, interval: float = 30.0) -> None:
        self.total = total
        self.stream = stream
        self.interval = interval
        self.start = time.monotonic()
        self.running = 0
        self.outcomes: list[Outcome] = []
        self._last_print = 0.0
        self._lock = threading.Lock()

    def started(self, cell: Cell, where: str = "") -> None:
        with self._lock:
            self.running += 1
            self._print(f"start  {cell.label}{f' on {where}' if where else ''}")

    def finished(self, outcome: Outcome, was_running: bool = True) -> None:
        with self._lock:
            self.running -= was_running
            self.outcomes.append(outcome)
            took = f" after {format_duration(outcome.seconds)}" if outcome.seconds else ""
            line = f"{outcome.status:<6} {outcome.cell.label}{took}"
            if outcome.error:
                line += f": {outcome.error}"
            self._print(line)

    def tick(self) -> None:
        with self._lock:
            if time.monotonic() - self._last_print >= self.interval:
                self._print("")

    def status_line(self) -> str:
        done = sum(o.status == DONE for o in self.outcomes)
        failed = sum(o.status == FAILED for o in self.outcomes)
        elapsed = time.monotonic() - self.start
        left = self.total - len(self.outcomes)
        eta = format_duration(elapsed / len(self.outcomes) * left) if self.outcomes else "unknown"
        return (
            f"[{done}/{self.total} done, {self.running} running, {failed} failed, "
            f"{left - self.running} waiting | elapsed {format_duration(elapsed)}, ETA {eta}]"
        )

    def _print(self, event: str) -> None:
        if event:
            print(event, file=self.stream)
        print(self.status_line(), file=self.stream, flush=True)
        self._last_print = time.monotonic()


def local_devices(workers: int | None, gpu_count: int) -> tuple[list[str], int | None]:
    """One device per worker (GPU ids reused round-robin when there are more workers than GPUs)
    and the threads each CPU worker may use; without GPUs every worker hides them ("")."""
    if gpu_count:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        ids = [d for d in visible.split(",") if d][:gpu_count] or [str(i) for i in range(gpu_count)]
        count = workers or len(ids)
        return [ids[i % len(ids)] for i in range(count)], None
    count = workers or 1
    return [""] * count, max(1, (os.cpu_count() or 1) // count)


def run_local(
    cells: Sequence[Cell],
    jobs: Sequence[CellJob],
    devices: Sequence[str],
    threads: int | None,
    progress: Progress,
    poll_s: float = 1.0,
) -> list[Outcome]:
    """Run the jobs on a thread pool with one worker per entry of ``devices``; each job runs on
    the device of the worker that takes it. Ctrl-C or SIGTERM stops the running train.py
    processes (they save and exit; their outcome is INTERRUPTED) and starts no new one;
    re-running the grid resumes them."""
    free: queue.Queue[str] = queue.Queue()
    for device in devices:
        free.put(device)
    running: set[CellJob] = set()
    stopping = threading.Event()

    def run_one(cell: Cell, job: CellJob) -> None:
        if stopping.is_set():
            return
        job.device, job.threads = free.get(), threads
        start = time.monotonic()
        running.add(job)
        if stopping.is_set():  # stopped while this worker waited for its device
            running.discard(job)
            free.put(job.device)
            return
        progress.started(cell, "CPU" if job.device == "" else f"GPU {job.device}")
        try:
            job()
            outcome = Outcome(cell, DONE, time.monotonic() - start, logs=[job.console])
        except Exception as err:  # a failing cell does not stop the others
            status = INTERRUPTED if stopping.is_set() else FAILED
            outcome = Outcome(cell, status, time.monotonic() - start, str(err), [job.console])
        finally:
            running.discard(job)
            free.put(job.device)
        progress.finished(outcome)

    with concurrent.futures.ThreadPoolExecutor(len(devices)) as pool, _stop_on_sigterm():
        futures = [pool.submit(run_one, cell, job) for cell, job in zip(cells, jobs)]
        try:
            while not _wait_some(futures, poll_s):
                progress.tick()
        except KeyboardInterrupt:
            stopping.set()
            for future in futures:
                future.cancel()
            for job in list(running):
                job.stop()
            concurrent.futures.wait(futures)
            raise
    return list(progress.outcomes)


def _wait_some(futures: list[concurrent.futures.Future], timeout: float) -> bool:
    _, pending = concurrent.futures.wait(futures, timeout=timeout)
    return not pending


class _stop_on_sigterm:
    """SIGTERM to the grid command stops it as Ctrl-C does (main thread only)."""

    def __enter__(self) -> None:
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, _raise_interrupt)

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@dataclass
class SlurmOptions:
    """What a cluster user sets; ``extra`` goes to sbatch as ``--key=value``."""

    folder: Path
    cluster: str = "slurm"  # "local": the same submitit path on this machine (LocalExecutor)
    partition: str | None = None
    timeout_min: int = 24 * 60
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    mem_gb: int | None = None
    array_parallelism: int | None = None
    max_requeues: int = 3
    job_name: str = "sweep"
    extra: dict[str, str] = field(default_factory=dict)


def make_executor(options: SlurmOptions):
    """A submitit executor for ``options.cluster``: the Slurm parameters are passed with the
    ``slurm_`` prefix, which submitit's other executors ignore."""
    import submitit

    cluster = options.cluster
    executor = submitit.AutoExecutor(
        folder=options.folder, cluster=cluster,
        **{f"{cluster}_max_num_timeout": options.max_requeues},
    )  # fmt: skip
    executor.update_parameters(
        name=options.job_name,
        timeout_min=options.timeout_min,
        gpus_per_node=options.gpus_per_job,
        cpus_per_task=options.cpus_per_job,
        mem_gb=options.mem_gb,
        nodes=1,
        tasks_per_node=1,
        slurm_partition=options.partition,
        slurm_array_parallelism=options.array_parallelism,
        slurm_additional_parameters=options.extra or None,
        # The job unpickles CellJob from this repository, wherever it was submitted from.
        slurm_setup=[f"export PYTHONPATH={shlex.quote(str(REPO))}${{PYTHONPATH:+:$PYTHONPATH}}"],
    )
    return executor


def run_submitit(
    cells: Sequence[Cell],
    jobs: Sequence[CellJob],
    options: SlurmOptions,
    progress: Progress,
    poll_s: float = 15.0,
    on_submitted: Callable[[list], None] | None = None,
) -> list[Outcome]:
    """Submit the jobs as one array and follow them until each has ended."""
    executor = make_executor(options)
    for job in jobs:
        job.preemptible = True
    submitted = executor.submit_array(list(jobs))
    if on_submitted:
        on_submitted(submitted)
    waiting = dict(zip(submitted, cells))
    started: dict = {}
    job_by_cell = dict(zip(cells, jobs))
    while waiting:
        for sjob, cell in list(waiting.items()):
            if sjob not in started and sjob.state in ("RUNNING", "COMPLETING"):
                started[sjob] = time.monotonic()
                progress.started(cell, f"job {sjob.job_id}")
            if not sjob.done():
                continue
            del waiting[sjob]
            was_running = sjob in started
            seconds = time.monotonic() - started.get(sjob, time.monotonic())
            logs = [job_by_cell[cell].console, sjob.paths.stdout, sjob.paths.stderr]
            error = sjob.exception()
            if error is None:
                progress.finished(Outcome(cell, DONE, seconds, logs=logs), was_running)
            else:
                message = str(error).strip().splitlines()[-1] if str(error).strip() else ""
                progress.finished(Outcome(cell, FAILED, seconds, message, logs), was_running)
        if waiting:
            time.sleep(poll_s)
            progress.tick()
    return list(progress.outcomes)
