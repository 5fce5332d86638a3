#!/usr/bin/env bash
# Zero-shot CLIP on one dataset (no training): the baseline TaskRes starts from.
set -euo pipefail
source "$(dirname "$0")/../common.sh"

usage_if_short 2 $# "Usage: bash scripts/taskres/zeroshot.sh DATASET CONFIG [TRAINER] [KEY VALUE ...]

  DATASET   a file name in configs/datasets/ without .yaml (caltech101, imagenet, ...)
  CONFIG    a file name in configs/trainers/CoOp/ without .yaml: rn50, rn101, vit_b32 or vit_b16
            (it picks the backbone and the input pipeline)
  TRAINER   ZeroshotCLIP2 (prompt ensemble, the default) or ZeroshotCLIP (one template)
  KEY VALUE extra config overrides passed to train.py

Outputs go to OUTPUT_ROOT/TRAINER/CONFIG/DATASET (OUTPUT_ROOT defaults to output).
Data root: DATA (now: $DATA)."

DATASET=$1
CFG=$2
TRAINER=${3:-ZeroshotCLIP2}
shift $(( $# < 3 ? $# : 3 ))

require_inputs "$DATASET" CoOp "$CFG"

# One run: zero-shot CLIP has no training randomness, so no seed is passed.
train_unless_finished "${OUTPUT_ROOT:-output}/$TRAINER/$CFG/$DATASET" "" "$TRAINER" "$DATASET" \
    "configs/trainers/CoOp/$CFG.yaml" --eval-only "$@"
