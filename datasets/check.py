"""Check dataset folders against the layouts of DATASETS.md without training anything.

    python -m datasets.check --root DATA [NAMES...] [--skip-images | --verify-images]

For each dataset (all benchmark datasets by default; names are registered names or folder names,
case-insensitive) it reports whether the layout is complete, the class and split counts it finds,
and what is missing with the DATASETS.md section to follow. The split is checked as a run checks
it (labels, class names, repeated rows, paths; images in both train and test are a warning). By
default every image the split lists must exist; --verify-images also decodes each one (train, val
and test, what a run reads) with a progress bar and lists every unreadable file, with the reason,
at the end, so a corrupt JPEG is found before a run rather than at its final test. Nothing is
written: split files and caches are built in memory only. The exit code is 1 when anything is
missing, inconsistent or unreadable.
"""

import argparse
import contextlib
import io
import os
import pickle
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing import Pool

from tqdm import tqdm

from dassl.config import extend_cfg, get_cfg_default
from dassl.data.datasets import DATASET_REGISTRY
from dassl.utils import read_image

from .benchmark import BenchmarkDataset, DatasetLayoutError
from .splits import SplitError

_SHOWN_MISSING_IMAGES = 3
_DECODE_CHUNK = 64  # images per task handed to a decoding process


@dataclass
class Report:
    name: str
    folder: str
    ok: bool = True
    summary: str = ""
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # one message per image, path + reason

    def render(self) -> str:
        status = "OK" if self.ok else "INCOMPLETE"
        head = f"[{status}] {self.name} ({self.folder})"
        lines = [f"{head}: {self.summary}" if self.summary else head]
        lines += [f"    {problem}" for problem in self.problems]
        lines += [f"    warning: {warning}" for warning in self.warnings]
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


def decode(path: str) -> str | None:
    """Why the image at ``path`` cannot be read as a run reads it, or None when it can."""
    try:
        read_image(path)
    except Exception as err:  # the checker reports every failure, whatever its kind
        return str(err)
    return None


def verify_images(paths: Sequence[str], name: str, workers: int) -> list[str]:
    """Decode every image (in ``workers`` processes) behind a progress bar; the reasons of the
    unreadable ones, sorted by path."""
    bad = []
    with contextlib.ExitStack() as stack:
        results: Iterable[str | None]
        if workers > 1 and len(paths) > _DECODE_CHUNK:
            pool = stack.enter_context(Pool(workers))
            results = pool.imap(decode, paths, chunksize=_DECODE_CHUNK)
        else:
            results = map(decode, paths)
        for reason in tqdm(results, total=len(paths), desc=f"Decoding {name}", unit="img"):
            if reason is not None:
                bad.append(reason)
    return bad


def check_dataset(
    name: str,
    cls: type[BenchmarkDataset],
    root: str,
    images: bool,
    decode_workers: int = 0,
) -> Report:
    """The report on one dataset; ``decode_workers`` > 0 decodes every listed image too."""
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
        if isinstance(err, DatasetLayoutError):
            report.summary = f"missing pieces, follow {cls.docs_section()}"
        elif isinstance(err, SplitError):
            report.summary = "the split is inconsistent"
        else:
            report.summary = f"cannot be read, follow {cls.docs_section()}"
        report.problems = str(err).splitlines()
        return report
    report.warnings = dataset.split_warnings

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
        if decode_workers > 0:
            present = sorted(set(paths) - set(absent))
            report.unreadable = verify_images(present, name, decode_workers)
            if report.unreadable:
                report.ok = False
                report.problems.append(
                    f"{len(report.unreadable)} of {len(present)} images cannot be decoded "
                    "(listed at the end)"
                )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m datasets.check",
        description=__doc__.split("\n\n")[0],
        epilog="Before a long run: python -m datasets.check --root DATA NAME --verify-images",
    )
    parser.add_argument("--root", required=True, help="folder holding the dataset folders")
    parser.add_argument("names", nargs="*", help="datasets to check (default: all)")
    images = parser.add_mutually_exclusive_group()
    images.add_argument(
        "--skip-images", action="store_true", help="do not check that every listed image exists"
    )
    images.add_argument(
        "--verify-images",
        action="store_true",
        help="also decode every image the split lists (train, val and test, as a run reads "
        "them), with a progress bar, and list each unreadable file with the reason at the end "
        "(exit status 1 if any); takes about as long as one pass over the images",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="processes decoding images for --verify-images (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")

    known = benchmark_datasets()
    try:
        names = resolve_names(args.names, known) if args.names else sorted(known)
    except KeyError as err:
        parser.error(err.args[0])
    root = os.path.abspath(os.path.expanduser(args.root))
    print(f"Checking {len(names)} dataset(s) under {root}")
    workers = args.workers if args.verify_images else 0
    reports = [
        check_dataset(name, known[name], root, not args.skip_images, workers) for name in names
    ]
    for report in reports:
        print(report.render())
    unreadable = [reason for report in reports for reason in report.unreadable]
    if unreadable:
        print(f"Unreadable images ({len(unreadable)}):")
        print("\n".join(f"  {reason}" for reason in unreadable))
    complete = sum(report.ok for report in reports)
    print(f"{complete} of {len(reports)} dataset(s) complete")
    return 0 if complete == len(reports) else 1


if __name__ == "__main__":
    sys.exit(main())
