"""The demo's writers: a tiny OpenAI-layout CLIP checkpoint and a learnable synthetic dataset in
Caltech101's layout that the real dataset reader accepts. (The full demo runs from scripts/demo.sh;
it is too slow for the unit tests.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clip import clip
from dassl.config import get_cfg_default
from datasets.caltech101 import Caltech101
from tests.support.tiny_run import full_cfg
from tests.tools.logs import write_run
from tools import demo

PER_CLASS = (3, 2, 4)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return demo.write_demo_dataset(tmp_path_factory.mktemp("data"), per_class=PER_CLASS)


def test_split_file_is_coop_format_and_points_at_real_images(dataset_dir):
    split = json.loads((dataset_dir / "split_zhou_Caltech101.json").read_text())
    assert set(split) == {"train", "val", "test"}
    for name, count in zip(("train", "val", "test"), PER_CLASS):
        entries = split[name]
        assert len(entries) == count * len(demo.CLASSES)
        for relpath, label, classname in entries:
            assert classname == demo.CLASSES[label].classname
            assert relpath.startswith(demo.CLASSES[label].folder + "/")
            with Image.open(dataset_dir / "101_ObjectCategories" / relpath) as img:
                assert img.format == "JPEG"
                assert img.mode == "RGB"
                assert img.size == (demo.IMAGE_SIZE, demo.IMAGE_SIZE)
    all_paths = [e[0] for name in split for e in split[name]]
    assert len(set(all_paths)) == len(all_paths)


def test_classes_are_learnable_from_pixels(dataset_dir):
    """A nearest-centroid classifier on raw pixels (train centroids) labels test images well."""
    split = json.loads((dataset_dir / "split_zhou_Caltech101.json").read_text())

    def pixels(entries):
        images = [
            np.asarray(Image.open(dataset_dir / "101_ObjectCategories" / p), dtype=np.float32)
            for p, _, _ in entries
        ]
        return np.stack(images).reshape(len(entries), -1), np.array([y for _, y, _ in entries])

    x_train, y_train = pixels(split["train"])
    x_test, y_test = pixels(split["test"])
    centroids = np.stack([x_train[y_train == k].mean(0) for k in range(len(demo.CLASSES))])
    predicted = ((x_test[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert (predicted == y_test).mean() >= 0.8


def test_registered_caltech101_reader_accepts_it(dataset_dir):
    keys = {"DATASET.NAME": "Caltech101", "DATASET.NUM_SHOTS": 2, "SEED": 1}
    cfg = full_cfg({**keys, "DATASET.ROOT": str(dataset_dir.parent)})
    data = Caltech101(cfg)
    assert data.num_classes == len(demo.CLASSES)
    assert data.classnames == [c.classname for c in demo.CLASSES]
    assert len(data.train_x) == 2 * len(demo.CLASSES)
    assert len(data.test) == PER_CLASS[2] * len(demo.CLASSES)
    assert (dataset_dir / "split_fewshot" / "shot_2-seed_1.pkl").is_file()


def test_checkpoint_loads_as_a_32px_clip(tmp_path):
    path = demo.write_demo_checkpoint(tmp_path / "tiny.pt")
    cfg = get_cfg_default()
    cfg.MODEL.BACKBONE.NAME = str(path)
    model = clip.load_clip_to_cpu(cfg)
    assert model.visual.input_resolution == demo.IMAGE_SIZE
    assert model.context_length == 77


def test_train_command_fits_the_tiny_model_and_stays_on_cpu(tmp_path):
    method = next(m for m in demo.METHODS if m.trainer == "TaskRes")
    cmd = demo.train_command(method, tmp_path / "d", tmp_path / "c.pt", tmp_path / "r", 3, 2)
    pairs = dict(zip(cmd, cmd[1:]))  # each flag or key -> the item after it
    assert pairs["INPUT.SIZE"] == f"({demo.IMAGE_SIZE}, {demo.IMAGE_SIZE})"
    assert pairs["USE_CUDA"] == "False"
    assert pairs["OPTIM.MAX_EPOCH"] == "3"
    assert pairs["--config-file"] == "configs/trainers/TaskRes/adam_lr2e-3_B256_ep100.yaml"
    assert pairs["TRAINER.PROTOCOL"] == "plain"
    assert pairs["TRAINER.FEATURE_STORE.DIR"] == str(tmp_path / "feature_store")
    assert "--eval-only" not in cmd
    zeroshot = next(m for m in demo.METHODS if not m.trains)
    assert "--eval-only" in demo.train_command(zeroshot, tmp_path, tmp_path, tmp_path, 3, 2)


def test_output_folder_is_replaced_only_when_the_demo_owns_it(tmp_path):
    own = tmp_path / "own"
    demo.prepare_output(own)
    (own / "runs").mkdir()
    demo.prepare_output(own)
    assert not (own / "runs").exists() and (own / demo.MARKER).exists()

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "results.txt").write_text("precious")
    with pytest.raises(demo.DemoError, match="--output"):
        demo.prepare_output(foreign)
    assert (foreign / "results.txt").read_text() == "precious"


def accuracies(zero_shot: float, trained: list[float]) -> dict[str, float]:
    labels = [m.label for m in demo.METHODS if m.trains]
    zero = next(m.label for m in demo.METHODS if not m.trains)
    return {zero: zero_shot, **dict(zip(labels, trained))}


@pytest.mark.parametrize(
    "zero_shot, relation",
    [
        (10.0, "10.00 points below chance"),
        (26.7, "6.70 points above chance"),
        (20.0, "exactly chance"),
    ],
)
def test_note_says_where_zero_shot_landed(zero_shot, relation):
    note = demo.demo_note(accuracies(zero_shot, [75.0, 96.7, 85.0, 81.7]), shots=8)
    assert "Chance level is 20% (5 balanced classes)" in note
    assert f"Zero-shot CLIP scored {zero_shot:.2f}%, {relation}" in note
    assert "scored 75.00% to 96.70%,\nall above chance." in note
    assert "stays near" not in note


def test_note_names_trained_methods_at_chance():
    note = demo.demo_note(accuracies(20.0, [20.0, 90.0, 15.0, 80.0]), shots=2)
    assert "learn from 2 images per class, scored 15.00% to 90.00%" in note
    assert "2 of them at or below chance (try more --epochs)" in note


def test_summary_is_the_results_tool_table_and_figure(tmp_path):
    scores = {"ZeroshotCLIP": 10.0, "CoOp": 85.0, "LinearProbeCLIP": 96.7,
              "CLIP_Adapter": 75.0, "TaskRes": 81.7}  # fmt: skip
    for trainer, accuracy in scores.items():
        write_run(
            tmp_path / "runs", trainer, accuracy, TRAINER__NAME=trainer, DATASET__NUM_SHOTS=8,
            TRAINER__FEATURE_CACHE__TRAIN=True, MODEL__BACKBONE__NAME=str(tmp_path / "tiny.pt"),
        )  # fmt: skip
    table, figure = demo.summarise(tmp_path / "runs", tmp_path / "figures")
    lines = table.splitlines()
    assert lines[0] == (
        "accuracy (%) at 8 shots: mean ± std over seeds (n = seeds); backbone tiny.pt; "
        "protocol plain"
    )
    assert [line.split()[-2:] for line in lines[3:]] == [
        [f"{scores[t]:.2f}", "(n=1)"]
        for t in ("ZeroshotCLIP", "LinearProbeCLIP", "CoOp", "CLIP_Adapter", "TaskRes")
    ]
    assert [p.name for p in figure] == ["accuracy_vs_shots.png", "accuracy_vs_shots.pdf"]
    assert all(p.is_file() for p in figure)


def test_the_demo_runs_where_only_python3_exists(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    path = os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"])
    assert shutil.which("python", path=path) is None  # the machine of the report: no `python`
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "demo.sh"), "--help"],
        env={**env, "PATH": path},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "--output" in done.stdout
