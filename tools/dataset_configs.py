"""The dataset table: each ``configs/datasets/<name>.yaml`` and the ``DATASET.NAME`` it selects.

The configs folder is the one source of these names; the results tools, the grid runner, the
scripts and the tests read them here instead of keeping their own lists. The scripts call it
from the shell:

    python -m tools.dataset_configs name dtd     # DescribableTextures
    python -m tools.dataset_configs list         # caltech101 dtd eurosat ...
"""

from __future__ import annotations

import argparse
import sys
from functools import cache
from pathlib import Path

import yaml

DATASET_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "datasets"


class DatasetConfigError(ValueError):
    """A dataset config is missing or names no dataset; the message says which file and the fix."""


@cache
def dataset_table() -> dict[str, str]:
    """Config name (file stem) -> registered DATASET.NAME, for every file in configs/datasets/,
    sorted by config name."""
    table = {}
    for path in sorted(DATASET_CONFIGS.glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        name = (data.get("DATASET") or {}).get("NAME")
        if not name:
            raise DatasetConfigError(
                f"{path} sets no DATASET.NAME; add the registered dataset name, e.g. "
                'DATASET:\n  NAME: "Caltech101"'
            )
        table[path.stem] = str(name)
    return table


def dataset_name(config: str) -> str:
    """The DATASET.NAME of configs/datasets/<config>.yaml (dtd -> DescribableTextures)."""
    table = dataset_table()
    if config not in table:
        raise DatasetConfigError(
            f"No dataset config configs/datasets/{config}.yaml. Available: {' '.join(table)}"
        )
    return table[config]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print the config names, space-separated")
    name = sub.add_parser("name", help="print the DATASET.NAME of one config")
    name.add_argument("config", help="a file name in configs/datasets/ without .yaml")
    args = parser.parse_args(argv)
    try:
        print(dataset_name(args.config) if args.command == "name" else " ".join(dataset_table()))
    except DatasetConfigError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
