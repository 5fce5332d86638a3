"""A run's config, assembled as upstream CoOp's train.py does: the library behind ``train.py``.

The config is merged in upstream CoOp's order: defaults (+ keys the imported datasets and trainers
declare) <- dataset config file <- method config file <- command-line flags <- trailing KEY VALUE
pairs. The caller imports the datasets and trainers first (``import datasets, trainers``), which
registers them, their config keys and the methods' flags. An evaluation of a trained run
(``--eval-only --model-dir D``) takes the backbone, input and method keys from ``D/config.yaml``
right after the config files, so only the command line overrides them; evaluating on another
dataset is checked against the documented transfers.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

import yaml
from yacs.config import CfgNode

from dassl.config import extend_cfg, get_cfg_default
from dassl.config.run_identity import (
    BEST_EPOCH,
    CONFIG_FILE,
    DEFAULT_EPOCH,
    LAST_EPOCH,
    RunStatus,
    comparable,
    flatten,
    read_recorded_config,
)
from dassl.engine import TRAINER_REGISTRY
from dassl.evaluation.result_record import holds_result, read_result_record
from dassl.utils import did_you_mean
from dassl.utils.user_error import UserError

FINAL_MODEL_CHOICES = ("last_step", "best_val")
TEST_SPLIT_CHOICES = ("val", "test")
HYPERPARAMETERS_FROM_CHOICES = ("config", "paper")
VAL_USE_CHOICES = ("select", "none", "train")
# Evaluating a model on another dataset than it was trained on is only meaningful for these
# documented transfers (same classes), unless the learned weights do not depend on the classes.
TRANSFERS = {"ImageNet": ("ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR")}
# What an evaluation takes from the trained run besides the trainer's own TRAINER.<node>: the
# backbone and the whole input pipeline (size, interpolation, mean/std, and INPUT.TRANSFORMS, whose
# "normalize" the test transform applies too).
TRAINED_RUN_KEYS = ("MODEL.BACKBONE.NAME",)
TRAINED_RUN_NODES = ("INPUT.",)


class ConfigError(UserError, ValueError):
    """A config file, override or flag that cannot be used; the message names it and the fix."""


def load_epoch_arg(value: str) -> int:
    """--load-epoch as RUN.LOAD_EPOCH holds it: N >= 1, BEST_EPOCH, or LAST_EPOCH."""
    named = {"best": BEST_EPOCH, "last": LAST_EPOCH}
    if value in named:
        return named[value]
    try:
        epoch = int(value)
    except ValueError:
        epoch = 0
    if epoch < 1:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an epoch: give N >= 1 (model.pth.tar-N), 'best' or 'last'"
        )
    return epoch


def method_flags() -> dict[str, tuple[str, str]]:
    """The flags the registered methods declare (``ClipTrainer.cli_flags``): flag -> (config
    key, help). Subclasses of a method repeat its flags; two methods may not share a flag."""
    flags: dict[str, tuple[str, str]] = {}
    for name in TRAINER_REGISTRY.registered_names():
        cli_flags = getattr(TRAINER_REGISTRY.get(name), "cli_flags", None)
        for flag, (key, help) in (cli_flags() if cli_flags is not None else {}).items():
            if flags.setdefault(flag, (key, help))[0] != key:
                raise ValueError(
                    f"Trainer {name} declares the flag {flag} for {key}, but another trainer "
                    f"declares it for {flags[flag][0]}; rename one of them in its CLI_FLAGS."
                )
    return flags


def method_flag_values(args: argparse.Namespace) -> dict[str, str]:
    """Config key -> value of each method flag given on the command line."""
    given = {}
    for flag, (key, _) in method_flags().items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if value is not None:
            given[key] = value
    return given


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train or evaluate a method: ``python train.py --root DATA --trainer NAME ... "
        "[KEY VALUE]``."
    )
    parser.add_argument("--root", type=str, default="", help="path to dataset")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument(
        "--resume", type=str, default="", help="checkpoint directory to resume training from"
    )
    parser.add_argument(
        "--seed", type=int, default=-1, help="only a non-negative value fixes the seed"
    )
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="path to method config file")
    parser.add_argument(
        "--dataset-config-file", type=str, default="", help="path to dataset config file"
    )
    parser.add_argument(
        "--trainer",
        type=str,
        default="",
        help=f"name of trainer: {', '.join(TRAINER_REGISTRY.registered_names())}",
    )
    parser.add_argument("--backbone", type=str, default="", help="name of backbone")
    parser.add_argument("--head", type=str, default="", help="name of head")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument(
        "--model-dir", type=str, default="", help="load the model from this directory (eval-only)"
    )
    parser.add_argument(
        "--load-epoch",
        type=load_epoch_arg,
        help="checkpoint to evaluate: an epoch N (model.pth.tar-N), 'best' (model-best.pth.tar) "
        "or 'last'; default: the model the trained run tested itself",
    )
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument(
        "--skip-finished",
        action="store_true",
        help="do nothing when OUTPUT_DIR already holds a finished run with this config",
    )
    parser.add_argument(
        "--traceback",
        action="store_true",
        help="show the traceback of an error in the command, config, data or weights (by "
        "default its message alone)",
    )
    for flag, (_, help) in method_flags().items():
        parser.add_argument(flag, type=str, default=None, help=help)
    parser.add_argument(
        "opts", default=None, nargs=argparse.REMAINDER, help="KEY VALUE config overrides"
    )
    return parser


def reset_cfg(cfg: CfgNode, args: argparse.Namespace) -> None:
    """Apply the command-line flags that were given (step 3 of the merge)."""
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed >= 0:
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head
    for key, value in method_flag_values(args).items():
        *path, name = key.split(".")
        node = cfg
        for part in path:
            node = node[part]
        node[name] = value
    cfg.RUN.EVAL_ONLY = bool(args.eval_only)
    cfg.RUN.MODEL_DIR = args.model_dir or ""
    if args.eval_only and args.load_epoch is not None:
        cfg.RUN.LOAD_EPOCH = args.load_epoch


def explicit_keys(args: argparse.Namespace) -> set[str]:
    """Config keys the command line sets itself (they win over a trained run's config)."""
    keys = set((args.opts or [])[0::2])
    if args.backbone:
        keys.add("MODEL.BACKBONE.NAME")
    if args.trainer:
        keys.add("TRAINER.NAME")
    keys.update(method_flag_values(args))
    return keys


def check_known_keys(cfg: CfgNode, keys: Sequence[str], source: str) -> None:
    """Refuse unknown keys, naming the closest existing ones (case differences first)."""
    known = list(flatten(cfg))
    for key in keys:
        if key in known:
            continue
        hint = did_you_mean(str(key), known, n=3, quote="")
        raise ConfigError(
            f"Unknown config key {key!r} in {source}.{hint} Keys are case-sensitive; the full "
            "list is printed under ** Config ** at the start of every run's log."
        )


def check_opts(opts: list[str], parser: argparse.ArgumentParser) -> None:
    """Trailing overrides come in KEY VALUE pairs after every flag."""
    flags = set(parser._option_string_actions)
    misplaced = [arg for arg in opts if arg.split("=", 1)[0] in flags]
    if misplaced:
        raise ConfigError(
            f"The flag {misplaced[0]} comes after a KEY VALUE override, so it was read as part "
            f"of the overrides {opts}. Fix: put the flags first and the KEY VALUE overrides last."
        )
    if len(opts) % 2:
        raise ConfigError(
            f"KEY VALUE overrides must come in pairs; got {len(opts)} words: {opts}. Fix: give "
            'a value for every key (quote values with spaces, e.g. INPUT.SIZE "(224, 224)").'
        )


def merge_config_file(cfg: CfgNode, path: str) -> None:
    if not os.path.isfile(path):
        raise ConfigError(f'Config file "{path}" does not exist; check the path.')
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    check_known_keys(cfg, list(flatten(data)), f'config file "{path}"')
    cfg.merge_from_file(path)


def inherit_trained_config(
    cfg: CfgNode, args: argparse.Namespace, notes: list[str]
) -> dict[str, Any] | None:
    """Copy the backbone, input and method keys of the run in ``--model-dir`` into ``cfg``.

    Returns the trained run's flattened config, or None for runs without config.yaml (upstream's),
    which are evaluated with the config files and the command line alone, as upstream does.
    """
    trained = read_recorded_config(args.model_dir)
    if trained is None:
        notes.append(
            f"Note: {args.model_dir} has no {CONFIG_FILE} (an upstream run?); evaluating it "
            "with the config files and command line as given"
        )
        return None
    trainer = args.trainer or cfg.TRAINER.NAME
    if trained.get("TRAINER.NAME") != trainer:
        raise ConfigError(
            f"--model-dir {args.model_dir} holds a {trained.get('TRAINER.NAME')} run, but this "
            f"evaluation asks for --trainer {trainer}. Fix: pass --trainer "
            f"{trained.get('TRAINER.NAME')}, or the folder of a {trainer} run."
        )
    method = TRAINER_REGISTRY.get(trainer)
    node = getattr(method, "CFG_NODE", "")
    prefixes = TRAINED_RUN_NODES + ((f"TRAINER.{node}.",) if node else ())
    inherited = TRAINED_RUN_KEYS + tuple(getattr(method, "EVAL_INHERITS", ()))
    keys = [k for k in trained if k in inherited or k.startswith(prefixes)]
    current = flatten(cfg)
    keys = [k for k in keys if k in current]
    cfg.merge_from_list([x for k in keys for x in (k, _as_opt(trained[k]))])
    taken = [
        f"{k}={trained[k]!r}" for k in keys if comparable(trained[k]) != comparable(current[k])
    ]
    notes.append(
        f"Evaluating the run in {args.model_dir} with its backbone, input, "
        f"TRAINER.{node or '<method>'} and the method's EVAL_INHERITS keys from its "
        f"{CONFIG_FILE}; those that differ from the "
        f"config files given here: {', '.join(taken) or 'none'}"
    )
    return trained


def _as_opt(value: Any) -> Any:
    """A recorded value as merge_from_list takes it (YAML lists back to the tuples yacs holds)."""
    return repr(tuple(value)) if isinstance(value, list) else value


def resolve_load_epoch(cfg: CfgNode, trained: dict[str, Any] | None) -> None:
    """Without --load-epoch, load the model the trained run tested itself: model-best for
    TEST.FINAL_MODEL best_val, the last epoch's file for last_step. Upstream runs (no config.yaml)
    load model-best, as upstream does."""
    epoch = cfg.RUN.LOAD_EPOCH
    if epoch == LAST_EPOCH and trained is None:
        raise ConfigError(
            f"--load-epoch last needs the trained run's {CONFIG_FILE} in --model-dir "
            f"{cfg.RUN.MODEL_DIR or '(none given)'}. Fix: pass the epoch number."
        )
    if epoch == DEFAULT_EPOCH:
        last_step = trained is not None and trained.get("TEST.FINAL_MODEL") == "last_step"
        epoch = LAST_EPOCH if last_step else BEST_EPOCH
    if epoch == LAST_EPOCH:
        epoch = tested_epoch(cfg.RUN.MODEL_DIR) or int(trained["OPTIM.MAX_EPOCH"])
    cfg.RUN.LOAD_EPOCH = epoch


def tested_epoch(model_dir: str) -> int | None:
    """The epoch of the weights the finished run in ``model_dir`` tested (its result record):
    the last one, also for a trainer whose epochs follow a budget of iterations rather than
    OPTIM.MAX_EPOCH (CLIP-LoRA). None without a record."""
    record = read_result_record(model_dir) or {}
    epoch = (record.get("model") or {}).get("epoch")
    return epoch if isinstance(epoch, int) and epoch >= 1 else None


def absolute_paths(cfg: CfgNode) -> None:
    """Record paths absolute, so the same run given relative and absolute paths is one run."""
    for node, key in ((cfg.DATASET, "ROOT"), (cfg, "RESUME"), (cfg.RUN, "MODEL_DIR")):
        if node[key]:
            node[key] = os.path.abspath(os.path.expanduser(node[key]))
    if os.path.isfile(cfg.MODEL.BACKBONE.NAME):
        cfg.MODEL.BACKBONE.NAME = os.path.abspath(cfg.MODEL.BACKBONE.NAME)


def setup_cfg(args: argparse.Namespace, notes: list[str] | None = None) -> CfgNode:
    """The frozen config of a run. What it learns on the way (keys taken from a trained run,
    overrides of them) goes to ``notes`` for the run's log, or is printed when none is given."""
    log = [] if notes is None else notes
    opts = list(args.opts or [])
    check_opts(opts, build_parser())
    cfg = get_cfg_default()
    extend_cfg(cfg)
    if args.dataset_config_file:
        merge_config_file(cfg, args.dataset_config_file)
    if args.config_file:
        merge_config_file(cfg, args.config_file)
    trained = None
    if args.eval_only and args.model_dir:
        trained = inherit_trained_config(cfg, args, log)
    reset_cfg(cfg, args)
    check_known_keys(cfg, opts[0::2], "the command line")
    cfg.merge_from_list(opts)
    if trained is not None:
        report_overrides(cfg, trained, explicit_keys(args), log)
    if args.eval_only:
        resolve_load_epoch(cfg, trained)
    absolute_paths(cfg)
    check_cfg_values(cfg)
    if trained is not None:
        check_transfer(cfg, trained, log)
    cfg.freeze()
    if notes is None:
        print("\n".join(log))
    return cfg


def report_overrides(
    cfg: CfgNode, trained: dict[str, Any], explicit: set[str], notes: list[str]
) -> None:
    current = flatten(cfg)
    for key in sorted(explicit & trained.keys() & current.keys()):
        if comparable(trained[key]) != comparable(current[key]):
            notes.append(
                f"The command line overrides the trained run's {key}: trained with "
                f"{trained[key]!r}, evaluating with {current[key]!r}"
            )


def check_cfg_values(cfg: CfgNode) -> None:
    """Values yacs cannot check by type, refused before any work (upstream falls back silently)."""
    if cfg.TEST.FINAL_MODEL not in FINAL_MODEL_CHOICES:
        raise ConfigError(
            f"TEST.FINAL_MODEL is {cfg.TEST.FINAL_MODEL!r}; choose one of {FINAL_MODEL_CHOICES}."
        )
    if cfg.TEST.SPLIT not in TEST_SPLIT_CHOICES:
        raise ConfigError(f"TEST.SPLIT is {cfg.TEST.SPLIT!r}; choose one of {TEST_SPLIT_CHOICES}.")
    if cfg.RUN.SEARCH_REPORT and not (cfg.RUN.EVAL_ONLY and cfg.RUN.MODEL_DIR):
        raise ConfigError(
            "RUN.SEARCH_REPORT names the search that chose a trained model's hyperparameters, so "
            "it belongs to an evaluation of that model. Fix: add --eval-only --model-dir, or "
            "drop RUN.SEARCH_REPORT."
        )
    if cfg.DATASET.VAL_USE not in VAL_USE_CHOICES:
        raise ConfigError(
            f"DATASET.VAL_USE is {cfg.DATASET.VAL_USE!r}; choose one of {VAL_USE_CHOICES}."
        )
    if cfg.DATASET.VAL_USE != "select":
        picks = cfg.TEST.FINAL_MODEL == "best_val" and not cfg.TEST.NO_TEST
        reads = "TEST.FINAL_MODEL best_val" if picks else "TEST.SPLIT val"
        if picks or cfg.TEST.SPLIT == "val":
            raise ConfigError(
                f"DATASET.VAL_USE {cfg.DATASET.VAL_USE} is the validation-free protocol (no val "
                f"split), but {reads} reads the val split. Fix: TEST.FINAL_MODEL last_step and "
                "TEST.SPLIT test, or DATASET.VAL_USE select."
            )
    if cfg.RUN.HYPERPARAMETERS_FROM not in HYPERPARAMETERS_FROM_CHOICES:
        raise ConfigError(
            f"RUN.HYPERPARAMETERS_FROM is {cfg.RUN.HYPERPARAMETERS_FROM!r}; choose one of "
            f"{HYPERPARAMETERS_FROM_CHOICES}."
        )
    if not cfg.RUN.EVAL_ONLY and cfg.OPTIM.MAX_EPOCH < 1:
        raise ConfigError(
            f"OPTIM.MAX_EPOCH is {cfg.OPTIM.MAX_EPOCH}: a training run needs at least 1 epoch. "
            "Fix: set OPTIM.MAX_EPOCH >= 1, or evaluate with --eval-only."
        )


def check_transfer(cfg: CfgNode, trained: dict[str, Any], notes: list[str]) -> None:
    """Refuse evaluating class-specific weights on other classes than they were trained on."""
    source = (trained.get("DATASET.NAME"), trained.get("DATASET.SUBSAMPLE_CLASSES", "all"))
    target = (cfg.DATASET.NAME, cfg.DATASET.get("SUBSAMPLE_CLASSES", "all"))
    if source == target or (source[1] == target[1] and target[0] in TRANSFERS.get(source[0], ())):
        return
    trainer_cls = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    learns_per_class = getattr(trainer_cls, "learns_per_class", None)
    if learns_per_class is not None and not learns_per_class(cfg):
        notes.append(
            f"Transfer: evaluating class-agnostic {cfg.TRAINER.NAME} weights trained on "
            f"{source[0]} ({source[1]} classes) on {target[0]} ({target[1]} classes)"
        )
        return
    raise ConfigError(
        f"--model-dir {cfg.RUN.MODEL_DIR} was trained on {source[0]} ({source[1]} classes) and "
        f"its {cfg.TRAINER.NAME} weights are class-specific, so they cannot be evaluated on "
        f"{target[0]} ({target[1]} classes). Fix: evaluate on {source[0]}"
        + "".join(f" or {t}" for t in TRANSFERS.get(source[0], ()))
        + ", or pass --model-dir of a run trained on the target dataset."
    )


def check_run_inputs(cfg: CfgNode) -> None:
    """The checks a run makes first, before it writes anything or loads CLIP: the trainer and
    the dataset are registered, and their classes' ``check_inputs(cfg)`` pass (the dataset's
    layout under DATASET.ROOT, the backbone's weights on this machine). A sweep's dry run makes
    the same checks."""
    from dassl.data.datasets import DATASET_REGISTRY  # imports torch, as the engine does

    for registry, name in (
        (TRAINER_REGISTRY, cfg.TRAINER.NAME),
        (DATASET_REGISTRY, cfg.DATASET.NAME),
    ):
        check = getattr(registry.get(name), "check_inputs", None)
        if check is not None:
            check(cfg)


def holds_finished_run(status: RunStatus) -> bool:
    """Whether the folder holds this config's run and its result (``result.json``, or for
    upstream runs a complete test result in the log): what --skip-finished and the grid skip."""
    return status.has_record and holds_result(status.output_dir)


def untrained_error(cfg: CfgNode) -> ConfigError:
    """An evaluation of a method that learns weights needs the trained run to load them from."""
    return ConfigError(
        f"--eval-only without --model-dir would evaluate {cfg.TRAINER.NAME}'s untrained "
        "weights. Fix: pass --model-dir with the OUTPUT_DIR of a trained run."
    )
