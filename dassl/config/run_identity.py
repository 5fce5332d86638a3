"""Run identity: a run *is* its frozen config, recorded in ``OUTPUT_DIR/config.yaml``.

Everything that decides whether a folder may be skipped, resumed, evaluated or reused compares
configs, never folder names. A run started into a folder that holds a run with another config is
refused before anything is touched, naming each differing key with both values.

Keys that cannot change a run's numbers are left out of the comparison (``IGNORED_KEYS``): where the
outputs go, how often progress is printed or epoch files are kept, how many loader processes feed
the model, whether the config is printed, and where image features come from (the feature store,
the eval-feature cache, train images decoded once), which the trainers keep bit-identical.
``DATALOADER.NUM_WORKERS`` decides which random crops each worker draws, so a resume with another
worker count is not bit-exact, but the experiment is the same one; it is ignored so that a run can
move to a machine with another CPU count.
"""

from __future__ import annotations

import datetime
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from yacs.config import CfgNode

from dassl.utils.tools import atomic_write

from . import register_cfg_extension

CONFIG_FILE = "config.yaml"
COMMAND_FILE = "command.txt"

IGNORED_KEYS = frozenset(
    {
        "OUTPUT_DIR",
        "VERBOSE",
        "DATALOADER.NUM_WORKERS",
        "TRAIN.PRINT_FREQ",
        "TRAIN.CHECKPOINT_FREQ",
        # Where image features come from (trainers/features.py): equal by design either way.
        "TRAINER.FEATURE_CACHE.EVAL",
        "TRAINER.FEATURE_STORE.ENABLED",
        "TRAINER.FEATURE_STORE.DIR",
        "TRAINER.DECODE_ONCE_MB",
    }
)

BEST_EPOCH = 0
DEFAULT_EPOCH = -1  # the model the trained run tested itself
LAST_EPOCH = -2


@register_cfg_extension
def _run_keys(cfg: CfgNode) -> None:
    """Command-line facts that decide what an evaluation measures, so config.yaml holds them."""
    cfg.RUN = CfgNode()
    cfg.RUN.EVAL_ONLY = False  # --eval-only
    cfg.RUN.MODEL_DIR = ""  # --model-dir: the trained run an evaluation loads
    # --load-epoch: N loads model.pth.tar-N, 0 (BEST_EPOCH) model-best.pth.tar; train.py resolves
    # the placeholders DEFAULT_EPOCH and LAST_EPOCH from the trained run's config.
    cfg.RUN.LOAD_EPOCH = DEFAULT_EPOCH


class RunConflictError(RuntimeError):
    """OUTPUT_DIR holds a run whose config differs from the one asked for (or cannot be checked)."""


@dataclass(frozen=True)
class Difference:
    key: str
    recorded: Any
    requested: Any

    def __str__(self) -> str:
        return f"{self.key}: {self.recorded!r} in the folder, {self.requested!r} now"


@dataclass
class RunStatus:
    """What OUTPUT_DIR holds relative to a requested config."""

    output_dir: str
    has_record: bool  # config.yaml exists
    differences: list[Difference] = field(default_factory=list)

    @property
    def conflicting(self) -> bool:
        return bool(self.differences)


def flatten(node: CfgNode | dict, prefix: str = "") -> dict[str, Any]:
    """``{"OPTIM.LR": 0.002, ...}`` for every leaf of a config tree."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def comparable(value: Any) -> Any:
    """YAML stores tuples as lists; compare them alike (recursively)."""
    if isinstance(value, list | tuple):
        return [comparable(v) for v in value]
    return value


def diff_configs(
    recorded: dict[str, Any], requested: dict[str, Any], defaults: dict[str, Any]
) -> list[Difference]:
    """The keys whose values differ, ignoring ``IGNORED_KEYS``.

    A key absent from the recorded config (written before the key existed) counts as its default,
    which is what the code that wrote it did.
    """
    differences = []
    for key in sorted(set(recorded) | set(requested)):
        if key in IGNORED_KEYS:
            continue
        old = recorded.get(key, defaults.get(key))
        new = requested.get(key, defaults.get(key))
        if comparable(old) != comparable(new):
            differences.append(Difference(key, old, new))
    return differences


def read_recorded_config(output_dir: str) -> dict[str, Any] | None:
    """The flattened ``config.yaml`` of ``output_dir``, or None when there is none."""
    path = os.path.join(output_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise RunConflictError(
            f'"{path}" is not valid YAML ({err}); the run in "{output_dir}" cannot be checked. '
            "Fix: delete that folder, or pass another --output-dir."
        ) from err
    if not isinstance(data, dict):
        raise RunConflictError(
            f'"{path}" does not hold a config tree; the run in "{output_dir}" cannot be checked. '
            "Fix: delete that folder, or pass another --output-dir."
        )
    return flatten(data)


def _holds_run_outputs(output_dir: str) -> bool:
    """Whether the folder holds checkpoints or logs of an earlier run (upstream or ours)."""
    for _, _, files in os.walk(output_dir):
        if any(f == "checkpoint" or f.startswith(("model", "log.txt")) for f in files):
            return True
    return False


def inspect_output_dir(cfg: CfgNode, defaults: CfgNode) -> RunStatus:
    """Compare ``cfg`` with the run recorded in ``cfg.OUTPUT_DIR`` (``defaults``: the full default
    tree, to read keys an older config.yaml lacks)."""
    output_dir = cfg.OUTPUT_DIR
    recorded = read_recorded_config(output_dir)
    if recorded is None:
        if os.path.isdir(output_dir) and _holds_run_outputs(output_dir):
            raise RunConflictError(
                f'"{output_dir}" holds logs or checkpoints of a run but no {CONFIG_FILE} (an '
                "upstream run, or one from an older version), so there is no way to tell whether "
                "it is the run asked for. Fix: pass another --output-dir, or delete that folder."
            )
        return RunStatus(output_dir, has_record=False)
    differences = diff_configs(recorded, flatten(cfg), flatten(defaults))
    return RunStatus(output_dir, has_record=True, differences=differences)


def conflict_message(status: RunStatus) -> str:
    lines = "\n".join(f"  - {d}" for d in status.differences)
    return (
        f'"{status.output_dir}" holds a run with a different config '
        f"({os.path.join(status.output_dir, CONFIG_FILE)}):\n{lines}\n"
        "Nothing was changed. Fix: pass another --output-dir for this config, or delete that "
        "folder to replace the run. (Keys that cannot change results are not compared: "
        f"{', '.join(sorted(IGNORED_KEYS))}.)"
    )


def check_output_dir(cfg: CfgNode, defaults: CfgNode) -> RunStatus:
    """``inspect_output_dir``, raising ``RunConflictError`` on any difference."""
    status = inspect_output_dir(cfg, defaults)
    if status.conflicting:
        raise RunConflictError(conflict_message(status))
    return status


def write_run_record(cfg: CfgNode, argv: Sequence[str]) -> None:
    """Write ``config.yaml`` (the frozen config) and append the command line to ``command.txt``."""
    output_dir = cfg.OUTPUT_DIR
    with atomic_write(os.path.join(output_dir, CONFIG_FILE), "w") as f:
        f.write(cfg.dump())
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    with open(os.path.join(output_dir, COMMAND_FILE), "a") as f:
        f.write(f"# {stamp}\n{shlex.join(argv)}\n")
