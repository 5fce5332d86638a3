#!/usr/bin/env bash
# CLAP (or ZS-LP) for one dataset and shot count, once per seed (SEEDS, default "1 2 3").
set -euo pipefail
source "$(dirname "$0")/../common.sh"

usage_if_short 3 $# "Usage: bash scripts/clap/main.sh DATASET CONFIG SHOTS [CONSTRAINT] [KEY VALUE ...]

  DATASET     a file name in configs/datasets/ without .yaml (caltech101, imagenet, ...)
  CONFIG      a file name in configs/trainers/CLAP/ without .yaml: SGD_lr1e-1_B256_ep300 (RN50)
              or SGD_lr1e-1_B256_ep300_ViT16
  SHOTS       training images per class (1, 2, 4, 8, 16)
  CONSTRAINT  l2 (CLAP, the default), none (ZS-LP), or another of upstream's values, e.g.
              l2-adaptative (TRAINER.CLAP.CONSTRAINT)
  KEY VALUE   extra config overrides passed to train.py

Outputs go to OUTPUT_ROOT/DATASET/CLAP/CONFIG_ZSInit_CONSTRAINTConstraint_SHOTSshots/seedN; a seed
whose folder already holds a test result is skipped. OUTPUT_ROOT defaults to output.
Data root: DATA (now: $DATA)."

DATASET=$1
CFG=$2
SHOTS=$3
shift 3
CONSTRAINT=l2
if [ $# -gt 0 ] && ! is_config_key "$1"; then
    CONSTRAINT=$1
    shift
fi

require_inputs "$DATASET" CLAP "$CFG"

train_each_seed "$DATASET/CLAP/${CFG}_ZSInit_${CONSTRAINT}Constraint_${SHOTS}shots" CLAP "$DATASET" \
    "configs/trainers/CLAP/$CFG.yaml" \
    DATASET.NUM_SHOTS "$SHOTS" \
    TRAINER.CLAP.CONSTRAINT "$CONSTRAINT" \
    "$@"
