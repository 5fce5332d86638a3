#!/usr/bin/env bash
# Base-to-new generalisation on one dataset, once per seed (SEEDS, default "1 2 3"): train on the
# base half of the classes (16 shots), then evaluate that model on the new half; upstream's
# scripts/cocoop/base2new_train.sh and base2new_test.sh in one, as that part of the grid
# configs/grids/base_to_new.yaml.
set -euo pipefail
source "$(dirname "$0")/../common.sh"

usage_if_short 1 $# "Usage: bash scripts/cocoop/base2new.sh DATASET [METHOD] [KEY VALUE ...]

  DATASET    a file name in configs/datasets/ without .yaml (caltech101, imagenet, ...)
  METHOD     CoCoOp (default) or CoOp, each with upstream's base-to-new config
  KEY VALUE  extra config overrides passed to every run

Outputs go to OUTPUT_ROOT/base2new/train_base/DATASET/shots_16/METHOD/CONFIG/seedN (base classes)
and OUTPUT_ROOT/base2new/test_new/... (new classes); finished runs are skipped. OUTPUT_ROOT
defaults to output. DRY_RUN=1 lists the runs.
Data root: DATA (now: $DATA)."

DATASET=$1
shift
METHOD=CoCoOp
if [ $# -gt 0 ] && ! is_config_key "$1"; then
    METHOD=$1
    shift
fi
case "$METHOD" in
    CoCoOp | CoOp) ;;
    *) die "METHOD is '$METHOD'; choose CoCoOp or CoOp." ;;
esac

require_dataset_config "$DATASET"
require_data_root

DATASETS=$DATASET run_sweep configs/grids/base_to_new.yaml --var "method=$METHOD" "$@"
