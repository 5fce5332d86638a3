"""The built-in demo: every method end to end on CPU in about a minute, with nothing downloaded.

It writes a tiny random-weight CLIP checkpoint (OpenAI layout, 32 px input) and a small synthetic
image dataset in Caltech101's on-disk layout (``caltech-101/101_ObjectCategories/<class>/*.jpg``
plus ``split_zhou_Caltech101.json``), so the real dataset reader, few-shot sampler, trainers and
evaluator all run. Then it calls ``python train.py`` once per method with the shipped configs (a
few overrides shrink them to the tiny model), writes the results tool's accuracy figure, and ends
with its table of the test accuracies.

The CLIP weights are random: the numbers show that the pipeline works, not how good CLIP is.

    bash scripts/demo.sh                 # or: python -m tools.demo --output demo_output
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from datasets.synthetic import CALTECH101, SHAPE_CLASSES, write_synthetic_dataset
from tools.parse_test_res import ACCURACY_FIGURE
from tools.results.figures import accuracy_vs_shots, save_figure
from tools.results.logs import read_run
from tools.results.render import render
from tools.results.runs import collect_records, collect_settings
from tools.results.tables import Results, all_tables

REPO = Path(__file__).resolve().parents[1]
MARKER = "DEMO_OUTPUT"  # marks a folder the demo owns and may replace on the next run
IMAGE_SIZE = 32  # clip.synthetic.TINY_INPUT_SIZE, the input resolution of the tiny checkpoint

DATASET_CONFIG = "caltech101"  # the dataset config whose reader the demo data fits
CLASSES = SHAPE_CLASSES


class DemoError(Exception):
    """A step of the demo failed; the message says which and where its output is."""


@dataclass(frozen=True)
class Method:
    label: str
    trainer: str
    config: str  # configs/trainers/<config>.yaml
    opts: str = ""  # KEY VALUE overrides, space-separated
    trains: bool = True


# The demo's overrides on top of the shipped configs: the plain protocol (un-augmented train
# features encoded once) and larger learning rates, so that a few epochs of a tiny random model
# visibly learn; CoOp uses class-specific contexts (CSC), which a random text tower needs to
# separate the classes.
METHODS = (
    Method("Zero-shot CLIP", "ZeroshotCLIP", "CoOp/rn50", "TRAINER.ZSCLIP.PREC fp32", False),
    Method(
        "CoOp",
        "CoOp",
        "CoOp/rn50_ep50",
        "TRAINER.COOP.PREC fp32 TRAINER.COOP.N_CTX 4 TRAINER.COOP.CSC True "
        "OPTIM.NAME adam OPTIM.LR 0.05",
    ),
    Method("Linear probe", "LinearProbeCLIP", "CoOp/rn50", "TRAINER.LINEAR_PROBE.PREC fp32"),
    Method("CLIP-Adapter", "CLIP_Adapter", "CLIP_Adapter/rn50", "OPTIM.LR 0.2"),
    Method(
        "TaskRes",
        "TaskRes",
        "TaskRes/adam_lr2e-3_B256_ep100",
        "TRAINER.TaskRes.PREC fp32 TRAINER.TaskRes.RESIDUAL_SCALE 0.5 OPTIM.LR 0.02",
    ),
)


def write_demo_dataset(
    root: str | Path,
    per_class: tuple[int, int, int] = (8, 4, 12),
    image_size: int = IMAGE_SIZE,
    seed: int = 0,
) -> Path:
    """Write the demo's shapes dataset under ``root`` in Caltech101's layout; returns its folder.

    ``per_class`` is the number of (train, val, test) images of each class.
    """
    return write_synthetic_dataset(root, CLASSES, CALTECH101, per_class, image_size, seed)


def write_demo_checkpoint(path: str | Path, seed: int = 0) -> Path:
    """A tiny random ViT CLIP in OpenAI's state-dict layout (32 px input)."""
    from clip.synthetic import write_synthetic_checkpoint  # imports torch: only when needed

    return write_synthetic_checkpoint(path, arch="ViT", jit=False, seed=seed)


def prepare_output(out: Path) -> None:
    """Give the demo a fresh output folder, replacing only one an earlier demo run created."""
    if out.exists():
        if (out / MARKER).exists():
            shutil.rmtree(out)
        elif any(out.iterdir()):
            raise DemoError(
                f"{out} exists, is not empty and was not written by the demo; "
                "pass another folder with --output."
            )
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("Written by tools/demo.py; replaced on its next run.\n")


def train_command(
    method: Method, data_root: Path, checkpoint: Path, run_dir: Path, epochs: int, shots: int
) -> list[str]:
    """The train.py command: the shipped configs, shrunk to the tiny model and a few epochs."""
    cmd = [
        sys.executable, "train.py",
        "--root", str(data_root),
        "--seed", "1",
        "--trainer", method.trainer,
        "--dataset-config-file", f"configs/datasets/{DATASET_CONFIG}.yaml",
        "--config-file", f"configs/trainers/{method.config}.yaml",
        "--output-dir", str(run_dir),
    ]  # fmt: skip
    if not method.trains:
        cmd.append("--eval-only")
    cmd += [
        "MODEL.BACKBONE.NAME", str(checkpoint),
        "INPUT.SIZE", f"({IMAGE_SIZE}, {IMAGE_SIZE})",
        "USE_CUDA", "False",
        "DATASET.NUM_SHOTS", str(shots),
        "DATALOADER.NUM_WORKERS", "0",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "8",
        "DATALOADER.TEST.BATCH_SIZE", "64",
        "OPTIM.MAX_EPOCH", str(epochs),
        "TRAIN.PRINT_FREQ", "100",
        "TRAINER.PROTOCOL", "plain",
        # Features of the random checkpoint stay in the demo's folder, not the user's store.
        "TRAINER.FEATURE_STORE.DIR", str(checkpoint.parent / "feature_store"),
        *method.opts.split(),
    ]  # fmt: skip
    return cmd


def run_method(method: Method, cmd: list[str], run_dir: Path) -> tuple[float, float]:
    """Run one train.py command (its console output goes to <run_dir>.console.txt); returns the
    test accuracy its log reports and the seconds it took. A failure shows where to look."""
    console = run_dir.with_name(run_dir.name + ".console.txt")
    console.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny model: one thread per run, runs in parallel
    start = time.time()
    with open(console, "w") as f:
        code = subprocess.call(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env)
    elapsed = time.time() - start
    result = read_run(run_dir)
    if code != 0 or not result.metrics:
        tail = "\n".join(console.read_text(errors="replace").splitlines()[-25:])
        raise DemoError(
            f"{method.label} failed (exit status {code}); last lines of its output:\n{tail}\n"
            f"Full output: {console}\nCommand: {' '.join(cmd)}"
        )
    accuracy = result.metrics["accuracy"]
    print(f"  {method.label:<15} {accuracy:6.2f}%   ({elapsed:.1f} s)", flush=True)
    return accuracy, elapsed


def demo_note(accuracies: dict[str, float], shots: int) -> str:
    """What the demo's numbers mean, worded from the numbers themselves."""
    chance = 100 / len(CLASSES)
    zero_shot = next(accuracies[m.label] for m in METHODS if not m.trains)
    trained = [accuracies[m.label] for m in METHODS if m.trains]
    side = "above" if zero_shot > chance else "below"
    relation = (
        "exactly chance"
        if zero_shot == chance
        else f"{abs(zero_shot - chance):.2f} points {side} chance"
    )
    below = sum(acc <= chance for acc in trained)
    verdict = (
        "all above chance"
        if below == 0
        else f"{below} of them at or below chance (try more --epochs)"
    )
    return (
        "NOTE: the CLIP weights are RANDOM (nothing was downloaded). These accuracies only show\n"
        "that data loading, few-shot sampling, training, checkpointing and evaluation run end to\n"
        f"end; they say nothing about CLIP's quality. Chance level is {chance:.0f}% "
        f"({len(CLASSES)} balanced classes).\n"
        f"Zero-shot CLIP scored {zero_shot:.2f}%, {relation}: its random towers know nothing\n"
        "of these images, so how far it lands from chance is an accident of the random weights.\n"
        f"The trained methods, which learn from {shots} images per class, scored "
        f"{min(trained):.2f}% to {max(trained):.2f}%,\n{verdict}."
    )


def summarise(runs: Path, figures: Path) -> tuple[str, list[Path]]:
    """The results tool on the demo's runs: its methods x datasets table, and its accuracy figure
    written to ``figures`` (PNG and PDF)."""
    results = Results(collect_records(collect_settings(runs)), "accuracy")
    table = render(all_tables(results)[:1], "terminal")
    fig = accuracy_vs_shots(results)
    return table, (save_figure(fig, figures / ACCURACY_FIGURE) if fig is not None else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REPO / "demo_output", help="output folder")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs per method")
    parser.add_argument("--shots", type=int, default=8, help="training images per class")
    parser.add_argument("--jobs", type=int, default=2, help="methods run in parallel")
    args = parser.parse_args(argv)
    out = args.output.resolve()
    start = time.time()

    print("TaskRes trainer demo: tiny random CLIP + synthetic data, everything on CPU.")
    try:
        prepare_output(out)
    except DemoError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    data_root = out / "data"
    dataset_dir = write_demo_dataset(data_root)
    checkpoint = write_demo_checkpoint(out / "clip_tiny_vit.pt")
    print(f"Wrote a random-weight CLIP checkpoint: {checkpoint}")
    print(
        f"Wrote a synthetic {len(CLASSES)}-class dataset in Caltech101's layout: {dataset_dir} "
        f"({', '.join(c.classname for c in CLASSES)})"
    )
    print(f"Running each method through train.py ({args.shots} shots, {args.epochs} epochs):")

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = []
        for method in METHODS:
            run_dir = out / "runs" / method.trainer
            cmd = train_command(method, data_root, checkpoint, run_dir, args.epochs, args.shots)
            futures.append(pool.submit(run_method, method, cmd, run_dir))
        try:
            finished = [future.result() for future in futures]
        except DemoError as err:
            print(f"ERROR: {err}", file=sys.stderr)
            return 1
    accuracies = {m.label: acc for m, (acc, _) in zip(METHODS, finished)}
    table, figure = summarise(out / "runs", out / "figures")
    print()
    print(demo_note(accuracies, args.shots))
    print(f"Outputs (logs, checkpoints, TensorBoard) are under {out / 'runs'}.")
    print(f"Wrote the accuracy figure: {', '.join(map(str, figure))}")
    print("Summarise them with: python tools/parse_test_res.py " + str(out / "runs") + " --table")
    print(f"Done in {time.time() - start:.0f} s. For real benchmarks see README.md.")
    print()
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
