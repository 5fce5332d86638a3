#!/usr/bin/env bash
# Evaluate trained TaskRes models (one per seed) on a dataset, without training.
set -euo pipefail
source "$(dirname "$0")/../common.sh"

usage_if_short 4 $# "Usage: bash scripts/taskres/eval.sh DATASET CONFIG OUTPUT_DIR MODEL_DIR [SCALE] [EPOCH] [KEY VALUE ...]

  DATASET     a file name in configs/datasets/ without .yaml (e.g. imagenet_sketch)
  CONFIG      a file name in configs/trainers/TaskRes/ without .yaml (e.g. generalization_rn50)
  OUTPUT_DIR  where the evaluation logs go (OUTPUT_DIR/seedN)
  MODEL_DIR   the training output holding seedN/prompt_learner/ checkpoints
  SCALE       residual scale alpha (default 0.5)
  EPOCH       checkpoint to load: an epoch number, or 'best' for model-best.pth.tar
              (default: OPTIM.MAX_EPOCH of CONFIG, i.e. the last checkpoint)
  KEY VALUE   extra config overrides passed to train.py

Data root: DATA (now: $DATA)."

DATASET=$1
CFG=$2
OUTDIR=$3
MODELDIR=$4
SCALE=${5:-0.5}
EPOCH=${6:-}
shift $(( $# < 6 ? $# : 6 ))

require_inputs "$DATASET" TaskRes "$CFG"
set_load_epoch TaskRes "$CFG" "$EPOCH"

for SEED in $SEEDS; do
    [ -d "$MODELDIR/seed$SEED" ] || die "no trained model at $MODELDIR/seed$SEED" \
        "(train one first with scripts/taskres/main.sh, or set SEEDS to the seeds you have)."
    train_unless_finished "$OUTDIR/seed$SEED" "$SEED" TaskRes "$DATASET" \
        "configs/trainers/TaskRes/$CFG.yaml" \
        --model-dir "$MODELDIR/seed$SEED" \
        "${LOAD_EPOCH[@]}" \
        --eval-only \
        TRAINER.TaskRes.RESIDUAL_SCALE "$SCALE" \
        "$@"
done
