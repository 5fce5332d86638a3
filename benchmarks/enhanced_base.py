"""TaskRes with the regular base vs TaskRes* on a base built here, and what building costs.

Runs the demo's setup (tools/demo.py: its random-weight tiny CLIP, its synthetic 5-class dataset
in Caltech101's layout, the demo's TaskRes overrides) through ``train.py``, per seed: TaskRes on
the regular base; TextProjectionTuning, which builds the enhanced base on that seed's few-shot
subset; and TaskRes* on that base. Prints mean +- std (population, as tools/parse_test_res.py) of
the test accuracy and the mean seconds per run (whole train.py commands, one at a time, so the
figures are not shared with other runs; each includes the ~same start-up cost).

    python benchmarks/enhanced_base.py --output /tmp/enhanced   # 3 seeds, 4 shots, 20 epochs

The CLIP weights are random and the images synthetic: the figures compare the two bases on a toy
problem and give the build's cost relative to TaskRes, nothing about real benchmarks.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.demo import (  # noqa: E402
    METHODS,
    Method,
    prepare_output,
    run_method,
    train_command,
    write_demo_checkpoint,
    write_demo_dataset,
)
from tools.parse_test_res import mean_and_spread  # noqa: E402
from trainers.enhanced_base import FILE_NAME  # noqa: E402

TASKRES = next(m for m in METHODS if m.trainer == "TaskRes")
# The demo's TaskRes learning rate for the projection too (the shipped 2e-4 barely moves a tiny
# random model in a few epochs); the rest is the shipped TextProjectionTuning config.
BUILD = Method(
    "Build base",
    "TextProjectionTuning",
    "TextProjectionTuning/adam_lr2e-4_B256_ep100",
    "TRAINER.TextProjectionTuning.PREC fp32 OPTIM.LR 0.02",
)


def with_seed(cmd: list[str], seed: int, *extra: str) -> list[str]:
    """The demo's command with another seed (and extra flags before the KEY VALUE pairs)."""
    cmd = list(cmd)
    cmd[cmd.index("--seed") + 1] = str(seed)
    at = cmd.index("MODEL.BACKBONE.NAME")
    return [*cmd[:at], *extra, *cmd[at:]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="a new or demo-owned folder")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--shots", type=int, default=4)
    args = parser.parse_args()
    out = args.output.resolve()
    start = time.time()
    prepare_output(out)
    data_root = out / "data"
    write_demo_dataset(data_root)
    checkpoint = write_demo_checkpoint(out / "clip_tiny_vit.pt")

    def run(method: Method, name: str, seed: int, *extra: str) -> tuple[float, float]:
        run_dir = out / "runs" / name / f"seed{seed}"
        cmd = train_command(method, data_root, checkpoint, run_dir, args.epochs, args.shots)
        return run_method(method, with_seed(cmd, seed, *extra), run_dir)

    results: dict[str, list[tuple[float, float]]] = {"regular": [], "build": [], "enhanced": []}
    for seed in args.seeds:
        print(f"Seed {seed}:", flush=True)
        results["regular"].append(run(TASKRES, "taskres_regular", seed, "--enhanced-base", "none"))
        results["build"].append(run(BUILD, "enhanced_base", seed))
        base = out / "runs" / "enhanced_base" / f"seed{seed}" / FILE_NAME
        results["enhanced"].append(
            run(TASKRES, "taskres_enhanced", seed, "--enhanced-base", str(base))
        )

    labels = {
        "regular": "TaskRes, regular base",
        "build": "TextProjectionTuning (the enhanced base alone)",
        "enhanced": "TaskRes*, base built per seed",
    }
    rows = []
    for key, label in labels.items():
        mean, std = mean_and_spread([acc for acc, _ in results[key]])
        seconds = sum(s for _, s in results[key]) / len(results[key])
        rows.append([label, f"{mean:.2f} +- {std:.2f}", f"{seconds:.1f}"])
    print()
    print(
        f"Test accuracy (%), mean +- std over seeds {args.seeds}; demo data ({args.shots} shots, "
        f"5 classes), tiny random-weight CLIP, {args.epochs} epochs each, protocol plain"
    )
    print(tabulate(rows, headers=["run", "accuracy", "s per run"], disable_numparse=True))
    build = sum(s for _, s in results["build"])
    taskres = sum(s for _, s in results["regular"])
    print(f"Building a base costs {build / taskres:.2f}x a TaskRes run (wall time per command)")
    print(f"Runs: {out / 'runs'} ({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
