#!/usr/bin/env bash
# Evaluate CoOp models trained on ImageNet (the upstream transfer setting: 16 shots, 16 context
# tokens, shared context, class token at the end) on another dataset, once per seed.
set -euo pipefail
source "$(dirname "$0")/../common.sh"

usage_if_short 2 $# "Usage: bash scripts/coop/eval.sh DATASET CONFIG [MODEL_ROOT] [EPOCH] [KEY VALUE ...]

  Optional arguments may be left out: the first config key starts the KEY VALUE overrides.

  DATASET     target dataset: a file name in configs/datasets/ (imagenetv2, imagenet_sketch, ...)
  CONFIG      a CoOp config for data loading (e.g. rn50_ep50); the backbone and the CoOp keys
              (N_CTX, CSC, class-token position) come from each trained run's config.yaml
  MODEL_ROOT  training output holding seedN/ (default: the folder scripts/coop/main.sh writes for
              imagenet CONFIG end 16 16 False)
  EPOCH       checkpoint epoch, 'best' or 'last' (default: the model the training run tested)
  KEY VALUE   extra config overrides passed to train.py

Outputs go to OUTPUT_ROOT/evaluation/CoOp/<last two parts of MODEL_ROOT>/DATASET/seedN
(OUTPUT_ROOT defaults to output).
Data root: DATA (now: $DATA)."

DATASET=$1
CFG=$2
shift 2
OUTPUT_ROOT="${OUTPUT_ROOT:-output}"
MODEL_ROOT=$OUTPUT_ROOT/imagenet/CoOp/${CFG}_16shots/nctx16_cscFalse_ctpend
if [ $# -gt 0 ] && ! is_config_key "$1"; then
    [ -z "$1" ] || MODEL_ROOT=$1
    shift
fi
take_epoch "$@"
shift "$TAKEN"
MODEL_ROOT=${MODEL_ROOT%/}
SETTING="$(basename "$(dirname "$MODEL_ROOT")")/$(basename "$MODEL_ROOT")"

require_inputs "$DATASET" CoOp "$CFG"
FIX="Train them with: bash scripts/coop/main.sh imagenet $CFG end 16 16 False (or set SEEDS to \
the seeds you have)."
split_trained "$MODEL_ROOT" "$FIX"

for SEED in $TRAINED; do
    DIR="$OUTPUT_ROOT/evaluation/CoOp/$SETTING/$DATASET/seed$SEED"
    train_unless_finished "$DIR" "$SEED" CoOp "$DATASET" "configs/trainers/CoOp/$CFG.yaml" \
        --model-dir "$MODEL_ROOT/seed$SEED" \
        ${EPOCH:+--load-epoch "$EPOCH"} \
        --eval-only \
        "$@"
done
report_untrained "$FIX"
