#!/usr/bin/env bash
# Tip-Adapter and Tip-Adapter-F on one dataset and shot count, once per seed (SEEDS, default
# "1 2 3"): that part of the grid configs/grids/tip_adapter.yaml, which holds upstream's
# per-dataset settings (search scale, initial alpha, epochs), run by python -m tools.sweep.
set -euo pipefail
source "$(dirname "$0")/../common.sh"

usage_if_short 2 $# "Usage: bash scripts/tip_adapter/main.sh DATASET SHOTS [CONFIG] [KEY VALUE ...]

  DATASET    a file name in configs/datasets/ without .yaml (caltech101, imagenet, ...)
  SHOTS      training images per class (1, 2, 4, 8, 16)
  CONFIG     a file name in configs/trainers/TipAdapter/ without .yaml: rn50 (default) or vit_b16
  KEY VALUE  extra config overrides passed to train.py

Outputs go to OUTPUT_ROOT/DATASET/TipAdapter/CONFIG_SHOTSshots/seedN (training-free) and
OUTPUT_ROOT/DATASET/TipAdapterF/CONFIG_SHOTSshots/seedN; a seed whose folder already holds a test
result is skipped. OUTPUT_ROOT defaults to output. DRY_RUN=1 lists the runs.
Data root: DATA (now: $DATA)."

DATASET=$1
SHOTS=$2
shift 2
CFG=rn50
if [ $# -gt 0 ] && ! is_config_key "$1"; then
    CFG=$1
    shift
fi

require_inputs "$DATASET" TipAdapter "$CFG"

DATASETS=$DATASET SHOT_LIST=$SHOTS run_sweep configs/grids/tip_adapter.yaml \
    --var "backbone=$CFG" "$@"
