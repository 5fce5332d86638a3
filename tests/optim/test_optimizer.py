"""build_optimizer: names, OPTIM.* hyperparameters, param groups and staged learning rates."""

import math

import pytest
import torch
from torch import nn

from dassl.optim import build_optimizer
from dassl.optim.radam import RAdam
from tests.support.tiny_run import full_cfg


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(4, 3)
        self.head = nn.Linear(3, 2)


def optim_cfg(name: str, **overrides):
    cfg = full_cfg()
    cfg.OPTIM.NAME = name
    cfg.OPTIM.LR = 0.02
    cfg.OPTIM.WEIGHT_DECAY = 0.001
    for key, value in overrides.items():
        setattr(cfg.OPTIM, key, value)
    return cfg.OPTIM


@pytest.mark.parametrize(
    "name,cls,extra",
    [
        ("adam", torch.optim.Adam, {"amsgrad": False, "betas": (0.8, 0.95)}),
        ("amsgrad", torch.optim.Adam, {"amsgrad": True, "betas": (0.8, 0.95)}),
        ("adamw", torch.optim.AdamW, {"betas": (0.8, 0.95)}),
        ("radam", RAdam, {"betas": (0.8, 0.95)}),  # upstream's own, not torch's
        ("sgd", torch.optim.SGD, {"momentum": 0.7, "dampening": 0.1, "nesterov": False}),
        ("rmsprop", torch.optim.RMSprop, {"momentum": 0.7, "alpha": 0.9}),
    ],
)
def test_each_name_maps_cfg_keys(name, cls, extra):
    cfg = optim_cfg(
        name,
        ADAM_BETA1=0.8,
        ADAM_BETA2=0.95,
        MOMENTUM=0.7,
        SGD_DAMPNING=0.1,
        RMSPROP_ALPHA=0.9,
    )
    opt = build_optimizer(Net(), cfg)
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert group["lr"] == 0.02
    assert group["weight_decay"] == 0.001
    for key, value in extra.items():
        assert group[key] == value, key
    assert len(group["params"]) == 4


def test_sgd_nesterov_flag():
    opt = build_optimizer(Net(), optim_cfg("sgd", SGD_NESTEROV=True, SGD_DAMPNING=0))
    assert opt.param_groups[0]["nesterov"] is True


def test_radam_matches_upstream_update_rule():
    """Upstream's RAdam (Liu et al.): weight decay p *= 1 - lr * wd, decoupled from the
    moments; plain bias-corrected momentum while rho_t < 5, the rectified Adam step after.
    With beta2 = 0.9 the rectified step starts at t = 6. The gradient is held at 1, so the
    moments are m_t = 1 - b1^t and v_t = 1 - b2^t whatever the weights are. Upstream computes
    in fp32 whatever the parameter's dtype, hence the tolerance."""
    lr, wd, b1, b2, eps = 0.02, 0.5, 0.9, 0.9, 1e-8
    p = nn.Parameter(torch.tensor([2.0]))
    opt = build_optimizer([p], optim_cfg("radam", LR=lr, WEIGHT_DECAY=wd, ADAM_BETA2=b2))

    expected = 2.0
    rho_inf = 2 / (1 - b2) - 1
    for t in range(1, 8):
        p.grad = torch.ones_like(p)
        opt.step()
        m, v = 1 - b1**t, 1 - b2**t
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
        expected *= 1 - lr * wd
        if rho >= 5:
            r = (rho - 4) / (rho_inf - 4) * (rho - 2) / rho * rho_inf / (rho_inf - 2)
            expected -= lr * math.sqrt(v * r) / (1 - b1**t) * m / (math.sqrt(v) + eps)
        else:
            expected -= lr * m / (1 - b1**t)
        assert p.item() == pytest.approx(expected, rel=1e-6), t


def test_params_iterable_and_explicit_param_groups():
    net = Net()
    opt = build_optimizer(net.head.parameters(), optim_cfg("sgd"))
    assert len(opt.param_groups[0]["params"]) == 2

    groups = [{"params": net.backbone.parameters(), "lr": 0.5}, {"params": net.head.parameters()}]
    opt = build_optimizer(net, optim_cfg("sgd"), param_groups=groups)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.02]


def test_explicit_param_groups_override_staged_lr_with_warning():
    net = Net()
    groups = [{"params": net.parameters()}]
    cfg = optim_cfg("sgd", STAGED_LR=True, NEW_LAYERS=("head",))
    with pytest.warns(UserWarning, match="STAGED_LR is ignored"):
        opt = build_optimizer(net, cfg, param_groups=groups)
    assert len(opt.param_groups) == 1


def test_staged_lr_splits_new_layers_from_base():
    net = Net()
    cfg = optim_cfg("sgd", STAGED_LR=True, NEW_LAYERS=("head",), BASE_LR_MULT=0.25)
    opt = build_optimizer(net, cfg)
    base, new = opt.param_groups
    assert base["lr"] == pytest.approx(0.005)
    assert new["lr"] == 0.02
    assert {id(p) for p in base["params"]} == {id(p) for p in net.backbone.parameters()}
    assert {id(p) for p in new["params"]} == {id(p) for p in net.head.parameters()}

    # A single string works as a one-item list, as upstream.
    opt = build_optimizer(Net(), optim_cfg("sgd", STAGED_LR=True, NEW_LAYERS="head"))
    assert len(opt.param_groups[1]["params"]) == 2


def test_staged_lr_errors():
    with pytest.raises(ValueError, match=r"classifier.*children are \['backbone', 'head'\]"):
        build_optimizer(Net(), optim_cfg("sgd", STAGED_LR=True, NEW_LAYERS=("classifier",)))
    with pytest.raises(TypeError, match="needs an nn.Module"):
        build_optimizer(Net().parameters(), optim_cfg("sgd", STAGED_LR=True))


def test_unknown_optimizer_lists_choices():
    with pytest.raises(ValueError, match=r"lamb.*adam.*amsgrad.*sgd.*rmsprop.*radam.*adamw"):
        build_optimizer(Net(), optim_cfg("lamb"))
