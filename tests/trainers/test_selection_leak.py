"""No selection reads the test split: runs on a dataset whose test split is poisoned (each test
image swapped for one of another class) select the same epoch and the same hyperparameters, and
learn the same weights, as runs on the clean dataset; only the final test differs. Without a
val split, a search is refused."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from dassl.evaluation.result_record import read_result_record
from datasets.synthetic import TINY_IMAGES
from tests.support.tiny_run import run_train_in_process, tiny_run_argv

from .conftest import METHOD_RUN

SELECTING = {**METHOD_RUN, "DATASET.NUM_SHOTS": 2, "OPTIM.MAX_EPOCH": 5, "OPTIM.LR": 0.05}


@pytest.fixture(scope="module")
def poisoned_root(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny dataset with each test image replaced by the next class's test image (labels
    kept), so a selection that read test would see labels that contradict the images."""
    root = tmp_path_factory.mktemp("poisoned")
    shutil.copytree(data_root / TINY_IMAGES.dataset_dir, root / TINY_IMAGES.dataset_dir)
    split_file = root / TINY_IMAGES.dataset_dir / TINY_IMAGES.split_file
    split = json.loads(split_file.read_text())
    by_label: dict[int, list[str]] = {}
    for relpath, label, _ in split["test"]:
        by_label.setdefault(label, []).append(relpath)
    labels = sorted(by_label)
    seen = {label: 0 for label in labels}
    for row in split["test"]:
        label = row[1]
        other = labels[(labels.index(label) + 1) % len(labels)]
        row[0] = by_label[other][seen[label]]
        seen[label] += 1
    split_file.write_text(json.dumps(split))
    return root


def _run(trainer: str, root: Path, out: Path, backbone: Path, keys: dict) -> dict:
    keys = {**SELECTING, "MODEL.BACKBONE.NAME": str(backbone), **keys}
    run_train_in_process(tiny_run_argv(trainer, root, out, keys))
    return read_result_record(out)


def _weights(run: Path, model_name: str) -> dict[str, torch.Tensor]:
    return torch.load(run / model_name / "model-best.pth.tar", weights_only=True)["state_dict"]


@pytest.mark.parametrize(
    ("trainer", "model_name", "keys", "selected"),
    [
        # the epoch picked on val
        ("TaskRes", "prompt_learner", {"TEST.FINAL_MODEL": "best_val"}, ("selection", "best_val")),
        # C searched on val
        ("LinearProbeCLIP", "linear_probe", {"TRAINER.LINEAR_PROBE.SEARCH_STEPS": 2},
         ("hyperparameters", "searched")),
    ],
)  # fmt: skip
def test_a_poisoned_test_split_changes_no_selection(
    trainer, model_name, keys, selected, data_root, poisoned_root, vit_clip, tmp_path
):
    clean = _run(trainer, data_root, tmp_path / "clean", vit_clip, keys)
    poisoned = _run(trainer, poisoned_root, tmp_path / "poisoned", vit_clip, keys)
    entry, rule = selected
    assert clean[entry]["rule"] == rule
    assert clean["accuracy"] != poisoned["accuracy"]  # the poison reaches the final test
    for key in ("model", "selection", "hyperparameters"):
        assert clean[key] == poisoned[key], key
    assert clean["selection"].get("val_split", "val") == "val"
    assert clean["hyperparameters"].get("split", "val") == "val"
    clean_weights = _weights(tmp_path / "clean", model_name)
    poisoned_weights = _weights(tmp_path / "poisoned", model_name)
    assert clean_weights.keys() == poisoned_weights.keys()
    for name, tensor in clean_weights.items():
        assert torch.equal(tensor, poisoned_weights[name]), name


def test_a_search_on_val_is_refused_without_a_val_split(data_root, vit_clip, tmp_path):
    # the validation-free protocol has no val split to search on, and never falls back to test
    with pytest.raises(ValueError, match="validation-free protocol"):
        _run("LinearProbeCLIP", data_root, tmp_path / "lp", vit_clip, {"DATASET.VAL_USE": "none"})
    assert not (tmp_path / "lp" / "result.json").exists()
