#!/usr/bin/env bash
# Train CoCoOp on one dataset and shot count, once per seed (SEEDS, default "1 2 3"): that part of
# the grid configs/grids/cocoop.yaml.
set -euo pipefail
source "$(dirname "$0")/../common.sh"

usage_if_short 3 $# "Usage: bash scripts/cocoop/main.sh DATASET CONFIG SHOTS [KEY VALUE ...]

  DATASET    a file name in configs/datasets/ without .yaml (caltech101, imagenet, ...)
  CONFIG     a file name in configs/trainers/CoCoOp/ without .yaml (vit_b16_c4_ep10_batch1_ctxv1,
             upstream's recipe; vit_b16_c16_ep10_batch1, ...)
  SHOTS      training images per class (1, 2, 4, 8, 16)
  KEY VALUE  extra config overrides passed to train.py

Outputs go to OUTPUT_ROOT/DATASET/CoCoOp/CONFIG_SHOTSshots/seedN; a seed whose folder already
holds a test result is skipped. OUTPUT_ROOT defaults to output.
Data root: DATA (now: $DATA)."

DATASET=$1
CFG=$2
SHOTS=$3
shift 3

require_inputs "$DATASET" CoCoOp "$CFG"

train_each_seed "$DATASET/CoCoOp/${CFG}_${SHOTS}shots" CoCoOp "$DATASET" \
    "configs/trainers/CoCoOp/$CFG.yaml" \
    DATASET.NUM_SHOTS "$SHOTS" \
    "$@"
