"""Writers of Dassl-style run logs for the tools tests (what the evaluator and trainer print)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml


def result_block(accuracy: float, total: int = 100) -> str:
    correct = round(total * accuracy / 100)
    return (
        "=> result\n"
        f"* total: {total:,}\n"
        f"* correct: {correct:,}\n"
        f"* accuracy: {accuracy:.1f}%\n"
        f"* error: {100 - accuracy:.1f}%\n"
        f"* macro_f1: {accuracy - 1:.1f}%\n"
    )


def training_log(test_accuracy: float | None, val_accuracies: tuple[float, ...] = ()) -> str:
    """A training run's log: val evaluations per epoch, then (when finished) the test evaluation."""
    text = "Setting fixed seed: 1\n** Config **\nOUTPUT_DIR: somewhere\n"
    for epoch, acc in enumerate(val_accuracies, start=1):
        text += f"epoch [{epoch}/9] batch [5/5] time 0.1 loss 1.0 lr 1e-3\n"
        text += "Evaluate on the *val* set\n" + result_block(acc)
    if test_accuracy is not None:
        text += "Finish training\nDeploy the last-epoch model\n"
        text += "Evaluate on the *test* set\n" + result_block(test_accuracy)
        text += "Elapsed: 0:00:12\n"
    return text


def write_log(run_dir: Path, text: str, name: str = "log.txt", mtime: float | None = None) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / name
    path.write_text(text, encoding="utf-8")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def write_config(run_dir: Path, **keys: object) -> Path:
    """A run's config.yaml holding the facts the results tools read; ``keys`` are flattened keys
    with dots written as double underscores (``DATASET__NUM_SHOTS=4``) overriding the defaults."""
    flat: dict[str, object] = {
        "TRAINER.NAME": "TaskRes",
        "TRAINER.FEATURE_CACHE.TRAIN": False,
        "TRAINER.TaskRes.RESIDUAL_SCALE": 0.5,
        "TRAINER.TaskRes.ENHANCED_BASE": "none",
        "MODEL.BACKBONE.NAME": "RN50",
        "DATASET.NAME": "Caltech101",
        "DATASET.NUM_SHOTS": 16,
        "DATASET.SUBSAMPLE_CLASSES": "all",
        "SEED": 1,
        "OPTIM.LR": 0.002,
        "OPTIM.MAX_EPOCH": 10,
        "TEST.FINAL_MODEL": "last_step",
        "RUN.EVAL_ONLY": False,
        "RUN.MODEL_DIR": "",
    }
    flat.update({key.replace("__", "."): value for key, value in keys.items()})
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path


def write_run(root: Path, where: str, accuracy: float | None, **keys: object) -> Path:
    """A finished run folder ``root/where``: its config.yaml (see write_config) and its log."""
    run_dir = root / where
    write_config(run_dir, **keys)
    write_log(run_dir, training_log(accuracy))
    return run_dir
