#!/usr/bin/env bash
# Linear probe on frozen CLIP features (CoOp's lpclip protocol) for one dataset and shot count,
# once per seed (SEEDS, default "1 2 3").
set -euo pipefail
source "$(dirname "$0")/../common.sh"

usage_if_short 3 $# "Usage: bash scripts/linear_probe/main.sh DATASET CONFIG SHOTS [KEY VALUE ...]

  DATASET    a file name in configs/datasets/ without .yaml (caltech101, imagenet, ...)
  CONFIG     a file name in configs/trainers/CoOp/ without .yaml: rn50, rn101, vit_b32 or vit_b16
             (it picks the backbone and the test-time input pipeline)
  SHOTS      training images per class (1, 2, 4, 8, 16)
  KEY VALUE  extra config overrides passed to train.py

Outputs go to OUTPUT_ROOT/DATASET/LinearProbeCLIP/CONFIG_SHOTSshots/seedN; a seed whose folder
already holds a test result is skipped. OUTPUT_ROOT defaults to output.
Data root: DATA (now: $DATA)."

DATASET=$1
CFG=$2
SHOTS=$3
shift 3

require_inputs "$DATASET" CoOp "$CFG"

select_on_test_for "$DATASET"

train_each_seed "$DATASET/LinearProbeCLIP/${CFG}_${SHOTS}shots" LinearProbeCLIP "$DATASET" \
    "configs/trainers/CoOp/$CFG.yaml" \
    DATASET.NUM_SHOTS "$SHOTS" \
    ${ON_TEST[@]+"${ON_TEST[@]}"} "$@"
