#!/usr/bin/env bash
# Train TaskRes on one dataset and shot count, once per seed (SEEDS, default "1 2 3").
set -euo pipefail
source "$(dirname "$0")/../common.sh"

usage_if_short 5 $# "Usage: bash scripts/taskres/main.sh DATASET CONFIG ENHANCED_BASE SHOTS SCALE [KEY VALUE ...]

  DATASET        a file name in configs/datasets/ without .yaml (caltech101, imagenet, ...)
  CONFIG         a file name in configs/trainers/TaskRes/ without .yaml (adam_lr2e-3_B256_ep100, ...)
  ENHANCED_BASE  'none' for the regular base, or the enhanced-base checkpoint file
                 (e.g. strong_base/Caltech101/rn50_16shots/model.pth.tar)
  SHOTS          training images per class (1, 2, 4, 8, 16)
  SCALE          residual scale alpha (TRAINER.TaskRes.RESIDUAL_SCALE)
  KEY VALUE      extra config overrides passed to train.py (e.g. DATALOADER.NUM_WORKERS 2)

Outputs go to OUTPUT_ROOT/FINAL/debug/DATASET/CONFIG_SHOTSshots/seedN (regular base) or
OUTPUT_ROOT/FINAL/enhanced/... (enhanced base); OUTPUT_ROOT defaults to output.
A seed whose folder already holds a test result is skipped. Data root: DATA (now: $DATA)."

DATASET=$1
CFG=$2
ENHANCE=$3
SHOTS=$4
SCALE=$5
shift 5

require_inputs "$DATASET" TaskRes "$CFG"
BASE_KIND=debug
if [ "$ENHANCE" != none ]; then
    [ -f "$ENHANCE" ] || die "enhanced base '$ENHANCE' not found. Download the enhanced bases" \
        "(see the TaskRes README) into strong_base/ at the repository root, or pass 'none'."
    BASE_KIND=enhanced
fi

train_each_seed "FINAL/$BASE_KIND/$DATASET/${CFG}_${SHOTS}shots" TaskRes "$DATASET" \
    "configs/trainers/TaskRes/$CFG.yaml" \
    --enhanced-base "$ENHANCE" \
    DATASET.NUM_SHOTS "$SHOTS" \
    TRAINER.TaskRes.RESIDUAL_SCALE "$SCALE" \
    "$@"
