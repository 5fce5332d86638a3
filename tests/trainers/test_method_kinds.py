"""Methods declare what they train, and the base derives the rest: one toy method of each kind
(tests/trainers/cache_method.py, prompt_method.py, lora_method.py), added without touching shared
code, resumes exactly, evaluates the same in eval-only runs, and the store is never touched by a
method whose image tower learns, even one that declares itself a head."""

import json
from pathlib import Path

import pytest
import torch

from tests.support.warm_process import run_python
from trainers.clip_base import ClipTrainer
from trainers.method_kind import MethodKind

from .helpers import make_trainer


def run_kind(method: str, vit_clip: Path, data_root: Path, tmp_path: Path) -> dict:
    out = tmp_path / "facts.json"
    argv = [str(data_root), str(vit_clip), str(tmp_path / "runs"), str(out)]
    # A process of its own, so that the toy method is registered there only.
    code, output = run_python(["-m", "tests.trainers.kinds_runner", method, *argv], timeout=600)
    assert code == 0, output[-6000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("method", ["CacheAdapter", "ToyPrompt", "ToyLoRA", "ForgetfulLoRA"])
def test_each_kind_resumes_exactly_and_evaluates_the_same(method, vit_clip, data_root, tmp_path):
    facts = run_kind(method, vit_clip, data_root, tmp_path)
    assert facts["resumed_from_epoch_1"] and facts["resume_exact"]
    assert facts["resumed_accuracy"] == facts["full_accuracy"]
    assert facts["eval_accuracy"] == facts["full_accuracy"]
    evaluations = facts["evaluations"]
    assert [e["split"] for e in evaluations] == ["val"] * 3 + ["test"]
    # Every evaluation serves the features the image tower gives at that moment.
    assert all(e["live"] for e in evaluations)
    val_digests = {e["digest"] for e in evaluations if e["split"] == "val"}
    if method in ("ToyLoRA", "ForgetfulLoRA"):
        assert len(val_digests) == 3  # re-encoded by the adapted tower after every epoch
        assert facts["store_files_before"] > 0 and facts["store_unchanged"]
        assert "trains the image tower" in facts["views_error"]
        assert "Fix: set TRAINER.PROTOCOL exact" in facts["views_error"]
    else:
        assert len(val_digests) == 1  # encoded once per run
    if method == "CacheAdapter":
        assert facts["fits"] == [1, 0]  # fitted on the fresh start, never after the resume
        error = facts["mismatch_error"]
        assert "cache_keys" in error and "DATASET.NUM_SHOTS" in error and "--model-dir" in error


def test_a_tower_changed_behind_the_base_s_back_never_reaches_the_store(
    make_cfg, feature_store, capsys
):
    """The guarantee lives in the feature pipeline: whatever the method declares, features of
    weights other than the loaded ones are neither written to nor read from the store."""
    trainer = make_trainer(make_cfg("TaskRes"))
    test = trainer.dm.dataset.test
    base, _ = trainer.encode_data_source(test)  # stored
    files = sorted(p for p in feature_store.rglob("*") if p.is_file())
    contents = {p: p.read_bytes() for p in files}

    weight = next(trainer.backbone.visual.parameters())
    weight.data.mul_(1.5)  # written through .data: no version counter moves
    changed, _ = trainer.encode_data_source(test)
    assert "Feature store not used" in capsys.readouterr().out
    assert not torch.equal(changed, base)  # not served base CLIP's stored features
    assert sorted(p for p in feature_store.rglob("*") if p.is_file()) == files
    assert all(p.read_bytes() == data for p, data in contents.items())
    assert not trainer.eval_features_fixed()

    trainer.backbone.visual.proj.requires_grad_(True)  # a tower parameter made trainable
    assert trainer.image_tower_seal.broken().startswith("1 of its parameters are trainable")


def test_a_method_must_declare_what_it_trains(make_cfg):
    class Undeclared(ClipTrainer):
        CFG_NODE = "TaskRes"

    with pytest.raises(TypeError, match="does not declare what it trains.*MethodKind.HEAD"):
        Undeclared.check_cfg(Undeclared.__new__(Undeclared), make_cfg("TaskRes"))


def test_the_shipped_methods_declare_their_kinds():
    from dassl.engine import TRAINER_REGISTRY

    kinds = {name: TRAINER_REGISTRY.get(name).TRAINS for name in ("TaskRes", "CoOp")}
    assert kinds == {"TaskRes": MethodKind.HEAD, "CoOp": MethodKind.FROZEN_TOWER_INPUTS}
    assert all(not kind.image_tower_learns for kind in kinds.values())
