"""Test accuracy under each training protocol (exact, views:V, plain), per method, over seeds.

Runs the demo's setup (tools/demo.py: its random-weight tiny CLIP, its synthetic 5-class dataset
in Caltech101's layout, its per-method overrides of the shipped configs) through ``train.py`` for
TaskRes, CLIP-Adapter and the linear probe under every protocol and seed, all sharing one feature
store, and prints mean +- std (population, as tools/parse_test_res.py) of the test accuracy.

    python benchmarks/protocols.py --output /tmp/protocols [--shots 4]   # 3 x 3 protocols x 3 seeds

The demo dataset holds 8 train images per class, so at 8 shots every seed trains on the same
images and seeds differ only in their random draws; fewer shots sample other images per seed.
The CLIP weights are random and the images synthetic: these numbers compare the protocols on a
toy problem, nothing more. Real benchmarks (CLIP weights, the 11 datasets) cannot run here.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.demo import (  # noqa: E402
    METHODS,
    prepare_output,
    run_method,
    train_command,
    write_demo_checkpoint,
    write_demo_dataset,
)
from tools.parse_test_res import mean_and_spread  # noqa: E402

COMPARED = ("TaskRes", "CLIP_Adapter", "LinearProbeCLIP")


def with_seed_and_protocol(cmd: list[str], seed: int, protocol: str) -> list[str]:
    """The demo's command with another seed and protocol (a later KEY VALUE pair wins)."""
    cmd = list(cmd)
    cmd[cmd.index("--seed") + 1] = str(seed)
    return [*cmd, "TRAINER.PROTOCOL", protocol]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="a new or demo-owned folder")
    parser.add_argument("--protocols", nargs="+", default=["exact", "views:10", "plain"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    out = args.output.resolve()
    start = time.time()
    prepare_output(out)
    data_root = out / "data"
    write_demo_dataset(data_root)
    checkpoint = write_demo_checkpoint(out / "clip_tiny_vit.pt")

    methods = [m for m in METHODS if m.trainer in COMPARED]
    jobs = {}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for method in methods:
            for protocol in args.protocols:
                for seed in args.seeds:
                    run_dir = (
                        out / "runs" / method.trainer / protocol.replace(":", "") / f"seed{seed}"
                    )
                    cmd = train_command(
                        method, data_root, checkpoint, run_dir, args.epochs, args.shots
                    )
                    cmd = with_seed_and_protocol(cmd, seed, protocol)
                    jobs[method.label, protocol, seed] = pool.submit(
                        run_method, method, cmd, run_dir
                    )
        accuracy = {key: job.result()[0] for key, job in jobs.items()}

    rows = []
    for method in methods:
        row = [method.label]
        for protocol in args.protocols:
            mean, std = mean_and_spread([accuracy[method.label, protocol, s] for s in args.seeds])
            row.append(f"{mean:.1f} +- {std:.1f}")
        rows.append(row)
    print()
    print(
        f"Test accuracy (%), mean +- std over seeds {args.seeds}; demo data ({args.shots} shots, "
        f"5 classes), tiny random-weight CLIP, {args.epochs} epochs"
    )
    print(tabulate(rows, headers=["method", *args.protocols], disable_numparse=True))
    print(f"Runs: {out / 'runs'} ({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
