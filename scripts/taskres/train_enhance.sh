#!/usr/bin/env bash
# Enhanced TaskRes (TaskRes*: base = a tuned text projection) on the 11 few-shot benchmarks x
# 1/2/4/8/16 shots x SEEDS: the grid configs/grids/taskres_enhanced.yaml, run by python -m tools.sweep.
# BASE=built (the default) first builds the base of every (dataset, shots, seed) on that seed's
# few-shot subset (TextProjectionTuning), then runs TaskRes* on it; outputs go to
# output/FINAL/enhanced_base/... and output/FINAL/enhanced_built/<dataset>/<config>_<shots>shots/seed<N>.
# BASE=released (or STRONG_BASE_DIR set) uses the enhanced bases released with TaskRes (RN50 only),
# laid out as STRONG_BASE_DIR/<DATASET.NAME>/rn50_<shots>shots/model.pth.tar (default
# STRONG_BASE_DIR: strong_base); outputs: output/FINAL/enhanced/<dataset>/<config>_<shots>shots/seed<N>.
# Narrow it with DATASETS="caltech101 dtd" and/or SHOT_LIST="1 16"; DRY_RUN=1 lists the runs.
# Arguments: grid command options (see python -m tools.sweep --help), then KEY VALUE config
# overrides passed to every run.
set -euo pipefail
source "$(dirname "$0")/../common.sh"

BASE=${BASE:-${STRONG_BASE_DIR:+released}}
run_sweep configs/grids/taskres_enhanced.yaml --var "base=${BASE:-built}" \
    ${STRONG_BASE_DIR:+--var "strong_base_dir=$STRONG_BASE_DIR"} "$@"
