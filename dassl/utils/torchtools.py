"""Checkpoint I/O and small model helpers, with upstream Dassl's names and file layout.

Layout (a contract with upstream): ``<save_dir>/model.pth.tar-<epoch>`` and ``model-best.pth.tar``,
each a ``torch.save``d dict with ``state_dict``, ``epoch``, ``optimizer``, ``scheduler``,
``val_result``, plus a text file ``checkpoint`` naming the latest epoch file (never the best
file: resuming from it would skip the epoch file of that epoch). Every file is written
atomically, so a crash never leaves a truncated checkpoint and the pointer only names complete
files.
Loading uses ``torch.load(weights_only=True)``; files that need more (upstream's warmup schedulers
pickle a whole scheduler object) go through a restricted unpickler that admits only optimizer and
scheduler classes and plain containers, never arbitrary code.
"""

import codecs
import copy
import importlib
import os
import pickle
import random
import re
import warnings
import zipfile
from collections import Counter, OrderedDict, defaultdict
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .safe_pickle import RestrictedUnpickler
from .tools import atomic_write, mkdir_if_missing

POINTER_FILE = "checkpoint"
BEST_FILE = "model-best.pth.tar"


_EPOCH_FILE = re.compile(r"^model\.pth\.tar-(\d+)$")


def checkpoint_filename(epoch: int) -> str:
    return f"model.pth.tar-{epoch}"


def checkpoint_epoch(filename: str) -> int | None:
    """N for ``model.pth.tar-N``, None for any other file name."""
    match = _EPOCH_FILE.match(filename)
    return int(match.group(1)) if match else None


def _plain(value: Any) -> Any:
    """Numpy scalars/arrays -> python floats/lists, so the file loads with weights_only=True."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        out = value.copy()
        for k, v in value.items():
            out[k] = _plain(v)
        return out
    if type(value) in (list, tuple):
        return type(value)(_plain(v) for v in value)
    return value


def _atomic_torch_save(obj: Any, fpath: str) -> None:
    with atomic_write(fpath, "wb") as f:
        torch.save(obj, f)


def _write_pointer(save_dir: str, filename: str) -> None:
    with atomic_write(os.path.join(save_dir, POINTER_FILE), "w") as f:
        f.write(f"{filename}\n")


def save_checkpoint(
    state: dict[str, Any],
    save_dir: str,
    is_best: bool = False,
    remove_module_from_keys: bool = True,
    model_name: str = "",
) -> str:
    """Write ``state`` to ``save_dir``/``model_name`` (default ``model.pth.tar-<epoch>``).

    The pointer file is updated only after the checkpoint is complete on disk, and only for epoch
    files (upstream also points it at ``model-best.pth.tar`` when that is saved by name, so a
    kill right after a best save made the re-run skip that epoch's file); ``is_best`` also
    writes ``model-best.pth.tar``. Returns the path written.
    """
    mkdir_if_missing(save_dir)
    state = dict(state)
    if remove_module_from_keys:
        # Checkpoints of nn.DataParallel models must load into bare models.
        state["state_dict"] = OrderedDict(
            (k[len("module.") :] if k.startswith("module.") else k, v)
            for k, v in state["state_dict"].items()
        )
    state = _plain(state)

    filename = model_name or checkpoint_filename(state["epoch"])
    fpath = os.path.join(save_dir, filename)
    _atomic_torch_save(state, fpath)
    print(f'Checkpoint saved to "{fpath}"')
    if checkpoint_epoch(filename) is not None:
        _write_pointer(save_dir, filename)

    if is_best:
        best_fpath = os.path.join(save_dir, BEST_FILE)
        _atomic_torch_save(state, best_fpath)
        print(f'Best checkpoint saved to "{best_fpath}"')
    return fpath


def _allowed_class(module: str, name: str) -> type | None:
    """Optimizer and LR-scheduler classes of torch or dassl, which upstream files pickle whole."""
    if module.split(".")[:2] not in (["torch", "optim"], ["dassl", "optim"]):
        return None
    try:
        obj = getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None
    bases = (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)
    if isinstance(obj, type) and issubclass(obj, bases):
        return obj
    return None


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    **{
        ("builtins", t.__name__): t
        for t in (
            dict,
            list,
            tuple,
            set,
            frozenset,
            int,
            float,
            complex,
            bool,
            str,
            bytes,
            bytearray,
            slice,
        )
    },
    # protocol-2 pickles spell bytes as _codecs.encode(str, "latin1")
    ("_codecs", "encode"): codecs.encode,
    ("collections", "OrderedDict"): OrderedDict,
    ("collections", "defaultdict"): defaultdict,
    ("collections", "Counter"): Counter,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("torch.nn.parameter", "Parameter"): nn.Parameter,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
}
try:
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy < 2
    from numpy.core import multiarray as _multiarray
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _SAFE_GLOBALS[(_mod, "scalar")] = _multiarray.scalar
    _SAFE_GLOBALS[(_mod, "_reconstruct")] = _multiarray._reconstruct


class _CheckpointUnpickler(RestrictedUnpickler):
    def allowed_global(self, module: str, name: str) -> Any | None:
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module == "numpy.dtypes" and name.endswith("DType"):
            return getattr(np.dtypes, name)
        return _allowed_class(module, name)

    def refusal(self, module: str, name: str) -> str:
        return (
            f"refused to load global {module}.{name}: checkpoints may only hold tensors, plain "
            "containers and optimizer/scheduler state"
        )


_restricted_pickle = SimpleNamespace(
    __name__="dassl_restricted_pickle", Unpickler=_CheckpointUnpickler, load=pickle.load
)


def _unreadable(fpath: str, err: Exception) -> RuntimeError:
    return RuntimeError(
        f'Cannot read checkpoint "{fpath}" ({str(err).splitlines()[0]}). The file is truncated or '
        "not a PyTorch checkpoint: use another epoch's file or retrain."
    )


def _permission_denied(fpath: str, err: PermissionError) -> PermissionError:
    """Not "truncated": the file may be fine, only this user may not read it."""
    st = os.stat(fpath)
    return PermissionError(
        err.errno,
        f'Permission denied reading checkpoint "{fpath}" (mode {st.st_mode & 0o777:o}, owner uid '
        f"{st.st_uid}). The file is not readable by this user: ask its owner to run "
        f"`chmod a+r {fpath}`, or read a copy.",
    )


def load_checkpoint(fpath: str) -> dict[str, Any]:
    """Load a checkpoint onto the CPU (or keep CUDA tensors where CUDA exists), safely."""
    if fpath is None:
        raise ValueError("File path is None")
    if not os.path.exists(fpath):
        raise FileNotFoundError(f'Checkpoint file not found: "{fpath}"')
    map_location = None if torch.cuda.is_available() else "cpu"
    try:
        return torch.load(fpath, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # Only a well-formed (zip) checkpoint can be one that merely holds extra objects.
        if not zipfile.is_zipfile(fpath):
            raise _unreadable(fpath, err) from err
        print(
            f'Note: "{fpath}" holds more than tensors and plain data (e.g. an upstream warmup '
            "scheduler object); loading it with a restricted unpickler"
        )
    except PermissionError as err:
        raise _permission_denied(fpath, err) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise _unreadable(fpath, err) from err
    try:
        return torch.load(
            fpath, map_location=map_location, pickle_module=_restricted_pickle, weights_only=False
        )
    except pickle.UnpicklingError as err:
        raise pickle.UnpicklingError(
            f'Refusing to load "{fpath}": {err}. Only load checkpoints from sources you trust; '
            "re-save it as a plain dict of tensors to use it here."
        ) from err


def read_checkpoint_pointer(fdir: str) -> str | None:
    """Path of the latest complete checkpoint in ``fdir`` (None if there is no pointer file)."""
    pointer = os.path.join(fdir, POINTER_FILE)
    if not os.path.isfile(pointer):
        return None
    with open(pointer) as f:
        filename = f.readline().strip()
    return os.path.join(fdir, filename) if filename else None


def restore_from_checkpoint(
    checkpoint: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
) -> int:
    """Load weights, optimizer and scheduler states; returns the finished-epoch count.

    Learning-rate rule: the lr settings of the run that resumes win. ``optimizer`` and
    ``scheduler`` come built from the current config, so before their states are replaced their
    base learning rates are those of the current OPTIM.LR (per parameter group, STAGED_LR
    multipliers included) and WARMUP_CONS_LR / WARMUP_MIN_LR. When the checkpoint's differ, the
    scheduler restarts from its freshly built state and is stepped to the checkpoint's epoch, so
    the resumed epoch runs at the lr the current config's schedule gives that epoch (this is what
    makes "resume with a lower OPTIM.LR" after a NaN stop work). Optimizer statistics (momentum,
    Adam moments) are kept either way. With unchanged lr settings nothing is recomputed, so a
    plain resume is bit-exact.
    """
    model.load_state_dict(checkpoint["state_dict"])
    print("Loaded model weights")
    fresh = _fresh_schedule(optimizer, scheduler)
    if optimizer is not None and checkpoint.get("optimizer") is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        print("Loaded optimizer")
    if scheduler is not None and checkpoint.get("scheduler") is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
        print("Loaded scheduler")
    if fresh is not None and fresh["settings"] != _lr_settings(optimizer, scheduler):
        _apply_fresh_schedule(optimizer, scheduler, fresh)
    start_epoch = checkpoint["epoch"]
    print(f"Previous epoch: {start_epoch}")
    return start_epoch


def _lr_settings(optimizer: torch.optim.Optimizer, scheduler: Any) -> list[Any]:
    """The base learning rates a config sets: per group, and those of every (warmup) scheduler."""
    settings: list[Any] = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
    while scheduler is not None:
        settings.append(
            (
                list(getattr(scheduler, "base_lrs", [])),
                getattr(scheduler, "cons_lr", None),
                getattr(scheduler, "min_lr", None),
            )
        )
        scheduler = getattr(scheduler, "successor", None)
    return settings


def _fresh_schedule(optimizer: torch.optim.Optimizer | None, scheduler: Any) -> dict | None:
    """What the current config built, before a checkpoint overwrites it."""
    if optimizer is None:
        return None
    return {
        "settings": _lr_settings(optimizer, scheduler),
        "group_lrs": [(g["lr"], g.get("initial_lr")) for g in optimizer.param_groups],
        "scheduler": None if scheduler is None else copy.deepcopy(scheduler.state_dict()),
    }


def _steps_taken(state: dict[str, Any], fresh: dict[str, Any]) -> int:
    """Scheduler steps from ``fresh`` (as built) to ``state``. A warmup scheduler stops counting
    at its last warmup epoch and hands the later steps to its successor, so both are added."""
    steps = state["last_epoch"] - fresh["last_epoch"]
    if isinstance(state.get("successor"), dict):
        steps += _steps_taken(state["successor"], fresh["successor"])
    return steps


def _apply_fresh_schedule(optimizer: torch.optim.Optimizer, scheduler: Any, fresh: dict) -> None:
    old = [g["lr"] for g in optimizer.param_groups]
    for group, (lr, initial_lr) in zip(optimizer.param_groups, fresh["group_lrs"], strict=True):
        group["lr"] = lr
        if initial_lr is not None:
            group["initial_lr"] = initial_lr
    if scheduler is not None:
        steps = _steps_taken(scheduler.state_dict(), fresh["scheduler"])
        scheduler.load_state_dict(copy.deepcopy(fresh["scheduler"]))
        with warnings.catch_warnings():
            # Stepping a schedule forward is what we mean here, not a misplaced step() call.
            warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*optimizer.step")
            for _ in range(steps):
                scheduler.step()
    new = [g["lr"] for g in optimizer.param_groups]
    print(
        f"The learning-rate settings differ from the checkpoint's: using the current config's "
        f"schedule, so the lr changes from {old} to {new}"
    )


def resume_from_checkpoint(
    fdir: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
) -> int:
    """Restore the checkpoint that ``fdir``/checkpoint names; returns the epoch to start from."""
    fpath = read_checkpoint_pointer(fdir)
    if fpath is None:
        raise FileNotFoundError(
            f'No "{POINTER_FILE}" file in "{fdir}": nothing to resume from. Point --resume at the '
            "OUTPUT_DIR of an earlier run, or drop it to train from scratch."
        )
    print(f'Loading checkpoint from "{fpath}"')
    return restore_from_checkpoint(load_checkpoint(fpath), model, optimizer, scheduler)


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU + CUDA) RNG states as plain data, for exact resume."""
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (np_state[0], np_state[1].tolist(), *np_state[2:]),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuples(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    """random.setstate needs tuples where serialisation may have produced lists."""
    if isinstance(value, list | tuple):
        return tuple(_as_tuples(v) for v in value)
    return value


def init_network_weights(model: nn.Module, init_type: str = "normal", gain: float = 0.02) -> None:
    """Upstream's initialisation: conv/linear weights by ``init_type`` (normal, xavier, kaiming,
    orthogonal) with zero biases; batch and instance norms to weight 1, bias 0."""
    initialisers = {
        "normal": lambda w: nn.init.normal_(w, 0.0, gain),
        "xavier": lambda w: nn.init.xavier_normal_(w, gain=gain),
        "kaiming": lambda w: nn.init.kaiming_normal_(w, a=0, mode="fan_in"),
        "orthogonal": lambda w: nn.init.orthogonal_(w, gain=gain),
    }
    if init_type not in initialisers:
        raise NotImplementedError(f"init_type {init_type!r}; use one of {list(initialisers)}")

    def initialise(module: nn.Module) -> None:
        name = type(module).__name__
        if getattr(module, "weight", None) is not None and ("Conv" in name or "Linear" in name):
            initialisers[init_type](module.weight.data)
            if getattr(module, "bias", None) is not None:
                nn.init.constant_(module.bias.data, 0.0)
        elif "BatchNorm" in name or ("InstanceNorm" in name and module.weight is not None):
            nn.init.constant_(module.weight.data, 1.0)
            nn.init.constant_(module.bias.data, 0.0)

    model.apply(initialise)


def set_bn_to_eval(module: nn.Module) -> None:
    """For ``model.apply``: batch norms stop updating their running statistics (their scale and
    shift stay trainable)."""
    if "BatchNorm" in type(module).__name__:
        module.eval()


def adjust_learning_rate(
    optimizer: torch.optim.Optimizer,
    base_lr: float,
    epoch: int,
    stepsize: int = 20,
    gamma: float = 0.1,
    linear_decay: bool = False,
    final_lr: float = 0,
    max_epoch: int = 100,
) -> None:
    """Upstream's deprecated manual schedule: linear from ``base_lr`` to ``final_lr`` over
    ``max_epoch``, or ``base_lr * gamma ** (epoch // stepsize)``."""
    if linear_decay:
        done = epoch / max_epoch
        lr = done * final_lr + (1.0 - done) * base_lr
    else:
        lr = base_lr * (gamma ** (epoch // stepsize))
    for group in optimizer.param_groups:
        group["lr"] = lr


def open_all_layers(model: nn.Module) -> None:
    """Train mode and gradients on for every layer."""
    model.train()
    for p in model.parameters():
        p.requires_grad = True


def open_specified_layers(model: nn.Module, open_layers: str | list[str]) -> None:
    """Train only the named child modules; freeze (and put in eval mode) the others."""
    if isinstance(model, nn.DataParallel):
        model = model.module
    if isinstance(open_layers, str):
        open_layers = [open_layers]
    children = dict(model.named_children())
    for layer in open_layers:
        if layer not in children:
            raise AttributeError(
                f'"{layer}" is not a child module of the model; choose among {sorted(children)}'
            )
    for name, module in children.items():
        is_open = name in open_layers
        module.train(is_open)
        for p in module.parameters():
            p.requires_grad = is_open


def count_num_param(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_pretrained_weights(model: nn.Module, weight_path: str) -> None:
    """Copy matching tensors (same name and shape, ``module.`` prefix ignored) into ``model``."""
    checkpoint = load_checkpoint(weight_path)
    state_dict = checkpoint.get("state_dict", checkpoint)
    model_dict = model.state_dict()
    matched, discarded = OrderedDict(), []
    for k, v in state_dict.items():
        k = k[len("module.") :] if k.startswith("module.") else k
        if k in model_dict and model_dict[k].size() == v.size():
            matched[k] = v
        else:
            discarded.append(k)
    if not matched:
        raise ValueError(
            f'No layer of "{weight_path}" matches the model by name and shape; check that '
            "MODEL.INIT_WEIGHTS points at weights for this architecture."
        )
    model_dict.update(matched)
    model.load_state_dict(model_dict)
    print(f'Successfully loaded pretrained weights from "{weight_path}"')
    if discarded:
        print(
            f"** The following layers are discarded due to unmatched keys or layer size: "
            f"{discarded}"
        )


def is_finite_state(state_dict: dict[str, Any]) -> bool:
    """False if any floating tensor holds NaN or inf (such weights must never be saved)."""
    return all(
        torch.isfinite(v).all().item()
        for v in state_dict.values()
        if isinstance(v, torch.Tensor) and v.is_floating_point()
    )


__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "resume_from_checkpoint",
    "restore_from_checkpoint",
    "read_checkpoint_pointer",
    "capture_rng_state",
    "restore_rng_state",
    "init_network_weights",
    "set_bn_to_eval",
    "adjust_learning_rate",
    "open_all_layers",
    "open_specified_layers",
    "count_num_param",
    "load_pretrained_weights",
    "is_finite_state",
]
