"""``python -m tools.sweep GRID [options] [KEY VALUE ...]``: run a grid of train.py runs.

Cells whose folder already holds a finished run with the same config are skipped, unfinished ones
resume, and folders holding another config are reported with the differing keys and left alone.
Cells that would fail the run's first checks (dataset layout, backbone weights) are reported as
"cannot start" with the reason and not launched. A failing cell does not stop the others. At the
end: a summary with each failed cell's last error line and log paths, then the grid's results
table (tools/parse_test_res.py). Ctrl-C stops the running cells, which resume when the same
command is run again.

    python -m tools.sweep configs/grids/taskres_regular.yaml --dry-run
    python -m tools.sweep configs/grids/taskres_regular.yaml --datasets caltech101 --shots 1 2
    python -m tools.sweep configs/grids/coop.yaml --launcher slurm --partition gpu --timeout-min 600
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tools import parse_test_res
from tools.arguments import positive_number, whole_number

from . import search
from .grid import Cell, Grid, GridError, Stage, absolute_output_root, expand, load_grid
from .job import CellJob
from .launch import (
    DONE,
    FAILED,
    INTERRUPTED,
    Outcome,
    Progress,
    SlurmOptions,
    format_duration,
    local_devices,
    run_local,
    run_submitit,
)
from .preflight import Preflight
from .state import Inspection, State, inspect_cell

CONFIG_KEY = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Za-z0-9_]+)+")
SWEEPS_FOLDER = "sweeps"  # under the output root: console logs and submitit's job files
NOT_RUN = (State.CONFLICTING, State.BLOCKED, State.CANNOT_START)  # reported, never launched
STATUS_WIDTH = max(len(state.value) for state in State)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.sweep",
        description=__doc__.splitlines()[0],
        epilog="Trailing KEY VALUE config overrides (the first word that looks like a config key, "
        "e.g. OPTIM.LR, starts them) reach every cell, after the grid's own overrides.",
    )
    parser.add_argument("grid", type=Path, help="grid file, e.g. configs/grids/coop.yaml")
    parser.add_argument(
        "--root",
        default=os.environ.get("DATA") or os.path.expanduser("~/data"),
        help="dataset folder (default: $DATA, else ~/data)",
    )
    parser.add_argument(
        "--output-root",
        default=os.environ.get("OUTPUT_ROOT") or "output",
        help="folder the run outputs go under (default: $OUTPUT_ROOT, else output)",
    )
    parser.add_argument("--datasets", nargs="+", help="only these datasets of the grid")
    parser.add_argument("--shots", nargs="+", type=int, help="only these shot counts")
    parser.add_argument("--seeds", nargs="+", type=int, help="only these seeds")
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a grid variable for every cell (e.g. strong_base_dir=/data/strong_base)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="list every cell as finished, pending, conflicting, blocked or cannot start (its "
        "dataset is incomplete or its weights are not on this machine; a real sweep downloads "
        "missing weights first when it can), launching nothing",
    )
    parser.add_argument(
        "--commands", action="store_true", help="with --dry-run: print each cell's train.py command"
    )
    parser.add_argument("--launcher", choices=("local", "slurm"), default="local")
    parser.add_argument(
        "--progress-interval",
        type=positive_number,
        default=30.0,
        help="seconds between progress lines",
    )
    local = parser.add_argument_group("local launcher")
    local.add_argument(
        "--workers",
        type=whole_number(1),
        help="parallel runs (default: one per visible GPU, or 1 without GPU); each is pinned to "
        "one GPU, or to the CPU",
    )
    slurm = parser.add_argument_group("slurm launcher (through submitit)")
    slurm.add_argument("--partition", help="Slurm partition")
    slurm.add_argument(
        "--timeout-min", type=whole_number(1), default=24 * 60, help="time limit per job (minutes)"
    )
    slurm.add_argument("--gpus-per-job", type=whole_number(0), default=1)
    slurm.add_argument("--cpus-per-job", type=whole_number(1), default=8)
    slurm.add_argument("--mem-gb", type=whole_number(1), help="memory per job")
    slurm.add_argument(
        "--array-parallelism", type=whole_number(1), help="most jobs of the array running at once"
    )
    slurm.add_argument(
        "--max-requeues",
        type=whole_number(0),
        default=3,
        help="times a job reaching its time limit is requeued (preemptions do not count)",
    )
    slurm.add_argument(
        "--slurm-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra sbatch parameter, e.g. account=myproj, qos=high, constraint=a100 (repeatable)",
    )
    slurm.add_argument(
        "--submitit-cluster",
        choices=("slurm", "local"),
        default="slurm",
        help="'local' runs the same job array through submitit's LocalExecutor on this machine "
        "(every job at once): to try a grid's submission without a cluster",
    )
    return parser


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Options and grid file first; the first config key starts the KEY VALUE overrides."""
    for i, word in enumerate(argv):
        if CONFIG_KEY.fullmatch(word):
            return list(argv[:i]), list(argv[i:])
    return list(argv), []


def _pairs(items: Sequence[str], flag: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise GridError(f"{flag} {item!r} is not NAME=VALUE.")
        pairs[name] = value
    return pairs


def _shown(path: Path) -> str:
    """A path relative to the working folder when it lies below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    words, overrides = split_overrides(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(words)
    misplaced = [w for w in overrides if w.split("=", 1)[0] in parser._option_string_actions]
    if misplaced:
        parser.error(
            f"{misplaced[0]} comes after the KEY VALUE overrides, so it would be read as one. "
            "Put the options before the first config key."
        )
    try:
        grid = load_grid(args.grid)
        stages = expand(
            grid,
            root=os.path.abspath(os.path.expanduser(args.root)),
            output_root=args.output_root,
            datasets=args.datasets,
            shots=args.shots,
            seeds=args.seeds,
            variables=_pairs(args.var, "--var"),
            overrides=overrides,
        )
        extra = _pairs(args.slurm_param, "--slurm-param")
        import datasets  # noqa: F401  (imports torch: after the checks that need none)
        import trainers  # noqa: F401  (registers the methods' flags build_parser offers)
        from dassl.config import run_config

        # the checks train.py makes on overrides
        run_config.check_opts(overrides, run_config.build_parser())
    except (GridError, ValueError) as err:  # ValueError: run_config.ConfigError
        print(f"ERROR: {err}", file=sys.stderr)
        return 2
    sweep = Sweep(grid, stages, args, extra)
    try:
        return sweep.dry_run() if args.dry_run else sweep.run()
    except GridError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 2


class Sweep:
    """One invocation: inspect, run stage after stage, summarise."""

    def __init__(
        self, grid: Grid, stages: list[list[Cell]], args: argparse.Namespace, extra: dict
    ) -> None:
        self.grid = grid
        self.stages = stages
        self.args = args
        self.extra = extra
        self.output_root = absolute_output_root(args.output_root)
        self.folder = self.output_root / SWEEPS_FOLDER / grid.name
        self.width = max((len(cell.label) for cells in stages for cell in cells), default=0)
        self._explained: set[str] = set()  # why cells cannot start, printed in full once each

    def console(self, cell: Cell) -> Path:
        """Where a cell's train.py output goes: beside the grid's other job files, mirroring the
        run folder, so the run folders hold only what the scripts write."""
        relative = cell.output_dir.relative_to(self.output_root)
        return self.folder / "console" / relative.parent / f"{relative.name}.txt"

    def _header(self) -> None:
        count = sum(len(cells) for cells in self.stages)
        print(f"Grid {self.grid.path}: {count} cells; outputs under {_shown(self.output_root)}")

    def dry_run(self) -> int:
        self._header()
        counts: dict[State, int] = dict.fromkeys(State, 0)
        preflight = Preflight(download=False)
        for stage, cells in zip(self.grid.stages, self.stages):
            if len(self.stages) > 1:
                print(f"Stage {stage.name}:")
            for cell in cells:
                found = inspect_cell(cell, preflight)
                counts[found.state] += 1
                self._print_inspection(found)
                if self.args.commands:
                    command = ["python", "train.py", *cell.argv]
                    print(f"    {shlex.join(command)}")
            if stage.search is not None:
                winners, _ = self._winners(stage, cells, write=False)
                groups = len(search.groups(cells))
                print(
                    f"  Winners' test evaluations: {len(winners)} of {groups} chosen (the others "
                    "once their candidates finish)"
                )
                for cell in winners:
                    found = inspect_cell(cell, preflight)
                    counts[found.state] += 1
                    self._print_inspection(found)
        print(", ".join(f"{n} {state.value}" for state, n in counts.items()))
        return 0

    def report_path(self, winner_dir: Path) -> Path:
        """Where a search's report for one (dataset, shots, seed) goes: beside the grid's job
        files, mirroring the winner's folder."""
        relative = winner_dir.relative_to(self.output_root)
        return self.folder / "search" / relative.parent / f"{relative.name}.json"

    def _winners(
        self, stage: Stage, cells: list[Cell], write: bool
    ) -> tuple[list[Cell], list[str]]:
        """The test evaluation of each (dataset, shots, seed) whose candidates all finished, and
        the selection report: each candidate's val accuracy and the winner (``write``: the
        search reports the winners' records name are written)."""
        cells_of_groups = search.groups(cells)
        winners, lines = [], []
        for candidates in cells_of_groups:
            scored, winner = search.choose(candidates)
            lines += search.report_lines(scored, winner, self.width)
            if winner is None:
                lines.append("    no winner yet: a candidate has no val result")
                continue
            path = self.report_path(candidates[0].winner_dir)
            if write:
                search.write_report(path, search.report(stage.search, scored, winner))
            winners.append(search.winner_cell(winner, path))
        return winners, lines

    def _print_inspection(self, found: Inspection) -> None:
        relative = found.cell.output_dir.relative_to(self.output_root)
        note = f" ({found.detail})" if found.state is State.PENDING and found.detail else ""
        self._line(found.state.value, found.cell, f"{relative}{note}")
        if found.state not in NOT_RUN:
            return
        if found.detail in self._explained:  # cells sharing a missing dataset or weights
            print(f"      {_headline(found.detail)} (as above)")
            return
        if found.state is State.CANNOT_START:
            self._explained.add(found.detail)
        for line in found.detail.splitlines():
            print(f"      {line}")

    def run(self) -> int:
        self._header()
        root = Path(self.args.root).expanduser()
        if not root.is_dir():
            print(
                f"ERROR: dataset folder '{root}' does not exist. Pass --root (or set DATA) to the "
                "folder holding caltech-101/, oxford_pets/, ... as DATASETS.md describes.",
                file=sys.stderr,
            )
            return 2
        if self.args.launcher == "slurm" and self.args.submitit_cluster == "slurm":
            missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
            if missing:
                print(
                    f"ERROR: --launcher slurm needs Slurm's {' and '.join(missing)}, which this "
                    "machine lacks. Run the command on a login node of the cluster, or use "
                    "--launcher local (--submitit-cluster local tries the submitit path here).",
                    file=sys.stderr,
                )
                return 2
        start = time.monotonic()
        skipped: list[Inspection] = []
        refused: list[Inspection] = []
        outcomes: list[Outcome] = []
        interrupted = False
        preflight = Preflight(download=True)
        for stage, cells in zip(self.grid.stages, self.stages):
            prefix = f"Stage {stage.name}: " if len(self.stages) > 1 else ""
            phases = [(prefix, cells)]
            while phases and not interrupted:
                prefix, cells = phases.pop(0)
                found = [inspect_cell(cell, preflight) for cell in cells]
                finished = [f for f in found if f.state is State.FINISHED]
                not_run = [f for f in found if f.state in NOT_RUN]
                for item in not_run:
                    self._print_inspection(item)
                todo = [f.cell for f in found if f.state is State.PENDING]
                cannot_start = sum(f.state is State.CANNOT_START for f in not_run)
                print(
                    f"{prefix}{len(todo)} to run, {len(finished)} already finished (skipped), "
                    f"{len(not_run) - cannot_start} not run (conflicting or blocked), "
                    f"{cannot_start} cannot start",
                    flush=True,
                )
                skipped += finished
                refused += not_run
                if todo:
                    progress = Progress(len(todo), sys.stdout, self.args.progress_interval)
                    try:
                        self._launch(todo, progress)
                    except KeyboardInterrupt:
                        interrupted = True
                    outcomes += progress.outcomes
                if stage.search is not None and cells and cells[0].candidate and not interrupted:
                    winners, lines = self._winners(stage, cells, write=True)
                    self._print_selection_report(stage, lines)
                    phases.append((f"Stage {stage.name}, winners' test: ", winners))
            if interrupted:
                break
        self._summary(skipped, refused, outcomes, time.monotonic() - start, interrupted)
        self._table([f.cell for f in skipped] + [o.cell for o in outcomes if o.status == DONE])
        failed = refused or any(o.status == FAILED for o in outcomes)
        return 130 if interrupted else int(bool(failed))

    def _print_selection_report(self, stage: Stage, lines: list[str]) -> None:
        """Print the search's selection report and keep it beside the grid's job files."""
        text = "\n".join(
            [f"Selection report of stage {stage.name} (val accuracy; no test number):", *lines]
        )
        print(f"\n{text}\n", flush=True)
        path = self.folder / "search" / f"{stage.name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")

    def _launch(self, cells: list[Cell], progress: Progress) -> None:
        """Run the cells; every outcome lands in ``progress``, also when interrupted."""
        jobs = [CellJob(cell.argv, self.console(cell)) for cell in cells]
        if self.args.launcher == "local":
            import torch

            devices, threads = local_devices(self.args.workers, torch.cuda.device_count())
            where = "CPU" if devices[0] == "" else "GPU"
            print(f"Running on {len(devices)} {where} worker(s)", flush=True)
            run_local(cells, jobs, devices, threads, progress)
            return
        options = SlurmOptions(
            folder=self.folder / "submitit",
            cluster=self.args.submitit_cluster,
            partition=self.args.partition,
            timeout_min=self.args.timeout_min,
            gpus_per_job=self.args.gpus_per_job,
            cpus_per_job=self.args.cpus_per_job,
            mem_gb=self.args.mem_gb,
            array_parallelism=self.args.array_parallelism,
            max_requeues=self.args.max_requeues,
            job_name=f"sweep-{self.grid.name}",
            extra=self.extra,
        )
        poll = 15.0 if options.cluster == "slurm" else 0.5
        run_submitit(cells, jobs, options, progress, poll, self._submitted)

    def _submitted(self, jobs: list) -> None:
        ids = sorted({str(job.job_id).split("_")[0] for job in jobs})
        print(
            f"Submitted {len(jobs)} job(s) ({', '.join(ids)}); job files under "
            f"{_shown(self.folder / 'submitit')}. Ctrl-C stops following them, not the jobs "
            "(scancel stops them); re-running this command afterwards runs only what is missing.",
            flush=True,
        )

    def _summary(
        self,
        skipped: list[Inspection],
        refused: list[Inspection],
        outcomes: list[Outcome],
        seconds: float,
        interrupted: bool,
    ) -> None:
        by_status = {s: [o for o in outcomes if o.status == s] for s in (DONE, FAILED, INTERRUPTED)}
        not_run = {state: [f for f in refused if f.state is state] for state in NOT_RUN}
        print()
        print(
            f"Summary: {len(by_status[DONE])} done, {len(by_status[FAILED])} failed, "
            f"{len(skipped)} skipped (already finished), "
            + ", ".join(f"{len(items)} {state.value}" for state, items in not_run.items())
            + f", {len(by_status[INTERRUPTED])} interrupted; {format_duration(seconds)}"
        )
        for outcome in by_status[DONE]:
            self._line(DONE, outcome.cell, _shown(_log(outcome.cell)))
        for outcome in by_status[FAILED] + by_status[INTERRUPTED]:
            self._line(outcome.status, outcome.cell, outcome.error)
            for path in dict.fromkeys(outcome.logs):  # each path once, in order
                print(f"{'':<{STATUS_WIDTH + 3}}{_shown(Path(path))}")
        for item in skipped:
            self._line("skipped", item.cell, _shown(_log(item.cell)))
        for item in refused:
            self._line(item.state.value, item.cell, _headline(item.detail))
        if interrupted:
            print(
                "Interrupted: run the same command to resume (finished cells are skipped, "
                "interrupted ones continue from their last saved epoch)."
            )

    def _line(self, status: str, cell: Cell, text: str) -> None:
        print(f"  {status:<{STATUS_WIDTH}} {cell.label:<{self.width}} {text}")

    def _table(self, cells: list[Cell]) -> None:
        """The results table of this grid's finished cells only: their logs are linked into a
        scratch folder laid out like the outputs, which the results tool reads."""
        if not cells:
            return
        print()
        with tempfile.TemporaryDirectory(prefix="sweep-results-") as view:
            for cell in cells:
                target = Path(view) / cell.output_dir.relative_to(self.output_root)
                target.mkdir(parents=True, exist_ok=True)
                for path in cell.output_dir.iterdir():
                    if path.is_file():
                        (target / path.name).symlink_to(path)
            sys.stdout.flush()
            parse_test_res.main([view, "--table"])
            sys.stdout.flush()


def _headline(detail: str) -> str:
    """The first line of a reason, with the next one when it introduces a list ("not found:")."""
    lines = detail.splitlines() or [""]
    if lines[0].endswith(":") and len(lines) > 1:
        return f"{lines[0]} {lines[1].strip()}"
    return lines[0]


def _log(cell: Cell) -> Path:
    run = parse_test_res.read_run(cell.output_dir)
    return run.log or cell.output_dir / "log.txt"
