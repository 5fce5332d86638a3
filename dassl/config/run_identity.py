"""Run identity: a run *is* its frozen config, recorded in ``OUTPUT_DIR/config.yaml``.

Everything that decides whether a folder may be skipped, resumed, evaluated or reused compares
configs, never folder names. A run started into a folder that holds a run with another config is
refused before anything is touched, naming each differing key with both values.

A run is compared on what decides its result, not on where that lives or on code it does not use:

- **scope**: the global nodes plus the run's own method node. Another registered method's node
  (``TRAINER.<CFG_NODE>`` of another trainer), and a node no code declares any more (a method
  moved away), are not compared, so adding, renaming or removing a method never makes a finished
  run conflict;
- **content**: keys that name inputs (``CONTENT_KEYS``: the data root, the backbone) are compared
  by the digests the dataset and the trainer give for them (``content_digests``), recorded in
  ``inputs.json`` beside ``config.yaml``; the same data or weights at another path match, other
  content at the same path does not. Runs recorded without digests compare the paths, as before;
- a folder whose run never finished an epoch (no checkpoint, no result) is no conflict: its old
  ``config.yaml`` and logs are kept aside under a ``-failed-<timestamp>`` suffix.

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
import json
import os
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from yacs.config import CfgNode

from dassl.evaluation.result_record import holds_result
from dassl.utils.tools import atomic_write
from dassl.utils.user_error import UserError

from . import register_cfg_extension

CONFIG_FILE = "config.yaml"
COMMAND_FILE = "command.txt"
INPUTS_FILE = "inputs.json"  # digests of what CONTENT_KEYS name, when the run started
FAILED_SUFFIX = "-failed-"

# Keys naming an input by where it lives; compared by the digests of what it holds.
CONTENT_KEYS = ("DATASET.ROOT", "MODEL.BACKBONE.NAME")
# How the command was launched (set by scripts/common.sh and tools/sweep), for the fix a
# refusal names: scripts and the sweep take no --output-dir.
LAUNCHER_ENV = "RUN_LAUNCHER"
OUTPUT_FIXES = {
    "scripts": "run the script again with OUTPUT_ROOT=<another folder>",
    "sweep": "run the grid again with --output-root <another folder>",
}
DEFAULT_OUTPUT_FIX = "pass another --output-dir"

Digests = dict[str, dict[str, str]]  # content key -> {part: digest}

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
        # Says where fixed hyperparameters come from, for the result record; changes no number.
        "RUN.HYPERPARAMETERS_FROM",
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
    # Where the run's fixed hyperparameters come from, for its result record: "config" (the
    # config files and overrides) or "paper" (a grid setting the published per-dataset values).
    cfg.RUN.HYPERPARAMETERS_FROM = "config"
    # An evaluation of a model whose hyperparameters the sweep searched: the search report (JSON
    # with space, winner, split, size) that its result record takes as how they were chosen.
    cfg.RUN.SEARCH_REPORT = ""


class RunConflictError(UserError, RuntimeError):
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
    # No checkpoint and no result: a failed start, whose record may be set aside.
    never_finished_an_epoch: bool = False

    @property
    def conflicting(self) -> bool:
        return bool(self.differences)


def output_fix(launcher: str | None = None) -> str:
    """How the user points the run at another folder, in the terms of how they launched it."""
    launcher = os.environ.get(LAUNCHER_ENV, "") if launcher is None else launcher
    return OUTPUT_FIXES.get(launcher, DEFAULT_OUTPUT_FIX)


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


def method_nodes() -> dict[str, str]:
    """Registered trainer -> its method node under TRAINER (``CFG_NODE``; trainers without one,
    such as upstream plugins, are left out)."""
    from dassl.engine import TRAINER_REGISTRY  # the engine imports this package

    nodes = {}
    for name in TRAINER_REGISTRY.registered_names():
        node = getattr(TRAINER_REGISTRY.get(name), "CFG_NODE", "")
        if node:
            nodes[name] = node
    return nodes


def identity_scope(trainer: str, defaults: dict[str, Any]) -> Callable[[str], bool]:
    """Whether a key belongs to the identity of a ``trainer`` run: every key but those of another
    method's node, or of a TRAINER node no code declares now (a method moved away)."""
    nodes = method_nodes()
    own = nodes.get(trainer, "")
    others = set(nodes.values()) - {own}
    declared = {k.split(".")[1] for k in defaults if k.startswith("TRAINER.") and k.count(".") > 1}

    def in_scope(key: str) -> bool:
        parts = key.split(".")
        if parts[0] != "TRAINER" or len(parts) < 3 or parts[1] == own:
            return True
        return parts[1] not in others and parts[1] in declared

    return in_scope


def same_content(recorded: dict[str, str] | None, requested: dict[str, str] | None) -> bool | None:
    """Whether two inputs' digests say they hold the same content; None when they cannot tell
    (no digest part on both sides). Every part both sides have must match."""
    if not recorded or not requested:
        return None
    common = recorded.keys() & requested.keys()
    if not common:
        return None
    return all(recorded[part] == requested[part] for part in common)


def diff_configs(
    recorded: dict[str, Any],
    requested: dict[str, Any],
    defaults: dict[str, Any],
    recorded_digests: Digests | None = None,
    requested_digests: Digests | None = None,
) -> list[Difference]:
    """The keys whose values differ, ignoring ``IGNORED_KEYS`` and keys outside the run's
    ``identity_scope``. ``CONTENT_KEYS``, and any key a ``content_digests`` provider digests
    (TaskRes's enhanced base file), compare by digest when both sides have one.

    A key absent from the recorded config (written before the key existed) counts as its default,
    which is what the code that wrote it did.
    """
    in_scope = identity_scope(str(requested.get("TRAINER.NAME", "")), defaults)
    content_keys = {*CONTENT_KEYS, *(recorded_digests or {}), *(requested_digests or {})}
    differences = []
    for key in sorted(set(recorded) | set(requested)):
        if key in IGNORED_KEYS or not in_scope(key):
            continue
        old = recorded.get(key, defaults.get(key))
        new = requested.get(key, defaults.get(key))
        if key in content_keys:
            same = same_content(
                (recorded_digests or {}).get(key), (requested_digests or {}).get(key)
            )
            if same is not None:
                if not same:
                    differences.append(Difference(f"{key} (content)", old, new))
                continue
        if comparable(old) != comparable(new):
            differences.append(Difference(key, old, new))
    return differences


def read_recorded_digests(output_dir: str) -> Digests:
    """The digests ``inputs.json`` records ({} for runs written without one)."""
    try:
        with open(os.path.join(output_dir, INPUTS_FILE)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def content_digests(cfg: CfgNode) -> Digests:
    """Digests of what ``CONTENT_KEYS`` name, from the dataset's and the trainer's
    ``content_digests(cfg)`` classmethods (those without one give none: their keys compare as
    paths)."""
    from dassl.data.datasets import DATASET_REGISTRY  # imports torch, as the engine does
    from dassl.engine import TRAINER_REGISTRY

    digests: Digests = {}
    for registry, name in (
        (DATASET_REGISTRY, cfg.DATASET.NAME),
        (TRAINER_REGISTRY, cfg.TRAINER.NAME),
    ):
        if name not in registry.registered_names():
            continue
        provider = getattr(registry.get(name), "content_digests", None)
        if provider is not None:
            digests.update({k: v for k, v in provider(cfg).items() if v})
    return digests


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


def _holds_checkpoints(output_dir: str) -> bool:
    for _, _, files in os.walk(output_dir):
        if any(f == "checkpoint" or f.startswith("model") for f in files):
            return True
    return False


def inspect_output_dir(
    cfg: CfgNode, defaults: CfgNode, digests: Digests | None = None
) -> RunStatus:
    """Compare ``cfg`` with the run recorded in ``cfg.OUTPUT_DIR`` (``defaults``: the full default
    tree, to read keys an older config.yaml lacks; ``digests``: the requested inputs'
    ``content_digests``, computed here when not given)."""
    output_dir = cfg.OUTPUT_DIR
    recorded = read_recorded_config(output_dir)
    if recorded is None:
        if os.path.isdir(output_dir) and _holds_run_outputs(output_dir):
            raise RunConflictError(
                f'"{output_dir}" holds logs or checkpoints of a run but no {CONFIG_FILE} (an '
                "upstream run, or one from an older version), so there is no way to tell whether "
                f"it is the run asked for. Fix: {output_fix()}, or delete that folder."
            )
        return RunStatus(output_dir, has_record=False)
    if digests is None:
        digests = content_digests(cfg)
    differences = diff_configs(
        recorded, flatten(cfg), flatten(defaults), read_recorded_digests(output_dir), digests
    )
    never_finished = not _holds_checkpoints(output_dir) and not holds_result(output_dir)
    return RunStatus(output_dir, True, differences, never_finished)


def conflict_message(status: RunStatus, launcher: str | None = None) -> str:
    """The refusal of a conflicting folder; its fix in the terms of ``launcher`` (scripts, sweep;
    default: ``$RUN_LAUNCHER``)."""
    lines = "\n".join(f"  - {d}" for d in status.differences)
    return (
        f'"{status.output_dir}" holds a run with a different config '
        f"({os.path.join(status.output_dir, CONFIG_FILE)}):\n{lines}\n"
        f"Nothing was changed. Fix: {output_fix(launcher)} for this config, or delete that "
        "folder to replace the run. (Keys that cannot change results are not compared: "
        f"{', '.join(sorted(IGNORED_KEYS))}; the data and the backbone compare by content when "
        f"the folder's {INPUTS_FILE} records it.)"
    )


def check_output_dir(cfg: CfgNode, defaults: CfgNode, digests: Digests | None = None) -> RunStatus:
    """``inspect_output_dir``, raising ``RunConflictError`` on a difference, unless the folder's
    run never finished an epoch (a failed start: ``set_aside_failed_start`` may replace it)."""
    status = inspect_output_dir(cfg, defaults, digests)
    if status.conflicting and not status.never_finished_an_epoch:
        raise RunConflictError(conflict_message(status))
    return status


def set_aside_failed_start(status: RunStatus) -> str:
    """Rename the record and logs of a run that never finished an epoch with a
    ``-failed-<timestamp>`` suffix; returns the note for the new run's log. Call it while
    holding the folder (``dassl.utils.run_lock``): a live first epoch has no checkpoint yet."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H-%M-%S")
    moved = []
    for name in sorted(os.listdir(status.output_dir)):
        if name in (CONFIG_FILE, COMMAND_FILE, INPUTS_FILE) or (
            name.startswith("log.txt") and FAILED_SUFFIX not in name
        ):
            os.replace(
                os.path.join(status.output_dir, name),
                os.path.join(status.output_dir, f"{name}{FAILED_SUFFIX}{stamp}"),
            )
            moved.append(name)
    keys = ", ".join(d.key for d in status.differences)
    return (
        f'Note: "{status.output_dir}" held a run with another config ({keys}) that never '
        f"finished an epoch (no checkpoint, no result), so it is no conflict: its "
        f"{', '.join(moved)} were kept aside with the suffix {FAILED_SUFFIX}{stamp}"
    )


def write_run_record(cfg: CfgNode, argv: Sequence[str]) -> None:
    """Write ``config.yaml`` (the frozen config) and append the command line to ``command.txt``."""
    output_dir = cfg.OUTPUT_DIR
    with atomic_write(os.path.join(output_dir, CONFIG_FILE), "w") as f:
        f.write(cfg.dump())
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    with open(os.path.join(output_dir, COMMAND_FILE), "a") as f:
        f.write(f"# {stamp}\n{shlex.join(argv)}\n")


def write_inputs_record(output_dir: str, digests: Digests) -> None:
    """Record the inputs' digests (``inputs.json``) atomically, once the trainer built them."""
    with atomic_write(os.path.join(output_dir, INPUTS_FILE), "w") as f:
        json.dump(digests, f, indent=1, sort_keys=True)
        f.write("\n")
