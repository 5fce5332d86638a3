"""Train or evaluate a method: ``python train.py --root DATA --trainer NAME ... [KEY VALUE]``.

The config is merged in upstream CoOp's order: defaults (+ keys the imported datasets and trainers
declare) <- dataset config file <- method config file <- command-line flags <- trailing KEY VALUE
pairs. Importing ``datasets`` and ``trainers`` registers every dataset and method.
"""

import argparse

import torch
from yacs.config import CfgNode

import datasets  # noqa: F401  (registers the datasets and their config keys)
import trainers  # noqa: F401  (registers the trainers and their config keys)
from dassl.config import extend_cfg, get_cfg_default
from dassl.engine import build_trainer
from dassl.utils import collect_env_info, set_random_seed, setup_logger


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    parser.add_argument("--trainer", type=str, default="", help="name of trainer")
    parser.add_argument("--backbone", type=str, default="", help="name of backbone")
    parser.add_argument("--head", type=str, default="", help="name of head")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument(
        "--model-dir", type=str, default="", help="load the model from this directory (eval-only)"
    )
    parser.add_argument(
        "--load-epoch", type=int, help="load the checkpoint of this epoch (default: best val)"
    )
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument(
        "--enhanced-base",
        type=str,
        default="none",
        help='TaskRes: path to an enhanced base classifier ("none": the CLIP text classifier)',
    )
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


def setup_cfg(args: argparse.Namespace) -> CfgNode:
    cfg = get_cfg_default()
    extend_cfg(cfg)
    # As upstream TaskRes: the flag sets the default, so config files and opts may override it.
    if "TaskRes" in cfg.TRAINER:
        cfg.TRAINER.TaskRes.ENHANCED_BASE = args.enhanced_base
    if args.dataset_config_file:
        cfg.merge_from_file(args.dataset_config_file)
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    reset_cfg(cfg, args)
    cfg.merge_from_list(args.opts or [])
    cfg.freeze()
    return cfg


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


def main(args: argparse.Namespace) -> None:
    cfg = setup_cfg(args)
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    setup_logger(cfg.OUTPUT_DIR)
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True

    print_args(args, cfg)
    print("Collecting env info ...")
    print(f"** System info **\n{collect_env_info()}\n")

    trainer = build_trainer(cfg)
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
        return
    if not args.no_train:
        trainer.train()


if __name__ == "__main__":
    main(build_parser().parse_args())
