"""Fixtures for the method tests: a tiny CLIP, a tiny learnable dataset and a cfg builder."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from yacs.config import CfgNode

import trainers  # noqa: F401  (registers the trainers and their config keys)
from dassl.engine import TRAINER_REGISTRY
from datasets.synthetic import write_tiny_image_dataset
from tests.support.tiny_clip import tiny_clip_checkpoint
from tests.support.tiny_run import tiny_run_cfg
from trainers import clip_base
from trainers.feature_store import ENV_VAR

NUM_CLASSES = 3
PER_CLASS = (6, 3, 4)  # train, val, test images per class


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    """Tiny models run fastest single-threaded (no OpenMP hand-offs on a busy 2-core machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def feature_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty feature store per test, so what a test encodes does not depend on the tests
    before it (tests of sharing run several trainers on one)."""
    path = tmp_path / "feature_store"
    monkeypatch.setenv(ENV_VAR, str(path))
    return path


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clip")


@pytest.fixture(scope="session")
def vit_clip(clip_dir: Path) -> Path:
    return tiny_clip_checkpoint(clip_dir, arch="ViT")


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_tiny_image_dataset(root, num_classes=NUM_CLASSES, per_class=PER_CLASS)
    return root


# The method tests' run on top of TINY_RUN: full-batch Adam for a few epochs, the last step kept.
METHOD_RUN = {
    "DATASET.NUM_SHOTS": -1,
    "INPUT.TRANSFORMS": ["random_flip", "normalize"],
    "INPUT.PIXEL_MEAN": [0.48145466, 0.4578275, 0.40821073],
    "INPUT.PIXEL_STD": [0.26862954, 0.26130258, 0.27577711],
    "DATALOADER.TRAIN_X.BATCH_SIZE": 32,
    "DATALOADER.TEST.BATCH_SIZE": 32,
    "OPTIM.NAME": "adam",
    "OPTIM.LR": 0.01,
    "OPTIM.MAX_EPOCH": 4,
    "OPTIM.LR_SCHEDULER": "cosine",
    "TRAIN.PRINT_FREQ": 100,
    "TRAIN.CHECKPOINT_FREQ": 0,
    "TEST.FINAL_MODEL": "last_step",
    "SEED": 1,
}


def build_cfg(
    trainer: str,
    backbone: Path,
    data_root: Path,
    output_dir: Path,
    opts: list[Any] = (),
    prec: str = "fp32",
) -> CfgNode:
    """A METHOD_RUN of `trainer` on `backbone`: fp32 unless `prec` says otherwise, `opts`
    (KEY VALUE ...) last."""
    cfg = tiny_run_cfg(
        {
            **METHOD_RUN,
            "TRAINER.NAME": trainer,
            f"TRAINER.{TRAINER_REGISTRY.get(trainer).CFG_NODE}.PREC": prec,
            "MODEL.BACKBONE.NAME": str(backbone),
            "DATASET.ROOT": str(data_root),
            "OUTPUT_DIR": str(output_dir),
        }
    )
    cfg.merge_from_list(list(opts))
    return cfg


@pytest.fixture
def make_cfg(vit_clip: Path, data_root: Path, tmp_path: Path) -> Callable[..., CfgNode]:
    """make_cfg("TaskRes", "OPTIM.LR", 0.1, backbone=path, prec="amp") -> a cfg writing under
    tmp_path, with the method's PREC set to `prec` (fp32 by default)."""

    def make(trainer: str, *opts: Any, backbone: Path | None = None, prec: str = "fp32") -> CfgNode:
        output_dir = tmp_path / "output"
        return build_cfg(trainer, backbone or vit_clip, data_root, output_dir, opts, prec)

    return make


@pytest.fixture
def force_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run PREC fp16/amp on the CPU as a CUDA run would: without resolve_precision's fp32
    fallback, which is the only CUDA-specific step (torch runs fp16 and autocast on CPU too)."""
    monkeypatch.setattr(clip_base, "resolve_precision", lambda requested, device: requested)
