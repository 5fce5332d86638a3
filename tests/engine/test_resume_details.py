"""Resume corner cases that need no subprocess: models saved at different epochs."""

from pathlib import Path

import pytest

import train
from dassl.engine import build_trainer
from datasets.synthetic import write_tiny_image_dataset
from tests.support.tiny_run import run_train_in_process

from .helpers import MODEL_NAME, assert_same_tensors, load_state, train_argv


def _two_model_run(tmp_path: Path) -> tuple[Path, list[str]]:
    root = tmp_path / "data"
    write_tiny_image_dataset(root)
    out = tmp_path / "out"
    argv = train_argv(root, out, trainer="TwoModelTrainer", OPTIM__MAX_EPOCH="2")
    run_train_in_process(argv)
    return out, argv


def test_resume_falls_back_when_one_model_is_a_checkpoint_ahead(tmp_path: Path) -> None:
    out, argv = _two_model_run(tmp_path)
    # As if the run died after saving the first model's epoch-2 file but before the second's.
    (out / "model_b" / "model.pth.tar-2").unlink()
    (out / "model_b" / "checkpoint").write_text("model.pth.tar-1\n")

    trainer = build_trainer(train.setup_cfg(train.build_parser().parse_args(argv)))
    assert trainer.resume_model_if_exist(str(out)) == 1
    expected = load_state(out / MODEL_NAME / "model.pth.tar-1")["state_dict"]
    assert_same_tensors(trainer.model.state_dict(), expected)


def test_resume_with_missing_fallback_file_says_what_to_do(tmp_path: Path) -> None:
    out, argv = _two_model_run(tmp_path)
    (out / "model_b" / "checkpoint").write_text("model.pth.tar-1\n")
    (out / MODEL_NAME / "model.pth.tar-1").unlink()

    trainer = build_trainer(train.setup_cfg(train.build_parser().parse_args(argv)))
    with pytest.raises(RuntimeError, match='different epochs.*Delete the "checkpoint" files'):
        trainer.resume_model_if_exist(str(out))
