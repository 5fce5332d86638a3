#!/usr/bin/env bash
# Evaluate CoOp models trained on ImageNet (16 shots, 16 context tokens, shared context, class
# token at the end: the upstream transfer setting) on another dataset, once per seed.
set -euo pipefail
source "$(dirname "$0")/../common.sh"

usage_if_short 2 $# "Usage: bash scripts/coop/eval.sh DATASET CONFIG [MODEL_ROOT] [EPOCH] [KEY VALUE ...]

  DATASET     target dataset: a file name in configs/datasets/ (imagenetv2, imagenet_sketch, ...)
  CONFIG      the CoOp config the model was trained with (e.g. rn50_ep50)
  MODEL_ROOT  training output holding seedN/ (default: the folder scripts/coop/main.sh writes for
              imagenet CONFIG end 16 16 False)
  EPOCH       checkpoint epoch, or 'best' (default: OPTIM.MAX_EPOCH of CONFIG)
  KEY VALUE   extra config overrides passed to train.py

Outputs go to OUTPUT_ROOT/evaluation/CoOp/CONFIG_16shots/nctx16_cscFalse_ctpend/DATASET/seedN
(OUTPUT_ROOT defaults to output).
Data root: DATA (now: $DATA)."

DATASET=$1
CFG=$2
SETTING="${CFG}_16shots/nctx16_cscFalse_ctpend"
OUTPUT_ROOT="${OUTPUT_ROOT:-output}"
MODEL_ROOT=${3:-$OUTPUT_ROOT/imagenet/CoOp/$SETTING}
EPOCH=${4:-}
shift $(( $# < 4 ? $# : 4 ))

require_inputs "$DATASET" CoOp "$CFG"
set_load_epoch CoOp "$CFG" "$EPOCH"

for SEED in $SEEDS; do
    [ -d "$MODEL_ROOT/seed$SEED" ] || die "no trained model at $MODEL_ROOT/seed$SEED" \
        "(train it with: bash scripts/coop/main.sh imagenet $CFG end 16 16 False)."
    DIR="$OUTPUT_ROOT/evaluation/CoOp/$SETTING/$DATASET/seed$SEED"
    train_unless_finished "$DIR" "$SEED" CoOp "$DATASET" "configs/trainers/CoOp/$CFG.yaml" \
        --model-dir "$MODEL_ROOT/seed$SEED" \
        "${LOAD_EPOCH[@]}" \
        --eval-only \
        TRAINER.COOP.N_CTX 16 \
        TRAINER.COOP.CSC False \
        TRAINER.COOP.CLASS_TOKEN_POSITION end \
        "$@"
done
