"""Check dataset folders against the layouts of DATASETS.md without training anything.

    python -m datasets.check --root DATA [NAMES...]

For each dataset (all benchmark datasets by default; names are registered names or folder names,
case-insensitive) it reports whether the layout is complete, the class and split counts it finds,
and what is missing with the DATASETS.md section to follow. Nothing is written: split files and
caches are built in memory only. The exit code is 1 when anything is missing.
"""

import argparse
import contextlib
import io
import os
import pickle
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from dassl.config import extend_cfg, get_cfg_default
from dassl.data.datasets import DATASET_REGISTRY

from .benchmark import BenchmarkDataset

_SHOWN_MISSING_IMAGES = 3


@dataclass
class Report:
    name: str
    folder: str
    ok: bool = True
    summary: str = ""
    problems: list[str] = field(default_factory=list)

    def render(self) -> str:
        status = "OK" if self.ok else "INCOMPLETE"
        head = f"[{status}] {self.name} ({self.folder})"
        lines = [f"{head}: {self.summary}" if self.summary else head]
        lines += [f"    {problem}" for problem in self.problems]
        return "\n".join(lines)


def benchmark_datasets() -> dict[str, type[BenchmarkDataset]]:
    """Registered name -> class, for every registered benchmark dataset (importing this module
    imports the ``datasets`` package first, which registers them all)."""
    found = {}
    for name in DATASET_REGISTRY.registered_names():
        cls = DATASET_REGISTRY.get(name)
        if isinstance(cls, type) and issubclass(cls, BenchmarkDataset):
            found[name] = cls
    return found


def resolve_names(names: Sequence[str], known: dict[str, type[BenchmarkDataset]]) -> list[str]:
    """Map registered or folder names (any case) to registered names; unknown ones raise."""
    lookup = {}
    for name, cls in known.items():
        lookup[name.lower()] = name
        lookup[cls.dataset_dir.lower()] = name
    unknown = [n for n in names if n.lower() not in lookup]
    if unknown:
        raise KeyError(
            f"Unknown dataset(s) {unknown}; choose from {sorted(known)} "
            f"(or their folder names {sorted(cls.dataset_dir for cls in known.values())})"
        )
    return [lookup[n.lower()] for n in names]


def check_dataset(name: str, cls: type[BenchmarkDataset], root: str, images: bool) -> Report:
    report = Report(name, cls.dataset_dir)
    missing = cls.missing_layout(root)
    if missing:
        report.ok = False
        report.summary = f"missing pieces, follow {cls.docs_section()}"
        report.problems = [f"not found: {item.what}: {item.path}" for item in missing]
        return report

    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.DATASET.ROOT = root
    cfg.DATASET.NAME = name
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the readers' progress lines
            dataset = cls(cfg, persist=False)
    except (OSError, ValueError, KeyError, pickle.UnpicklingError) as err:
        report.ok = False
        report.summary = f"cannot be read, follow {cls.docs_section()}"
        report.problems = str(err).splitlines()
        return report

    splits = {"train": dataset.train_x, "val": dataset.val, "test": dataset.test}
    if cls.test_only:
        splits = {"test": dataset.test}
    counts = ", ".join(f"{key} {len(items or [])}" for key, items in splits.items())
    report.summary = f"{dataset.num_classes} classes; {counts}"
    if cls.split_file and not os.path.isfile(os.path.join(root, cls.dataset_dir, cls.split_file)):
        report.summary += f" ({cls.split_file} absent: it is built from the raw files on first use)"

    if images:
        paths = sorted({item.impath for items in splits.values() for item in items or []})
        absent = [p for p in paths if not os.path.isfile(p)]
        if absent:
            report.ok = False
            report.problems.append(
                f"{len(absent)} of {len(paths)} images listed by the split are missing, e.g. "
                f"{', '.join(absent[:_SHOWN_MISSING_IMAGES])}; follow {cls.docs_section()}"
            )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m datasets.check", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--root", required=True, help="folder holding the dataset folders")
    parser.add_argument("names", nargs="*", help="datasets to check (default: all)")
    parser.add_argument(
        "--skip-images", action="store_true", help="do not check that every listed image exists"
    )
    args = parser.parse_args(argv)

    known = benchmark_datasets()
    try:
        names = resolve_names(args.names, known) if args.names else sorted(known)
    except KeyError as err:
        parser.error(err.args[0])
    root = os.path.abspath(os.path.expanduser(args.root))
    print(f"Checking {len(names)} dataset(s) under {root}")
    reports = [check_dataset(name, known[name], root, not args.skip_images) for name in names]
    for report in reports:
        print(report.render())
    complete = sum(report.ok for report in reports)
    print(f"{complete} of {len(reports)} dataset(s) complete")
    return 0 if complete == len(reports) else 1


if __name__ == "__main__":
    sys.exit(main())
