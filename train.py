"""Train or evaluate a method: ``python train.py --root DATA --trainer NAME ... [KEY VALUE]``.

The command line over ``dassl.config.run_config``, which assembles the config (upstream CoOp's merge
order, the trained run's keys for ``--eval-only --model-dir D``, the transfer checks). Importing
``datasets`` and ``trainers`` registers every dataset and method.

A run is its frozen config (``dassl.config.run_identity``): a folder holding a run with another
config is refused untouched, unless that run never finished an epoch (its record is kept aside).
One process at a time holds a run folder (``dassl.utils.run_lock``). The config is written to
``OUTPUT_DIR`` before anything else; the engine writes the result record when it tests, which is
what ``--skip-finished`` calls finished.
"""

import argparse
import sys
from collections.abc import Sequence

import torch
from yacs.config import CfgNode

import datasets  # noqa: F401  (registers the datasets and their config keys)
import trainers  # noqa: F401  (registers the trainers and their config keys)
from dassl.config import extend_cfg, get_cfg_default
from dassl.config.run_config import (
    ConfigError,
    build_parser,
    check_run_inputs,
    holds_finished_run,
    setup_cfg,
    untrained_error,
)
from dassl.config.run_identity import (
    BEST_EPOCH,
    Digests,
    RunConflictError,
    check_output_dir,
    content_digests,
    read_recorded_digests,
    same_content,
    set_aside_failed_start,
    write_inputs_record,
    write_run_record,
)
from dassl.engine import TRAINER_REGISTRY, build_trainer
from dassl.evaluation.result_record import log_files, read_search_report
from dassl.utils import collect_env_info, set_random_seed, setup_logger
from dassl.utils.run_lock import hold_run_folder
from dassl.utils.user_error import UserError

__all__ = ["ConfigError", "build_parser", "cli", "main", "setup_cfg"]


def print_args(args: argparse.Namespace, cfg: CfgNode) -> None:
    print("***************")
    print("** Arguments **")
    print("***************")
    for key in sorted(vars(args)):
        print(f"{key}: {vars(args)[key]}")
    print("************")
    print("** Config **")
    print("************")
    print(cfg)


def check_built_inputs(cfg: CfgNode, recorded: Digests) -> Digests:
    """The inputs' digests once the trainer built them (a few-shot subset drawn now has one),
    refused when they differ from what the folder's run recorded."""
    digests = content_digests(cfg)
    changed = [k for k, v in digests.items() if same_content(recorded.get(k), v) is False]
    if changed:
        raise RunConflictError(
            f'"{cfg.OUTPUT_DIR}" holds a run whose inputs held other content: '
            + ", ".join(f"{k} {recorded[k]} then, {digests[k]} now" for k in changed)
            + ". Fix: point the run at the data and weights it was trained with, or delete that "
            "folder to replace the run."
        )
    return digests


def main(args: argparse.Namespace, argv: Sequence[str] | None = None) -> None:
    notes: list[str] = []
    cfg = setup_cfg(args, notes)
    check_run_inputs(cfg)
    defaults = extend_cfg(get_cfg_default())
    digests = content_digests(cfg)
    status = check_output_dir(cfg, defaults, digests)
    if args.skip_finished and holds_finished_run(status):
        print(
            f"Skipping {cfg.OUTPUT_DIR}: it already holds a finished run with this config "
            "(delete the folder to run it again)."
        )
        return
    with hold_run_folder(cfg.OUTPUT_DIR):
        # Again, now that no other process can change the folder.
        status = check_output_dir(cfg, defaults, digests)
        if status.conflicting:
            notes.append(set_aside_failed_start(status))
        run(args, cfg, notes, ["train.py", *(sys.argv[1:] if argv is None else argv)])


def run(args: argparse.Namespace, cfg: CfgNode, notes: list[str], argv: list[str]) -> None:
    """Train or evaluate in a folder this process holds."""
    recorded = read_recorded_digests(cfg.OUTPUT_DIR)
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    earlier_logs = [log.name for log in log_files(cfg.OUTPUT_DIR)]
    setup_logger(cfg.OUTPUT_DIR)
    write_run_record(cfg, argv)
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True

    print_args(args, cfg)
    for note in notes:
        print(note)
    if earlier_logs:
        print(
            f"Earlier logs of this folder, oldest first: {', '.join(earlier_logs)}. This log "
            "holds only this process's part; a resumed run's whole output is those, then this."
        )
    print("Collecting env info ...")
    print(f"** System info **\n{collect_env_info()}\n")
    if not args.eval_only and cfg.DATASET.NUM_SHOTS < 1:
        print(
            f"Note: DATASET.NUM_SHOTS is {cfg.DATASET.NUM_SHOTS}, so the full train set is "
            "used (few-shot runs set it to 1, 2, 4, 8 or 16)"
        )

    # CLIP methods say whether they learn weights (MODEL_NAME) before any data or model is built;
    # other trainers are asked once built.
    unloaded = args.eval_only and not args.model_dir
    if unloaded and getattr(TRAINER_REGISTRY.get(cfg.TRAINER.NAME), "MODEL_NAME", None):
        raise untrained_error(cfg)
    # the sweep's search of this model's hyperparameters on val, read before any work
    search = read_search_report(cfg.RUN.SEARCH_REPORT) if cfg.RUN.SEARCH_REPORT else None
    trainer = build_trainer(cfg)
    write_inputs_record(cfg.OUTPUT_DIR, check_built_inputs(cfg, recorded))
    if args.eval_only:
        if unloaded and trainer.get_model_names():
            raise untrained_error(cfg)
        epoch = None if cfg.RUN.LOAD_EPOCH == BEST_EPOCH else cfg.RUN.LOAD_EPOCH
        trainer.load_model(args.model_dir, epoch=epoch)
        if args.model_dir:
            trainer.evaluated_model = trainer.saved_model(args.model_dir, epoch)
        if search is not None:
            trainer.record_hyperparameter_search(**search)
        trainer.test()
        return
    if not args.no_train:
        trainer.train()


def cli(argv: Sequence[str] | None = None) -> None:
    """The command: a mistake in the command, config, data or weights exits with its message
    alone (``--traceback`` shows where it was raised)."""
    args = build_parser().parse_args(argv)
    try:
        main(args, argv)
    except UserError as err:
        if args.traceback:
            raise
        sys.exit(f"ERROR: {err}")


if __name__ == "__main__":
    cli()
