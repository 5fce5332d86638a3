#!/usr/bin/env bash
# Evaluate trained TaskRes models (one per seed) on a dataset, without training.
set -euo pipefail
source "$(dirname "$0")/../common.sh"

usage_if_short 4 $# "Usage: bash scripts/taskres/eval.sh DATASET CONFIG OUTPUT_DIR MODEL_DIR [EPOCH] [KEY VALUE ...]

  Optional arguments may be left out: the first config key starts the KEY VALUE overrides.

  DATASET     a file name in configs/datasets/ without .yaml (e.g. imagenet_sketch)
  CONFIG      a file name in configs/trainers/TaskRes/ without .yaml (e.g. generalization_rn50);
              it sets the data loading; the backbone, input size and TaskRes keys (alpha,
              enhanced base, residual side) come from each trained run's config.yaml
  OUTPUT_DIR  where the evaluation logs go (OUTPUT_DIR/seedN)
  MODEL_DIR   the training output holding seedN/ folders
  EPOCH       checkpoint to load: an epoch number, 'best' (model-best.pth.tar) or 'last'
              (default: the model the training run tested itself)
  KEY VALUE   extra config overrides passed to train.py (they win over the trained config)

Data root: DATA (now: $DATA)."

DATASET=$1
CFG=$2
OUTDIR=$3
MODELDIR=$4
shift 4
take_epoch "$@"
shift "$TAKEN"

require_inputs "$DATASET" TaskRes "$CFG"
FIX="Train them with scripts/taskres/main.sh, or set SEEDS to the seeds you have."
split_trained "$MODELDIR" "$FIX"

for SEED in $TRAINED; do
    train_unless_finished "$OUTDIR/seed$SEED" "$SEED" TaskRes "$DATASET" \
        "configs/trainers/TaskRes/$CFG.yaml" \
        --model-dir "$MODELDIR/seed$SEED" \
        ${EPOCH:+--load-epoch "$EPOCH"} \
        --eval-only \
        "$@"
done
report_untrained "$FIX"
