#!/usr/bin/env bash
# Domain generalisation: evaluate TaskRes models trained on ImageNet on ImageNet-V2, -Sketch, -A
# and -R (eval-only; ImageNet-A and -R use the 200 classes they share with ImageNet).
set -euo pipefail
source "$(dirname "$0")/../common.sh"

usage_if_short 1 $# "Usage: bash scripts/taskres/test_dg.sh MODEL_DIR [OUTPUT_DIR] [CONFIG] [SCALE] [EPOCH]

  MODEL_DIR    the ImageNet training output holding seedN/ folders, e.g. from
                 bash scripts/taskres/main.sh imagenet generalization_rn50 none 16 0.5
               -> output/FINAL/debug/imagenet/generalization_rn50_16shots
  OUTPUT_DIR   where the logs go, one folder per target dataset (default OUTPUT_ROOT/dg/CONFIG,
               OUTPUT_ROOT defaulting to output)
  CONFIG       TaskRes config the model was trained with (default generalization_rn50)
  SCALE        residual scale alpha used in training (default 0.5)
  EPOCH        checkpoint epoch, or 'best' (default: OPTIM.MAX_EPOCH of CONFIG)

Summarise with: python tools/parse_test_res.py OUTPUT_DIR --table"

MODELDIR=$1
CFG=${3:-generalization_rn50}
OUTDIR=${2:-${OUTPUT_ROOT:-output}/dg/$CFG}
SCALE=${4:-0.5}
EPOCH=${5:-}

for TARGET in imagenetv2 imagenet_sketch imagenet_a imagenet_r; do
    bash scripts/taskres/eval.sh "$TARGET" "$CFG" "$OUTDIR/$TARGET" "$MODELDIR" "$SCALE" ${EPOCH:+"$EPOCH"}
done
