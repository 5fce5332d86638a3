#!/usr/bin/env bash
# Train CLIP-Adapter on one dataset and shot count, once per seed (SEEDS, default "1 2 3").
set -euo pipefail
source "$(dirname "$0")/../common.sh"

usage_if_short 3 $# "Usage: bash scripts/clip_adapter/main.sh DATASET CONFIG SHOTS [RATIO] [KEY VALUE ...]

  DATASET    a file name in configs/datasets/ without .yaml (caltech101, imagenet, ...)
  CONFIG     a file name in configs/trainers/CLIP_Adapter/ without .yaml (rn50, vit_b16, ...)
  SHOTS      training images per class (1, 2, 4, 8, 16)
  RATIO      residual ratio mixing adapted and original image features (default 0.2)
  KEY VALUE  extra config overrides passed to train.py

Outputs go to OUTPUT_ROOT/DATASET/CLIP_Adapter/CONFIG_SHOTSshots/ratioRATIO/seedN; a seed whose folder
already holds a test result is skipped. OUTPUT_ROOT defaults to output.
Data root: DATA (now: $DATA)."

DATASET=$1
CFG=$2
SHOTS=$3
RATIO=${4:-0.2}
shift $(( $# < 4 ? $# : 4 ))

require_inputs "$DATASET" CLIP_Adapter "$CFG"

train_each_seed "$DATASET/CLIP_Adapter/${CFG}_${SHOTS}shots/ratio$RATIO" CLIP_Adapter "$DATASET" \
    "configs/trainers/CLIP_Adapter/$CFG.yaml" \
    DATASET.NUM_SHOTS "$SHOTS" \
    TRAINER.CLIP_ADAPTER.RATIO "$RATIO" \
    "$@"
