#!/usr/bin/env bash
# Train ProGrad on one dataset and shot count, once per seed (SEEDS, default "1 2 3").
set -euo pipefail
source "$(dirname "$0")/../common.sh"

usage_if_short 4 $# "Usage: bash scripts/prograd/main.sh DATASET CONFIG SHOTS LAMBDA [KEY VALUE ...]

  DATASET    a file name in configs/datasets/ without .yaml (caltech101, imagenet, ...)
  CONFIG     a file name in configs/trainers/ProGrad/ without .yaml (rn50_ep50, rn50_ep100, rn50)
  SHOTS      training images per class (1, 2, 4, 8, 16)
  LAMBDA     share of the conflicting gradient component removed (upstream: 1.0; 0.8 for 8 and
             16 shots on Flowers, DTD and EuroSAT)
  KEY VALUE  extra config overrides passed to train.py

Outputs go to OUTPUT_ROOT/DATASET/ProGrad/CONFIG_SHOTSshots/lambdaLAMBDA/seedN; a seed whose folder
already holds a test result is skipped. OUTPUT_ROOT defaults to output.
Data root: DATA (now: $DATA)."

DATASET=$1
CFG=$2
SHOTS=$3
LAMBDA=$4
shift 4

require_inputs "$DATASET" ProGrad "$CFG"

train_each_seed "$DATASET/ProGrad/${CFG}_${SHOTS}shots/lambda$LAMBDA" ProGrad "$DATASET" \
    "configs/trainers/ProGrad/$CFG.yaml" \
    TRAINER.PROGRAD.LAMBDA "$LAMBDA" \
    DATASET.NUM_SHOTS "$SHOTS" \
    "$@"
