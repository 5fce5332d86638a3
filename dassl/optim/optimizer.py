"""build_optimizer: upstream Dassl's OPTIM.* keys mapped onto torch.optim classes."""

import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from yacs.config import CfgNode

from .radam import RAdam

AVAI_OPTIMS = ["adam", "amsgrad", "sgd", "rmsprop", "radam", "adamw"]


def _staged_param_groups(model: nn.Module, optim_cfg: CfgNode) -> list[dict[str, Any]]:
    """Children named in NEW_LAYERS train at OPTIM.LR, every other child at LR * BASE_LR_MULT
    (fine-tuning a pretrained body under a freshly initialised head)."""
    if isinstance(model, nn.DataParallel):
        model = model.module
    new_layers = optim_cfg.NEW_LAYERS
    if isinstance(new_layers, str):
        new_layers = [new_layers]
    children = [name for name, _ in model.named_children()]
    if not new_layers:
        warnings.warn(
            "OPTIM.STAGED_LR is True but OPTIM.NEW_LAYERS is empty, so every layer gets "
            "LR * BASE_LR_MULT; name the new layers, e.g. OPTIM.NEW_LAYERS \"['head']\"",
            stacklevel=3,
        )
    unknown = [name for name in new_layers if name not in children]
    if unknown:
        raise ValueError(
            f"OPTIM.NEW_LAYERS names {unknown}, which are not children of "
            f"{type(model).__name__}; its children are {children}. Fix OPTIM.NEW_LAYERS."
        )

    base_params, new_params = [], []
    for name, module in model.named_children():
        target = new_params if name in new_layers else base_params
        target.extend(module.parameters())
    return [
        {"params": base_params, "lr": optim_cfg.LR * optim_cfg.BASE_LR_MULT},
        {"params": new_params},
    ]


def build_optimizer(
    model_or_params: nn.Module | Iterable[Any],
    optim_cfg: CfgNode,
    param_groups: list[dict[str, Any]] | None = None,
) -> torch.optim.Optimizer:
    """Build the optimizer named by ``optim_cfg.NAME`` (cfg.OPTIM in a trainer).

    ``model_or_params`` is a module, an iterable of parameters or of param-group dicts.
    ``param_groups``, when given, is used as is (and STAGED_LR is ignored, as upstream).
    """
    name = optim_cfg.NAME
    if name not in AVAI_OPTIMS:
        raise ValueError(f'Unsupported OPTIM.NAME "{name}"; choose one of {AVAI_OPTIMS}')

    if param_groups is not None and optim_cfg.STAGED_LR:
        warnings.warn(
            "OPTIM.STAGED_LR is ignored because explicit param_groups were given; "
            "set the per-group lr in param_groups instead",
            stacklevel=2,
        )

    if param_groups is None:
        if optim_cfg.STAGED_LR:
            if not isinstance(model_or_params, nn.Module):
                raise TypeError(
                    "OPTIM.STAGED_LR needs an nn.Module (its children are split into base and "
                    f"new layers), got {type(model_or_params).__name__}"
                )
            param_groups = _staged_param_groups(model_or_params, optim_cfg)
        elif isinstance(model_or_params, nn.Module):
            param_groups = list(model_or_params.parameters())
        else:
            param_groups = list(model_or_params)

    optimizer_cls, extra = _optimizer_settings(optim_cfg)[name]
    weight_decay = optim_cfg.WEIGHT_DECAY
    return optimizer_cls(param_groups, lr=optim_cfg.LR, weight_decay=weight_decay, **extra)


def _optimizer_settings(optim_cfg: CfgNode) -> dict[str, tuple[type, dict[str, Any]]]:
    """OPTIM.NAME -> (torch.optim class, its arguments besides lr and weight_decay)."""
    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)
    momentum = optim_cfg.MOMENTUM
    return {
        "adam": (torch.optim.Adam, {"betas": betas, "amsgrad": False}),
        "amsgrad": (torch.optim.Adam, {"betas": betas, "amsgrad": True}),
        "sgd": (
            torch.optim.SGD,
            {
                "momentum": momentum,
                "dampening": optim_cfg.SGD_DAMPNING,
                "nesterov": optim_cfg.SGD_NESTEROV,
            },
        ),
        "rmsprop": (torch.optim.RMSprop, {"momentum": momentum, "alpha": optim_cfg.RMSPROP_ALPHA}),
        # Upstream's own RAdam, whose rectification threshold and arithmetic torch's lacks.
        "radam": (RAdam, {"betas": betas}),
        "adamw": (torch.optim.AdamW, {"betas": betas}),
    }
