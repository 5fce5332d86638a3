"""Per-epoch learning rates of every schedule x warmup combination, checked against values
derived by hand from upstream Dassl's definitions, and exact resumption from a state dict."""

import math

import pytest
import torch
from torch import nn

from dassl.optim import (
    ConstantWarmupScheduler,
    LinearWarmupScheduler,
    build_lr_scheduler,
    build_optimizer,
)
from tests.support.tiny_run import full_cfg

BASE_LR = 0.1
MAX_EPOCH = 8
WARMUP = 3
CONS_LR = 0.004
MIN_LR = 0.002
STEP = 2  # single_step stepsize
MILESTONES = [2, 5]
GAMMA = 0.5


def make_cfg(schedule: str, warmup: str | None = None, recount: bool = True):
    cfg = full_cfg()
    o = cfg.OPTIM
    o.NAME = "sgd"
    o.LR = BASE_LR
    o.MAX_EPOCH = MAX_EPOCH
    o.LR_SCHEDULER = schedule
    o.GAMMA = GAMMA
    o.STEPSIZE = (STEP,) if schedule == "single_step" else tuple(MILESTONES)
    if warmup is not None:
        o.WARMUP_EPOCH = WARMUP
        o.WARMUP_TYPE = warmup
        o.WARMUP_CONS_LR = CONS_LR
        o.WARMUP_MIN_LR = MIN_LR
        o.WARMUP_RECOUNT = recount
    return cfg


def build(cfg):
    model = nn.Linear(3, 2)
    optimizer = build_optimizer(model, cfg.OPTIM)
    return model, optimizer, build_lr_scheduler(optimizer, cfg.OPTIM)


def run_epochs(optimizer, scheduler, n: int) -> list[float]:
    """The lr each of the next n epochs trains with; the trainer steps the scheduler once at
    the end of every epoch, after the optimizer has stepped."""
    lrs = []
    for _ in range(n):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def main_lr(schedule: str, t: int) -> float:
    """Closed form of the main schedule t epochs after it starts at BASE_LR."""
    if schedule == "single_step":
        return BASE_LR * GAMMA ** (t // STEP)
    if schedule == "multi_step":
        return BASE_LR * GAMMA ** sum(m <= t for m in MILESTONES)
    return BASE_LR * (1 + math.cos(math.pi * t / MAX_EPOCH)) / 2


def main_lr_no_recount(schedule: str, e: int) -> float:
    """WARMUP_RECOUNT False: the main schedule's counter was set to WARMUP, it restarts from
    BASE_LR at epoch WARMUP and then applies its chained per-epoch factors for epochs
    WARMUP+1..e (torch's recursive form), not its closed form."""
    if schedule == "single_step":
        decays = sum(k % STEP == 0 for k in range(WARMUP + 1, e + 1))
        return BASE_LR * GAMMA**decays
    if schedule == "multi_step":
        return BASE_LR * GAMMA ** sum(WARMUP < m <= e for m in MILESTONES)
    ratio = (1 + math.cos(math.pi * e / MAX_EPOCH)) / (1 + math.cos(math.pi * WARMUP / MAX_EPOCH))
    return BASE_LR * ratio


def expected(schedule: str, warmup: str | None, recount: bool) -> list[float]:
    lrs = []
    for e in range(MAX_EPOCH):
        if warmup is None:
            lrs.append(main_lr(schedule, e))
        elif e < WARMUP and warmup == "constant":
            lrs.append(CONS_LR)
        elif e < WARMUP:
            lrs.append(MIN_LR if e == 0 else BASE_LR * e / WARMUP)
        elif recount:
            lrs.append(main_lr(schedule, e - WARMUP))
        else:
            lrs.append(main_lr_no_recount(schedule, e))
    return lrs


COMBOS = [
    (schedule, warmup, recount)
    for schedule in ("single_step", "multi_step", "cosine")
    for warmup, recount in ((None, True), ("constant", True), ("linear", True), ("linear", False))
] + [("cosine", "constant", False)]


@pytest.mark.parametrize("schedule,warmup,recount", COMBOS)
def test_lr_every_epoch(schedule, warmup, recount):
    _, optimizer, scheduler = build(make_cfg(schedule, warmup, recount))
    got = run_epochs(optimizer, scheduler, MAX_EPOCH)
    assert got == pytest.approx(expected(schedule, warmup, recount), rel=1e-12, abs=1e-15)


def test_spot_values_by_hand():
    """A few numbers written out, in case the helper formulas above share a mistake."""
    _, opt, sched = build(make_cfg("cosine", "linear", recount=True))
    lrs = run_epochs(opt, sched, MAX_EPOCH)
    # min_lr, 0.1*1/3, 0.1*2/3, then cosine from 0.1 over T=8:
    # epoch 3 (t=0) -> 0.1, epoch 5 (t=2) -> 0.1*(1+cos(pi/4))/2
    assert lrs[:4] == pytest.approx([0.002, 0.1 / 3, 0.2 / 3, 0.1])
    assert lrs[5] == pytest.approx(0.05 * (1 + math.sqrt(0.5)))

    _, opt, sched = build(make_cfg("single_step", "constant", recount=True))
    assert run_epochs(opt, sched, MAX_EPOCH) == pytest.approx(
        [0.004, 0.004, 0.004, 0.1, 0.1, 0.05, 0.05, 0.025]
    )


def test_warmup_types():
    assert isinstance(build(make_cfg("cosine", "constant"))[2], ConstantWarmupScheduler)
    assert isinstance(build(make_cfg("cosine", "linear"))[2], LinearWarmupScheduler)
    assert isinstance(build(make_cfg("cosine"))[2], torch.optim.lr_scheduler.CosineAnnealingLR)


def test_default_single_step_never_decays_within_the_run():
    """STEPSIZE (-1,) (the default) means step size MAX_EPOCH."""
    cfg = make_cfg("single_step")
    cfg.OPTIM.STEPSIZE = (-1,)
    _, opt, sched = build(cfg)
    assert run_epochs(opt, sched, MAX_EPOCH) == [BASE_LR] * MAX_EPOCH


def test_staged_groups_follow_their_own_base_lr():
    """Each param group is scheduled from its own initial lr (staged lr: LR * BASE_LR_MULT)."""
    cfg = make_cfg("cosine")
    cfg.OPTIM.STAGED_LR = True
    cfg.OPTIM.NEW_LAYERS = ("head",)
    cfg.OPTIM.BASE_LR_MULT = 0.1
    model = nn.Sequential()
    model.add_module("body", nn.Linear(3, 3))
    model.add_module("head", nn.Linear(3, 2))
    opt = build_optimizer(model, cfg.OPTIM)
    sched = build_lr_scheduler(opt, cfg.OPTIM)
    for _ in range(2):
        opt.step()
        sched.step()
    factor = (1 + math.cos(math.pi * 2 / MAX_EPOCH)) / 2
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * factor)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.1 * factor)


def _is_plain(obj) -> bool:
    if isinstance(obj, (bool, int, float, str, type(None), torch.Tensor)):
        return True
    if isinstance(obj, (list, tuple)):
        return all(_is_plain(x) for x in obj)
    if isinstance(obj, dict):
        return all(_is_plain(k) and _is_plain(v) for k, v in obj.items())
    return False


@pytest.mark.parametrize("schedule,warmup,recount", COMBOS)
def test_resume_mid_way_continues_identically(tmp_path, schedule, warmup, recount):
    cfg = make_cfg(schedule, warmup, recount)
    _, opt, sched = build(cfg)
    uninterrupted = run_epochs(opt, sched, MAX_EPOCH)

    for stop in (WARMUP - 1, WARMUP, WARMUP + 2):
        _, opt, sched = build(cfg)
        first = run_epochs(opt, sched, stop)
        state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
        assert _is_plain(state["scheduler"])
        path = tmp_path / f"ckpt-{stop}.pth"
        torch.save(state, path)

        # A fresh process would rebuild everything from cfg, then load optimizer, scheduler.
        loaded = torch.load(path, weights_only=True)
        _, opt2, sched2 = build(cfg)
        opt2.load_state_dict(loaded["optimizer"])
        sched2.load_state_dict(loaded["scheduler"])
        rest = run_epochs(opt2, sched2, MAX_EPOCH - stop)
        assert first + rest == uninterrupted


def test_warmup_loads_upstream_style_state_with_scheduler_object():
    """Upstream Dassl's warmup state dict held the successor scheduler object itself."""
    cfg = make_cfg("cosine", "linear")
    _, opt, sched = build(cfg)
    run_epochs(opt, sched, WARMUP + 1)
    upstream_state = sched.state_dict()
    upstream_state["successor"] = sched.successor

    _, opt2, sched2 = build(cfg)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(upstream_state)
    assert run_epochs(opt2, sched2, 2) == run_epochs(opt, sched, 2)


def test_unknown_names_fail_clearly():
    cfg = make_cfg("cosine")
    cfg.OPTIM.LR_SCHEDULER = "exponential"
    opt = build_optimizer(nn.Linear(2, 2), cfg.OPTIM)
    with pytest.raises(ValueError, match=r"exponential.*single_step.*multi_step.*cosine"):
        build_lr_scheduler(opt, cfg.OPTIM)

    cfg = make_cfg("cosine", "linear")
    cfg.OPTIM.WARMUP_TYPE = "exp"
    with pytest.raises(ValueError, match=r"WARMUP_TYPE.*exp.*constant.*linear"):
        build_lr_scheduler(opt, cfg.OPTIM)

    cfg = make_cfg("multi_step")
    cfg.OPTIM.STEPSIZE = 3
    with pytest.raises(TypeError, match="multi_step"):
        build_lr_scheduler(opt, cfg.OPTIM)
