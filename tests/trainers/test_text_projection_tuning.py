"""TextProjectionTuning builds TaskRes's enhanced base: it learns, writes upstream's file format,
TaskRes loads that file (and upstream's), and the run resumes and evaluates like any other."""

import pytest
import torch

from dassl.engine import TrainerX
from tests.support.tiny_run import run_train_in_process, tiny_run_argv
from trainers.enhanced_base import FILE_NAME, projection_digest

from .conftest import METHOD_RUN
from .helpers import make_trainer, train_accuracy

FAST = ("OPTIM.MAX_EPOCH", 10, "OPTIM.LR", 0.05, "DATALOADER.TRAIN_X.BATCH_SIZE", 6)


@pytest.fixture
def built(make_cfg):
    """A trained TextProjectionTuning run and the train accuracy of its untrained start."""
    trainer = make_trainer(make_cfg("TextProjectionTuning", *FAST))
    before = train_accuracy(trainer)
    start = trainer.head.projection.weight.detach().clone()
    trainer.train()
    return trainer, before, start


def test_tuning_changes_the_projection_and_raises_train_accuracy(built, make_cfg):
    trainer, before, start = built
    regular = make_trainer(make_cfg("TaskRes"))
    # Untrained, the head is TaskRes's regular base: the same classifier, the same accuracy.
    assert before == train_accuracy(regular)
    assert train_accuracy(trainer) > before
    assert not torch.allclose(trainer.head.projection.weight, start)
    # The frozen CLIP keeps its own projection.
    torch.testing.assert_close(trainer.clip_model.text_projection, start.t())


def test_the_file_is_upstreams_format_and_taskres_uses_it(built, make_cfg, tmp_path):
    trainer, _, _ = built
    path = tmp_path / "output" / FILE_NAME
    saved = torch.load(path, weights_only=True)
    weight = saved["state_dict"]["weight"]
    width, dim = trainer.clip_model.text_projection.shape
    assert weight.shape == (dim, width)  # upstream's [D, width]
    torch.testing.assert_close(weight, trainer.head.projection.weight.detach())  # the tested model
    assert saved["built_by"]["seed"] == 1 and saved["built_by"]["trainer"] == "TextProjectionTuning"

    # TaskRes* starts from exactly the classifier the tuning ended with.
    cfg = make_cfg("TaskRes", "TRAINER.TaskRes.ENHANCED_BASE", str(path))
    cfg.OUTPUT_DIR = str(tmp_path / "taskres")
    enhanced = make_trainer(cfg)
    torch.testing.assert_close(
        enhanced.head.base_text_features, trainer.head.class_features().detach()
    )
    assert train_accuracy(enhanced) == train_accuracy(trainer)
    regular = make_trainer(make_cfg("TaskRes"))
    assert train_accuracy(enhanced) > train_accuracy(regular)


def test_taskres_refuses_a_base_tuned_from_another_backbone(built, make_cfg, tmp_path, clip_dir):
    from tests.support.tiny_clip import tiny_clip_checkpoint

    path = str(tmp_path / "output" / FILE_NAME)
    other = tiny_clip_checkpoint(clip_dir, arch="ViT", seed=7)
    cfg = make_cfg("TaskRes", "TRAINER.TaskRes.ENHANCED_BASE", path, backbone=other)
    cfg.OUTPUT_DIR = str(tmp_path / "taskres")
    with pytest.raises(ValueError, match="tuned from the text projection of backbone"):
        make_trainer(cfg)


def test_taskres_notes_a_base_built_with_another_seed(built, make_cfg, tmp_path, capsys):
    cfg = make_cfg("TaskRes", "TRAINER.TaskRes.ENHANCED_BASE", str(tmp_path / "output" / FILE_NAME))
    cfg.OUTPUT_DIR, cfg.SEED = str(tmp_path / "taskres"), 2
    make_trainer(cfg)
    assert "built with another seed 1 (this run: 2)" in capsys.readouterr().out


def test_upstream_format_files_still_load(make_cfg, tmp_path):
    """A released base carries nothing but state_dict["weight"] (and epoch): no provenance."""
    regular = make_trainer(make_cfg("TaskRes"))
    width, dim = regular.clip_model.text_projection.shape
    weight = regular.clip_model.text_projection.detach().t().clone() * 1.5
    path = tmp_path / "model.pth.tar"
    torch.save({"state_dict": {"weight": weight}, "epoch": 200}, path)
    enhanced = make_trainer(make_cfg("TaskRes", "TRAINER.TaskRes.ENHANCED_BASE", str(path)))
    torch.testing.assert_close(
        enhanced.head.base_text_features, regular.head.base_text_features * 1.5
    )


def test_a_backbone_without_a_projection_matrix_is_refused_before_data(make_cfg, monkeypatch):
    monkeypatch.setattr("clip.backbone.OpenAIBackbone.text_projection", property(lambda self: None))
    read = []
    monkeypatch.setattr(TrainerX, "build_data_loader", lambda self: read.append(1))
    with pytest.raises(ValueError, match="ends in none.*Fix"):
        make_trainer(make_cfg("TextProjectionTuning"))
    assert not read


def test_projection_digest_agrees_across_precisions():
    projection = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    assert projection_digest(projection) == projection_digest(projection.half())
    assert projection_digest(projection) != projection_digest(projection * 1.01)


def test_resume_and_eval_only(vit_clip, data_root, tmp_path):
    """An interrupted build resumes to the same base; eval-only reproduces its test result."""
    keys = {**METHOD_RUN, "MODEL.BACKBONE.NAME": str(vit_clip), "OPTIM.MAX_EPOCH": 4,
            "TRAINER.TextProjectionTuning.PREC": "fp32"}  # fmt: skip

    def run(folder, **extra):
        argv = tiny_run_argv("TextProjectionTuning", data_root, folder, {**keys, **extra})
        return run_train_in_process(argv)

    whole = tmp_path / "whole"
    log = run(whole)
    # The first two epochs, then the same command with all four: it resumes from epoch 2.
    parts = tmp_path / "parts"
    run(parts, **{"OPTIM.MAX_EPOCH": 4, "TRAIN.CHECKPOINT_FREQ": 1, "TEST.NO_TEST": True})
    assert (parts / FILE_NAME).is_file()
    # ... a stopped run: drop what epochs 3-4 and the end wrote, keep epochs 1-2.
    folder = parts / "text_projection"
    for epoch in (3, 4):
        (folder / f"model.pth.tar-{epoch}").unlink()
    (folder / "checkpoint").write_text("model.pth.tar-2\n")
    (parts / FILE_NAME).unlink()
    for old in parts.glob("log.txt*"):
        old.unlink()
    resumed = run(parts, **{"TRAIN.CHECKPOINT_FREQ": 1, "TEST.NO_TEST": True})
    assert "will resume training" in resumed and "model.pth.tar-2" in resumed
    a = torch.load(whole / FILE_NAME, weights_only=True)["state_dict"]["weight"]
    b = torch.load(parts / FILE_NAME, weights_only=True)["state_dict"]["weight"]
    assert torch.equal(a, b)

    flags = ["--eval-only", "--model-dir", str(whole)]
    evaluated = run_train_in_process(
        tiny_run_argv("TextProjectionTuning", data_root, tmp_path / "eval", keys, flags)
    )
    accuracy = [line for line in log.splitlines() if line.startswith("* accuracy")]
    assert accuracy and accuracy[-1] in evaluated


def test_fp16_build_loads_in_an_fp32_taskres(make_cfg, force_precision, tmp_path):
    """PREC fp16 (CLIP in fp16, the projection learned in fp32): the base's digest of the start
    projection agrees with an fp32 run of the same backbone, so TaskRes accepts it."""
    trainer = make_trainer(make_cfg("TextProjectionTuning", *FAST, prec="fp16"))
    assert trainer.head.projection.weight.dtype == torch.float32
    trainer.train()
    cfg = make_cfg("TaskRes", "TRAINER.TaskRes.ENHANCED_BASE", str(tmp_path / "output" / FILE_NAME))
    cfg.OUTPUT_DIR = str(tmp_path / "taskres")
    enhanced = make_trainer(cfg)
    torch.testing.assert_close(
        enhanced.head.base_text_features,
        trainer.head.class_features().detach(),
        rtol=1e-2,
        atol=1e-2,
    )
