#!/usr/bin/env bash
# LP++ (a linear probe blending visual prototypes with the text embeddings, step sizes derived from
# the train features) for one dataset and shot count, once per seed (SEEDS, default "1 2 3").
set -euo pipefail
source "$(dirname "$0")/../common.sh"

usage_if_short 3 $# "Usage: bash scripts/lp_plus_plus/main.sh DATASET CONFIG SHOTS [KEY VALUE ...]

  DATASET    a file name in configs/datasets/ without .yaml (caltech101, imagenet, ...)
  CONFIG     a file name in configs/trainers/LPPlusPlus/ without .yaml: rn50 or vit_b16
  SHOTS      training images per class (1, 2, 4, 8, 16)
  KEY VALUE  extra config overrides passed to train.py

Outputs go to OUTPUT_ROOT/DATASET/LPPlusPlus/CONFIG_SHOTSshots/seedN; a seed whose folder already
holds a test result is skipped. OUTPUT_ROOT defaults to output.
Data root: DATA (now: $DATA)."

DATASET=$1
CFG=$2
SHOTS=$3
shift 3

require_inputs "$DATASET" LPPlusPlus "$CFG"

select_on_test_for "$DATASET"

train_each_seed "$DATASET/LPPlusPlus/${CFG}_${SHOTS}shots" LPPlusPlus "$DATASET" \
    "configs/trainers/LPPlusPlus/$CFG.yaml" \
    DATASET.NUM_SHOTS "$SHOTS" \
    ${ON_TEST[@]+"${ON_TEST[@]}"} "$@"
