#!/usr/bin/env bash
# Train KgCoOp on one dataset and shot count, once per seed (SEEDS, default "1 2 3").
set -euo pipefail
source "$(dirname "$0")/../common.sh"

usage_if_short 4 $# "Usage: bash scripts/kgcoop/main.sh DATASET CONFIG SHOTS W [KEY VALUE ...]

  DATASET    a file name in configs/datasets/ without .yaml (caltech101, imagenet, ...)
  CONFIG     a file name in configs/trainers/KgCoOp/ without .yaml (rn50_ep100, vit_b16_ep100_ctxv1)
  SHOTS      training images per class (1, 2, 4, 8, 16)
  W          weight of the distance to the hand-written prompts (upstream's runs: 8.0)
  KEY VALUE  extra config overrides passed to train.py

Outputs go to OUTPUT_ROOT/DATASET/KgCoOp/CONFIG_SHOTSshots/wW/seedN; a seed whose folder already
holds a test result is skipped. OUTPUT_ROOT defaults to output.
Data root: DATA (now: $DATA)."

DATASET=$1
CFG=$2
SHOTS=$3
W=$4
shift 4

require_inputs "$DATASET" KgCoOp "$CFG"

train_each_seed "$DATASET/KgCoOp/${CFG}_${SHOTS}shots/w$W" KgCoOp "$DATASET" \
    "configs/trainers/KgCoOp/$CFG.yaml" \
    TRAINER.KGCOOP.W "$W" \
    DATASET.NUM_SHOTS "$SHOTS" \
    "$@"
