#!/usr/bin/env bash
# Train CoOp on one dataset and shot count, once per seed (SEEDS, default "1 2 3").
set -euo pipefail
source "$(dirname "$0")/../common.sh"

usage_if_short 6 $# "Usage: bash scripts/coop/main.sh DATASET CONFIG CTP NCTX SHOTS CSC [KEY VALUE ...]

  DATASET    a file name in configs/datasets/ without .yaml (caltech101, imagenet, ...)
  CONFIG     a file name in configs/trainers/CoOp/ without .yaml (rn50, rn50_ep50, vit_b16, ...)
  CTP        class token position: end, middle or front
  NCTX       number of context tokens (e.g. 16)
  SHOTS      training images per class (1, 2, 4, 8, 16)
  CSC        class-specific context: False or True
  KEY VALUE  extra config overrides passed to train.py

Outputs go to OUTPUT_ROOT/DATASET/CoOp/CONFIG_SHOTSshots/nctxNCTX_cscCSC_ctpCTP/seedN; a seed whose
folder already holds a test result is skipped. OUTPUT_ROOT defaults to output.
Data root: DATA (now: $DATA)."

DATASET=$1
CFG=$2
CTP=$3
NCTX=$4
SHOTS=$5
CSC=$6
shift 6

require_inputs "$DATASET" CoOp "$CFG"

train_each_seed "$DATASET/CoOp/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp$CTP" CoOp "$DATASET" \
    "configs/trainers/CoOp/$CFG.yaml" \
    TRAINER.COOP.N_CTX "$NCTX" \
    TRAINER.COOP.CSC "$CSC" \
    TRAINER.COOP.CLASS_TOKEN_POSITION "$CTP" \
    DATASET.NUM_SHOTS "$SHOTS" \
    "$@"
