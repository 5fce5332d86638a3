"""Every name that published Dassl plugins import from ``dassl`` exists here, and the ones added
for them compute what upstream's do (benchmarks/upstream_dassl_check.py compares against an
upstream checkout itself)."""

import importlib

import pytest
import torch
from torch import nn

from dassl.config import clean_cfg, get_cfg_default
from dassl.metrics import compute_distance_matrix
from dassl.optim import build_optimizer
from dassl.optim.radam import RAdam
from dassl.utils import init_network_weights, set_bn_to_eval

# What the trainers and train.py of CoOp/CoCoOp, KgCoOp, ProGrad, MaPLe, PromptSRC, DePT, CLAP and
# TaskRes import from dassl (read off their repositories), module -> names.
PLUGIN_IMPORTS = {
    "dassl.config": ["get_cfg_default", "clean_cfg"],
    "dassl.data": ["DataManager", "DatasetWrapper"],
    "dassl.data.datasets": ["DATASET_REGISTRY", "Datum", "DatasetBase"],
    "dassl.data.transforms": ["build_transform"],
    "dassl.data.transforms.transforms": ["build_transform"],
    "dassl.engine": ["TRAINER_REGISTRY", "TrainerX", "SimpleTrainer", "build_trainer"],
    "dassl.engine.trainer": ["TrainerX", "MetricMeter", "AverageMeter", "SummaryWriter"],
    "dassl.evaluation": ["build_evaluator"],
    "dassl.metrics": ["compute_accuracy"],
    "dassl.optim": ["build_optimizer", "build_lr_scheduler"],
    "dassl.optim.radam": ["RAdam"],
    "dassl.utils": [
        "AverageMeter",
        "MetricMeter",
        "check_isfile",
        "collect_env_info",
        "count_num_param",
        "listdir_nohidden",
        "load_checkpoint",
        "load_pretrained_weights",
        "mkdir_if_missing",
        "read_json",
        "set_random_seed",
        "setup_logger",
        "write_json",
    ],
    "dassl.utils.tools": ["mkdir_if_missing"],
}


@pytest.mark.parametrize("module", sorted(PLUGIN_IMPORTS))
def test_plugin_imports_exist(module: str) -> None:
    loaded = importlib.import_module(module)
    missing = [name for name in PLUGIN_IMPORTS[module] if not hasattr(loaded, name)]
    assert not missing


def test_clean_cfg_keeps_only_name_and_the_trainers_node() -> None:
    cfg = get_cfg_default()
    assert "MCD" in cfg.TRAINER
    clean_cfg(cfg, "mcd")
    assert sorted(cfg.TRAINER.keys()) == ["MCD", "NAME"]


def _run(optimizer_factory, steps: int = 30) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    param = nn.Parameter(torch.randn(8, 4, generator=generator))
    optim = optimizer_factory([param])
    for _ in range(steps):
        param.grad = torch.randn(8, 4, generator=generator)
        optim.step()
    return param.detach()


def test_radam_matches_torchs_rectified_adam_with_decoupled_decay() -> None:
    ours = _run(lambda p: RAdam(p, lr=1e-2, weight_decay=1e-3))
    torchs = _run(
        lambda p: torch.optim.RAdam(p, lr=1e-2, weight_decay=1e-3, decoupled_weight_decay=True)
    )
    torch.testing.assert_close(ours, torchs, rtol=1e-6, atol=1e-7)


def test_radam_without_sgd_fallback_waits_for_a_tractable_variance() -> None:
    start = _run(lambda p: RAdam(p), steps=0)
    # rho_t stays under 5 for the first 5 steps at beta2 = 0.999: no update, no decay.
    frozen = _run(lambda p: RAdam(p, weight_decay=0.1, degenerated_to_sgd=False), steps=5)
    moved = _run(lambda p: RAdam(p, weight_decay=0.1, degenerated_to_sgd=False), steps=6)
    assert torch.equal(frozen, start)
    assert not torch.equal(moved, start)


def test_build_optimizer_radam_is_upstreams() -> None:
    cfg = get_cfg_default().OPTIM
    cfg.NAME = "radam"
    assert isinstance(build_optimizer(nn.Linear(2, 2), cfg), RAdam)


def test_distance_matrices() -> None:
    a, b = torch.randn(5, 3), torch.randn(4, 3)
    naive = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    torch.testing.assert_close(compute_distance_matrix(a, b), naive, rtol=1e-5, atol=1e-5)
    cosine = 1 - torch.nn.functional.cosine_similarity(a[:, None, :], b[None, :, :], dim=-1)
    torch.testing.assert_close(compute_distance_matrix(a, b, "cosine"), cosine)
    with pytest.raises(ValueError, match="Unknown distance metric"):
        compute_distance_matrix(a, b, "manhattan")


def test_init_network_weights_and_set_bn_to_eval() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))
    nn.init.constant_(model[1].weight, 5.0)
    init_network_weights(model, "normal", gain=0.02)
    assert model[0].weight.std().item() < 0.05 and torch.all(model[0].bias == 0)
    assert torch.all(model[1].weight == 1) and torch.all(model[1].bias == 0)
    model.train()
    model.apply(set_bn_to_eval)
    assert not model[1].training and model[0].training
