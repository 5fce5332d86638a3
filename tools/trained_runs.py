"""``python -m tools.trained_runs FOLDER...``: which of these training runs an evaluation can load.

Prints ``FOLDER<TAB>why`` for each folder that holds no finished training run and nothing for the
others (exit status 0 either way), so that the eval scripts check every seed's model before they
evaluate any. Finished is what the sweep and ``train.py --skip-finished`` call finished: a result
record, or for upstream runs a complete test result in the log (``holds_result``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from dassl.evaluation.result_record import holds_result


def why_not_trained(folder: Path) -> str:
    """Why ``folder`` holds no model to evaluate, or "" when it holds a finished run."""
    if not folder.is_dir():
        return "no such folder"
    if not holds_result(folder):
        return "no finished training run (still training, or stopped before its final test)"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    for folder in sys.argv[1:] if argv is None else argv:
        reason = why_not_trained(Path(folder))
        if reason:
            print(f"{folder}\t{reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
