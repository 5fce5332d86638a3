#!/usr/bin/env bash
# CLIP-LoRA on one dataset and shot count, once per seed (SEEDS, default "1 2 3"): that part of
# the grid configs/grids/clip_lora.yaml (upstream's fixed settings), run by python -m tools.sweep.
set -euo pipefail
source "$(dirname "$0")/../common.sh"

usage_if_short 2 $# "Usage: bash scripts/clip_lora/main.sh DATASET SHOTS [CONFIG] [KEY VALUE ...]

  DATASET    a file name in configs/datasets/ without .yaml (caltech101, imagenet, ...)
  SHOTS      training images per class (1, 2, 4, 8, 16): 500 x SHOTS iterations
  CONFIG     a file name in configs/trainers/CLIP_LoRA/ without .yaml: vit_b16 (default)
  KEY VALUE  extra config overrides passed to train.py

Outputs go to OUTPUT_ROOT/DATASET/CLIP_LoRA/CONFIG_SHOTSshots/seedN; a seed whose folder already
holds a test result is skipped. OUTPUT_ROOT defaults to output. DRY_RUN=1 lists the runs.
Data root: DATA (now: $DATA)."

DATASET=$1
SHOTS=$2
shift 2
CFG=vit_b16
if [ $# -gt 0 ] && ! is_config_key "$1"; then
    CFG=$1
    shift
fi

require_inputs "$DATASET" CLIP_LoRA "$CFG"

DATASETS=$DATASET SHOT_LIST=$SHOTS run_sweep configs/grids/clip_lora.yaml \
    --var "backbone=$CFG" "$@"
