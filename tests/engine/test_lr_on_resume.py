"""On resume the current config's learning-rate settings apply (the rule documented in
``restore_from_checkpoint``); with unchanged settings a resume restores the checkpoint as is."""

import copy

import pytest
import torch
import torch.nn as nn

from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils.torchtools import restore_from_checkpoint
from tests.support.tiny_run import full_cfg

from .helpers import assert_same_checkpoint

SCHEDULES = {
    "cosine": {},
    "linear warmup": {"WARMUP_EPOCH": 2, "WARMUP_TYPE": "linear", "WARMUP_MIN_LR": 1e-4},
    "constant warmup": {
        "LR_SCHEDULER": "single_step",
        "STEPSIZE": (5,),
        "WARMUP_EPOCH": 4,
        "WARMUP_TYPE": "constant",
        "WARMUP_CONS_LR": 1e-3,
    },
    "staged lr": {"STAGED_LR": True, "NEW_LAYERS": ["1"], "BASE_LR_MULT": 0.1},
}


def _optim_cfg(**keys):
    cfg = full_cfg().OPTIM
    cfg.NAME, cfg.LR, cfg.MOMENTUM, cfg.MAX_EPOCH = "sgd", 0.1, 0.9, 8
    cfg.merge_from_list([item for kv in keys.items() for item in kv])
    return cfg


def _train(epochs: int, optim_cfg):
    """A model, optimizer and scheduler after ``epochs`` one-step epochs (same data each time)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    optim = build_optimizer(model, optim_cfg)
    sched = build_lr_scheduler(optim, optim_cfg)
    for _ in range(epochs):
        model(torch.randn(4, 3)).pow(2).sum().backward()
        optim.step()
        optim.zero_grad()
        sched.step()
    return model, optim, sched


def _checkpoint(model, optim, sched, epoch: int) -> dict:
    return copy.deepcopy(
        {
            "state_dict": model.state_dict(),
            "epoch": epoch,
            "optimizer": optim.state_dict(),
            "scheduler": sched.state_dict(),
        }
    )


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_unchanged_lr_settings_restore_the_checkpoint_as_is(schedule):
    cfg = _optim_cfg(**SCHEDULES[schedule])
    checkpoint = _checkpoint(*_train(3, cfg), epoch=3)
    model, optim, sched = _train(0, cfg)
    restore_from_checkpoint(copy.deepcopy(checkpoint), model, optim, sched)
    assert_same_checkpoint(optim.state_dict(), checkpoint["optimizer"])
    assert_same_checkpoint(sched.state_dict(), checkpoint["scheduler"])


@pytest.mark.parametrize(
    "schedule, change",
    [
        ("cosine", {"LR": 0.01}),
        ("linear warmup", {"LR": 0.01}),
        ("constant warmup", {"LR": 0.01}),
        ("constant warmup", {"WARMUP_CONS_LR": 1e-4}),  # resumed inside the warmup
        ("staged lr", {"LR": 0.01}),
    ],
)
def test_new_lr_settings_apply_from_the_resumed_epoch(schedule, change, capsys):
    checkpoint = _checkpoint(*_train(3, _optim_cfg(**SCHEDULES[schedule])), epoch=3)
    new_cfg = _optim_cfg(**{**SCHEDULES[schedule], **change})
    model, optim, sched = _train(0, new_cfg)
    restore_from_checkpoint(copy.deepcopy(checkpoint), model, optim, sched)
    assert "learning-rate settings differ from the checkpoint's" in capsys.readouterr().out

    # The schedule is the one a run with the new settings from the start would be at...
    _, new_optim, new_sched = _train(3, new_cfg)
    assert_same_checkpoint(sched.state_dict(), new_sched.state_dict())
    assert [g["lr"] for g in optim.param_groups] == [g["lr"] for g in new_optim.param_groups]
    # ...and goes on as that one does, while momentum is the checkpoint's.
    assert_same_checkpoint(optim.state_dict()["state"], checkpoint["optimizer"]["state"])
    sched.step()
    new_sched.step()
    assert [g["lr"] for g in optim.param_groups] == [g["lr"] for g in new_optim.param_groups]
