"""Checkpoint files: layout, atomic writes, safe loading, upstream-written files."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from dassl.utils import (
    count_num_param,
    load_checkpoint,
    load_pretrained_weights,
    open_all_layers,
    open_specified_layers,
    resume_from_checkpoint,
    save_checkpoint,
    torchtools,
)
from dassl.utils.tools import remove_stale_temp_files

REPO = Path(__file__).resolve().parents[2]


def _state(model: nn.Module, epoch: int, **extra) -> dict:
    return {
        "state_dict": model.state_dict(),
        "epoch": epoch,
        "optimizer": None,
        "scheduler": None,
        "val_result": None,
        **extra,
    }


def test_save_writes_epoch_file_pointer_and_best(tmp_path: Path) -> None:
    model = nn.Linear(3, 2)
    save_checkpoint(_state(model, 1), str(tmp_path))
    save_checkpoint(_state(model, 2, val_result=np.float64(75.0)), str(tmp_path), is_best=True)
    assert sorted(os.listdir(tmp_path)) == [
        "checkpoint",
        "model-best.pth.tar",
        "model.pth.tar-1",
        "model.pth.tar-2",
    ]
    assert (tmp_path / "checkpoint").read_text() == "model.pth.tar-2\n"
    # numpy scalars become floats, so the plain weights_only loader reads the file.
    best = torch.load(tmp_path / "model-best.pth.tar", weights_only=True)
    assert type(best["val_result"]) is float and best["val_result"] == 75.0
    assert best["epoch"] == 2


def test_save_strips_data_parallel_prefix(tmp_path: Path) -> None:
    state = {"state_dict": {"module.weight": torch.ones(2)}, "epoch": 1}
    save_checkpoint(state, str(tmp_path))
    assert list(load_checkpoint(str(tmp_path / "model.pth.tar-1"))["state_dict"]) == ["weight"]


def test_crash_mid_write_keeps_old_checkpoint_and_pointer(tmp_path: Path, monkeypatch) -> None:
    model = nn.Linear(3, 2)
    save_checkpoint(_state(model, 1), str(tmp_path))
    save_checkpoint(_state(model, 1), str(tmp_path), model_name="model-best.pth.tar")
    old_bytes = (tmp_path / "model-best.pth.tar").read_bytes()
    real_save = torch.save

    def crash_half_way(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(f.tell() // 2)  # half a file is on disk when the "power goes out"
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash_half_way)
    with torch.no_grad():
        model.weight.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(_state(model, 2), str(tmp_path), model_name="model-best.pth.tar")
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(_state(model, 2), str(tmp_path))
    assert (tmp_path / "model-best.pth.tar").read_bytes() == old_bytes
    assert (tmp_path / "checkpoint").read_text() == "model.pth.tar-1\n"
    assert sorted(os.listdir(tmp_path)) == [  # no temp files
        "checkpoint",
        "model-best.pth.tar",
        "model.pth.tar-1",
    ]


def test_remove_stale_temp_files_takes_only_atomic_write_leftovers(tmp_path: Path) -> None:
    left_by_kill = [".model.pth.tar-2.3f9a0c1e.tmp", ".checkpoint.k2_x9qzv.tmp"]  # new, mkstemp
    kept = ["model.pth.tar-1", ".hidden", "notes.tmp", ".model.pth.tar-2.tmp"]
    for name in left_by_kill + kept:
        (tmp_path / name).write_text("x")
    assert remove_stale_temp_files(tmp_path) == sorted(left_by_kill)
    assert sorted(os.listdir(tmp_path)) == sorted(kept)


def test_pointer_only_ever_names_epoch_files(tmp_path: Path) -> None:
    # Upstream pointed it at model-best.pth.tar when that was saved by name; a resume from there
    # never wrote that epoch's own file.
    model = nn.Linear(3, 2)
    save_checkpoint(_state(model, 1), str(tmp_path), model_name="model-best.pth.tar")
    assert not (tmp_path / "checkpoint").exists()
    save_checkpoint(_state(model, 1), str(tmp_path))
    save_checkpoint(_state(model, 2), str(tmp_path), model_name="model-best.pth.tar")
    assert (tmp_path / "checkpoint").read_text() == "model.pth.tar-1\n"


def test_resume_restores_model_optimizer_scheduler(tmp_path: Path) -> None:
    model = nn.Linear(3, 2)
    optim = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(optim, step_size=1, gamma=0.5)
    model(torch.randn(4, 3)).sum().backward()
    optim.step()
    sched.step()
    save_checkpoint(
        {
            "state_dict": model.state_dict(),
            "epoch": 3,
            "optimizer": optim.state_dict(),
            "scheduler": sched.state_dict(),
        },
        str(tmp_path),
    )

    model2 = nn.Linear(3, 2)
    optim2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    sched2 = torch.optim.lr_scheduler.StepLR(optim2, step_size=1, gamma=0.5)
    assert resume_from_checkpoint(str(tmp_path), model2, optim2, sched2) == 3
    assert torch.equal(model.weight, model2.weight)
    assert optim2.param_groups[0]["lr"] == 0.05 and sched2.last_epoch == 1
    assert torch.equal(
        optim.state[model.weight]["momentum_buffer"], optim2.state[model2.weight]["momentum_buffer"]
    )


def test_resume_without_pointer_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="--resume"):
        resume_from_checkpoint(str(tmp_path), nn.Linear(1, 1))


def test_rng_state_round_trip_through_a_checkpoint(tmp_path: Path) -> None:
    import random

    state = torchtools.capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    save_checkpoint({"state_dict": {}, "epoch": 1, "rng_state": state}, str(tmp_path))
    loaded = load_checkpoint(str(tmp_path / "model.pth.tar-1"))  # weights_only path
    torchtools.restore_rng_state(loaded["rng_state"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_corrupt_checkpoint_gives_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "model.pth.tar-1"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="truncated or not a PyTorch checkpoint"):
        load_checkpoint(str(path))
    good = tmp_path / "model.pth.tar-2"
    save_checkpoint(_state(nn.Linear(3, 2), 2), str(tmp_path))
    good.write_bytes(good.read_bytes()[:300])  # cut short, as by a copy that died
    with pytest.raises(RuntimeError, match="model.pth.tar-2.*truncated"):
        load_checkpoint(str(good))
    with pytest.raises(FileNotFoundError, match="model.pth.tar-9"):
        load_checkpoint(str(tmp_path / "model.pth.tar-9"))


class _RunsCode:
    def __reduce__(self):
        marker = _RunsCode.marker
        return (os.system, (f"touch {marker}",))


def test_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    _RunsCode.marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth.tar"
    torch.save({"state_dict": {}, "epoch": 1, "payload": _RunsCode()}, path)
    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system|refused"):
        load_checkpoint(str(path))
    assert not _RunsCode.marker.exists()


def test_upstream_checkpoint_with_scheduler_object_loads(tmp_path: Path, monkeypatch) -> None:
    """Upstream's warmup schedulers pickle the wrapped scheduler (and its optimizer) whole, and
    its val_result may be a numpy float: weights_only refuses that, the restricted loader not."""
    module = type(sys)("dassl.optim.upstream_lr_scheduler")

    class ConstantWarmupScheduler(torch.optim.lr_scheduler.LRScheduler):
        def __init__(self, optimizer, successor, warmup_epoch, cons_lr, last_epoch=-1):
            self.successor = successor
            self.warmup_epoch = warmup_epoch
            self.cons_lr = cons_lr
            super().__init__(optimizer, last_epoch)

        def get_lr(self):
            return [self.cons_lr for _ in self.base_lrs]

    ConstantWarmupScheduler.__module__ = module.__name__
    module.ConstantWarmupScheduler = ConstantWarmupScheduler
    monkeypatch.setitem(sys.modules, module.__name__, module)

    model = nn.Linear(3, 2)
    optim = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    optim.step()
    sched = ConstantWarmupScheduler(
        optim, torch.optim.lr_scheduler.CosineAnnealingLR(optim, 10), 1, 1e-5
    )
    path = tmp_path / "model-best.pth.tar"
    torch.save(
        {
            "state_dict": model.state_dict(),
            "epoch": 5,
            "optimizer": optim.state_dict(),
            "scheduler": sched.state_dict(),
            "val_result": np.float64(61.5),
        },
        path,
    )
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)

    checkpoint = load_checkpoint(str(path))
    assert checkpoint["epoch"] == 5 and checkpoint["val_result"] == 61.5
    assert torch.equal(checkpoint["state_dict"]["weight"], model.weight)
    assert checkpoint["scheduler"]["successor"].T_max == 10


def test_load_pretrained_weights_copies_matching_layers(tmp_path: Path, capsys) -> None:
    source = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 5))
    torch.save(
        {"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}},
        tmp_path / "w.pth",
    )
    target = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    load_pretrained_weights(target, str(tmp_path / "w.pth"))
    assert torch.equal(target[0].weight, source[0].weight)
    assert not torch.equal(target[1].bias[:2], source[1].bias[:2])
    assert "1.weight" in capsys.readouterr().out  # reported as discarded (shape mismatch)

    with pytest.raises(ValueError, match="INIT_WEIGHTS"):
        load_pretrained_weights(nn.Conv2d(1, 1, 1), str(tmp_path / "w.pth"))


def test_open_layers_and_count_params() -> None:
    model = nn.Sequential()
    model.add_module("backbone", nn.Linear(3, 4))
    model.add_module("head", nn.Linear(4, 2))
    assert count_num_param(model) == 3 * 4 + 4 + 4 * 2 + 2
    open_specified_layers(model, "head")
    assert [p.requires_grad for p in model.parameters()] == [False, False, True, True]
    assert not model.backbone.training and model.head.training
    with pytest.raises(AttributeError, match="choose among"):
        open_specified_layers(model, "classifier")
    open_all_layers(model)
    assert all(p.requires_grad for p in model.parameters()) and model.backbone.training


RNG_AFTER_IMPORT = """
import importlib, random, sys
from dassl.utils.tools import import_keeping_rng
random.seed(3)
state = random.getstate()
{importer}("sklearn.linear_model")
print(random.getstate() == state)
"""


@pytest.mark.parametrize(
    ("importer", "kept"), [("importlib.import_module", False), ("import_keeping_rng", True)]
)
def test_a_module_imported_during_a_run_leaves_the_rng_where_it_was(importer, kept):
    """scikit-learn's first import draws from `random` (the plain import shows it); imported
    mid-run, it would make a resumed run differ from an unbroken one."""
    done = subprocess.run(
        [sys.executable, "-c", RNG_AFTER_IMPORT.format(importer=importer)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.stdout.strip() == str(kept), done.stderr
