#!/usr/bin/env bash
# Domain generalisation: evaluate TaskRes models trained on ImageNet on ImageNet-V2, -Sketch, -A
# and -R (eval-only; ImageNet-A and -R use the 200 classes they share with ImageNet).
set -euo pipefail
source "$(dirname "$0")/../common.sh"

usage_if_short 1 $# "Usage: bash scripts/taskres/test_dg.sh MODEL_DIR [OUTPUT_DIR] [CONFIG] [EPOCH] [KEY VALUE ...]

  Optional arguments may be left out: the first config key starts the KEY VALUE overrides.

  MODEL_DIR    the ImageNet training output holding seedN/ folders, e.g. from
                 bash scripts/taskres/main.sh imagenet generalization_rn50 none 16 0.5
               -> output/FINAL/debug/imagenet/generalization_rn50_16shots
  OUTPUT_DIR   where the logs go, one folder per target dataset (default OUTPUT_ROOT/dg/CONFIG,
               OUTPUT_ROOT defaulting to output)
  CONFIG       TaskRes config for data loading (default generalization_rn50); alpha and the
               other TaskRes keys come from each trained run's config.yaml
  EPOCH        checkpoint epoch, 'best' or 'last' (default: the model the training run tested)
  KEY VALUE    extra config overrides passed to train.py

Summarise with: python tools/parse_test_res.py output --table (a folder holding both OUTPUT_DIR
and MODEL_DIR, so the generalisation table has its ImageNet column too)"

# Optional positionals stop at the first config key (the start of the KEY VALUE overrides).
MODELDIR=$1
shift
OUTDIR="" CFG=generalization_rn50
if [ $# -gt 0 ] && ! is_config_key "$1"; then OUTDIR=$1; shift; fi
if [ $# -gt 0 ] && ! is_config_key "$1"; then CFG=$1; shift; fi
OUTDIR=${OUTDIR:-${OUTPUT_ROOT:-output}/dg/$CFG}
take_epoch "$@"
shift "$TAKEN"

FIX="Train them with scripts/taskres/main.sh imagenet $CFG none 16 0.5, or set SEEDS to the \
seeds you have."
split_trained "$MODELDIR" "$FIX"

for TARGET in imagenetv2 imagenet_sketch imagenet_a imagenet_r; do
    SEEDS="$TRAINED" bash scripts/taskres/eval.sh "$TARGET" "$CFG" "$OUTDIR/$TARGET" "$MODELDIR" \
        "$EPOCH" "$@"
done
report_untrained "$FIX"
