"""Summarise test results of finished runs: per setting, then the paper's tables and figures.

Each run's facts (method, backbone, protocol, dataset, shots, seed, alpha) come from its
``config.yaml``; upstream runs, which have none, are read by upstream's folder conventions. Runs
named ``seed<N>`` are one setting (their parent folder), so any folder above them works:

    python tools/parse_test_res.py output/FINAL/debug/caltech101/adam_lr2e-3_B256_ep100_1shots
    python tools/parse_test_res.py output --table                  # every table the runs support
    python tools/parse_test_res.py output --table --shots 4 --export paper/   # CSV, Markdown, LaTeX
    python tools/parse_test_res.py output --figures paper/         # accuracy vs shots (PNG, PDF)
    python tools/parse_test_res.py output --export paper/ --bold-best --figures paper/ \
        --figure-size one-column                                   # for a two-column paper
    python tools/parse_test_res.py output --residuals --figures paper/   # TaskRes residual analysis
    python tools/parse_test_res.py --finished output/.../seed1     # exit status 0 if it finished
    python tools/parse_test_res.py output --audit      # runs whose selection read test, or unknown
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.results.logs import Run, read_run, read_test_metrics  # noqa: E402
from tools.results.outputs import check_folder, writing  # noqa: E402
from tools.results.render import EXTENSIONS, render  # noqa: E402
from tools.results.runs import (  # noqa: E402
    DATASETS,
    ResultsError,
    Setting,
    collect_records,
    collect_settings,
    dataset_of,
    shots_of,
)
from tools.results.selection import selection_of  # noqa: E402
from tools.results.tables import Results, all_tables, mean_and_spread, shots_phrase  # noqa: E402

__all__ = [
    "DATASETS",
    "ResultsError",
    "Run",
    "Setting",
    "collect_settings",
    "dataset_of",
    "main",
    "mean_and_spread",
    "read_run",
    "read_test_metrics",
    "shots_of",
]

EXPORT_NAME = "results"
ACCURACY_FIGURE = "accuracy_vs_shots"
RESIDUAL_FIGURE = "residual_analysis"
FIGURE_SIZES = ("screen", "one-column", "two-column")  # figures.SIZES (matplotlib loads lazily)


def describe_setting(setting: Setting, root: Path, metric: str, ci95: bool) -> str:
    """One summary line for a setting, plus a line per run that has no result yet."""
    name = _relative(setting.path, root)
    values = setting.values(metric)
    lines = []
    if values:
        mean, spread = mean_and_spread(values, ci95)
        label = "ci95" if ci95 else "std"
        per_run = ", ".join(
            f"{r.path.name} {r.test_metrics[metric]:.2f}"
            for r in setting.runs
            if r.test_metrics and metric in r.test_metrics
        )
        lines.append(
            f"{name}: {metric} {mean:.2f}% +- {spread:.2f}% ({label}) over {len(values)} "
            f"run(s) [{per_run}]"
        )
    else:
        lines.append(f"{name}: no finished run")
    for run in setting.runs:
        shots = (run.record or {}).get("shots") or {}
        if 0 < shots.get("per_class_min", 0) < shots.get("requested", 0):
            low, high = shots["per_class_min"], shots["per_class_max"]
            per_class = f"{low}" if low == high else f"{low} to {high}"
            lines.append(
                f"  {run.path.name}: trained on {per_class} shots per class "
                f"(DATASET.NUM_SHOTS {shots['requested']}: some classes have fewer images)"
            )
        if not run.test_metrics or metric not in run.test_metrics:
            where = run.log if run.log else run.path
            if _tests_val_split(run.path):
                lines.append(
                    f"  {run.path.name}: tests the val split (TEST.SPLIT val in its config.yaml); "
                    "the summary and the tables report the test split only"
                )
            else:
                lines.append(
                    f"  {run.path.name}: no test {metric} in {where} (unfinished or failed?)"
                )
    return "\n".join(lines)


def _tests_val_split(run_dir: Path) -> bool:
    """Whether the run's config.yaml says it tests the val split (read as plain YAML, so that
    this summary stays free of torch)."""
    config = run_dir / "config.yaml"
    if not config.is_file():
        return False
    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and (data.get("TEST") or {}).get("SPLIT") == "val"


def audit(settings: list[Setting], root: Path) -> tuple[list[str], int]:
    """Lines naming each finished run whose selection read the test split or whose record
    cannot tell (upstream runs), and the number of test results audited. Runs that test the val
    split (a search's candidates) report no test result and are left out."""
    read_test, unknown, audited = [], [], 0
    for setting in settings:
        for run in setting.runs:
            if not run.test_metrics:
                continue
            audited += 1
            selection = selection_of(run.record)
            line = f"{_relative(run.path, root)}: {selection.why} ({selection.label})"
            if selection.reads_test:
                read_test.append(f"  read test    {line}")
            elif selection.reads_test is None:
                unknown.append(f"  cannot tell  {line}")
    return read_test + unknown, audited


def _print_audit(settings: list[Setting], root: Path) -> int:
    lines, audited = audit(settings, root)
    if not lines:
        print(f"\nSelection audit: none of the {audited} test result(s) read the test split.")
        return 0
    print(
        f"\nSelection audit: {len(lines)} of {audited} test result(s) were selected on the test "
        "split, or their record cannot tell:"
    )
    print("\n".join(lines))
    return 1


def _relative(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    return str(rel) if rel.parts else (root.name or str(root))


def _skipped_note(results: Results, root: Path) -> str | None:
    if not results.skipped:
        return None
    paths = [_relative(r.path, root) for r in results.skipped]
    shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    return (
        f"Not in the tables or figures ({len(paths)} run(s)): {shown}. Their method, dataset or "
        f"shots are unknown (no config.yaml, and no upstream folder convention names them), or "
        f"their log has no {results.metric}."
    )


def _tables(results: Results, args: argparse.Namespace) -> int:
    tables = all_tables(results, args.shots)
    at_shots = [t for t in tables if t.name != "by_shots"]  # the tables --shots picks
    if not at_shots:
        present = sorted({k.shots for k in results.cells if not k.row.zero_shot})
        at = f" at {shots_phrase(args.shots)}" if args.shots is not None else ""
        raise ResultsError(
            f"no finished run{at} under {args.directory} to tabulate"
            + (f"; shot counts present: {', '.join(map(str, present))}" if present else "")
            + "."
        )
    if args.table:
        print()
        print(render(tables, "terminal", results.spread_name()), end="")
    if args.export:
        spread = "ci95" if args.ci95 else "std"
        for fmt in ("csv", "markdown", "latex"):
            path = args.export / f"{EXPORT_NAME}.{EXTENSIONS[fmt]}"
            with writing(path, "--export"):
                path.write_text(render(tables, fmt, spread, args.bold_best), encoding="utf-8")
            print(f"Wrote {path}")
    return 0


def _accuracy_figure(results: Results, folder: Path, size: str) -> int:
    from tools.results.figures import accuracy_vs_shots, save_figure

    fig = accuracy_vs_shots(results, size)
    if fig is None:
        print("No accuracy figure: no trained run with a shot count under the tree.")
        return 1
    with writing(folder / ACCURACY_FIGURE, "--figures"):
        paths = save_figure(fig, folder / ACCURACY_FIGURE)
    print(f"Wrote the accuracy-vs-shots figure: {', '.join(map(str, paths))}")
    return 0


def _residuals(results: Results, args: argparse.Namespace) -> int:
    from tools.results.residuals import analyse, report

    analyses = analyse(results, args.shots, args.zero_shot_trainer)
    if not analyses:
        at = f" at {shots_phrase(args.shots)}" if args.shots is not None else ""
        raise ResultsError(
            f"no finished TaskRes training run (text-side residual){at} under {args.directory}; "
            "the residual analysis reads their prompt_learner checkpoints."
        )
    status = 0
    for analysis in analyses:
        print()
        print(report(analysis, args.directory))
        if analysis.missing:  # fewer than two datasets is no failure: the report says so
            status = 1
    if args.figures:
        from tools.results.figures import residual_figure, save_figure

        fig = residual_figure(analyses, args.figure_size)
        if fig is not None:
            with writing(args.figures / RESIDUAL_FIGURE, "--figures"):
                paths = save_figure(fig, args.figures / RESIDUAL_FIGURE, tight=True)
            print(f"Wrote the residual-analysis figure: {', '.join(map(str, paths))}")
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="output folder of a run, a setting, or above")
    parser.add_argument("--metric", default="accuracy", help="accuracy (default), error, macro_f1")
    parser.add_argument("--ci95", action="store_true", help="95%% confidence interval, not std")
    parser.add_argument(
        "--table",
        action="store_true",
        help="print the tables the runs support: methods x datasets, methods x shots, "
        "base-to-new, domain generalisation",
    )
    parser.add_argument(
        "--shots",
        type=int,
        help="shot count of the tables and the residual analysis (default: the largest present)",
    )
    parser.add_argument(
        "--split-by",
        nargs="+",
        default=[],
        metavar="KEY",
        help="config keys whose values give runs rows of their own (e.g. OPTIM.LR)",
    )
    parser.add_argument(
        "--export",
        type=Path,
        metavar="DIR",
        help=f"write the tables to DIR/{EXPORT_NAME}.csv, .md and .tex",
    )
    parser.add_argument(
        "--bold-best",
        action="store_true",
        help="in the LaTeX export, set the best value of each column in bold",
    )
    parser.add_argument(
        "--figures",
        type=Path,
        metavar="DIR",
        help=f"write DIR/{ACCURACY_FIGURE}.png and .pdf (and, with --residuals, "
        f"DIR/{RESIDUAL_FIGURE}.png and .pdf)",
    )
    parser.add_argument(
        "--figure-size",
        choices=FIGURE_SIZES,
        default="screen",
        help="figure layout: screen (3.4 in per panel, the default), one-column (3.3 in wide, "
        "7 pt fonts) or two-column (6.9 in wide, 8 pt fonts), for a two-column paper",
    )
    parser.add_argument(
        "--residuals",
        action="store_true",
        help="TaskRes residual analysis: mean |residual| against relative transfer difficulty",
    )
    parser.add_argument(
        "--zero-shot-trainer",
        choices=("ZeroshotCLIP2", "ZeroshotCLIP"),
        help="zero-shot runs the residual analysis takes accuracy from (default: ZeroshotCLIP2 "
        "when it ran, else ZeroshotCLIP)",
    )
    parser.add_argument(
        "--audit",
        action="store_true",
        help="list every run whose selection (epoch or hyperparameters) read the test split, or "
        "whose record cannot tell (upstream runs); exit status 1 if any",
    )
    parser.add_argument(
        "--finished",
        action="store_true",
        help="only report whether DIRECTORY itself holds a test result (exit status 0 if so)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    if args.finished:
        run = read_run(args.directory)
        print(f"{args.directory}: {'finished' if run.metrics else 'not finished'}")
        return 0 if run.metrics else 1

    status = 0
    try:
        for folder, flag in ((args.export, "--export"), (args.figures, "--figures")):
            if folder is not None:
                check_folder(folder, flag)
        settings = collect_settings(args.directory)
        for setting in settings:
            print(describe_setting(setting, args.directory, args.metric, args.ci95))
        if args.audit:
            status |= _print_audit(settings, args.directory)
        if not (args.table or args.export or args.figures or args.residuals):
            return status
        from tools.results.evaluations import separate  # dassl.config: torch, as for configs

        separated = separate(collect_records(settings, tuple(args.split_by)))
        results = Results(separated.counted, args.metric, args.ci95)
        repeats = separated.notes(args.metric)
        if repeats:
            print(
                f"\nCounted once ({len(repeats)} evaluation(s) repeating a result in the tables):"
            )
            print("\n".join(f"  {line}" for line in repeats))
        note = _skipped_note(results, args.directory)
        if note:
            print(f"\n{note}")
        if args.table or args.export:
            status |= _tables(results, args)
        if args.figures:
            status |= _accuracy_figure(results, args.figures, args.figure_size)
        if args.residuals:
            status |= _residuals(results, args)
    except ResultsError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
