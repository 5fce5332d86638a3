#!/usr/bin/env bash
# Enhanced TaskRes (base = a tuned classifier) on the 11 few-shot benchmarks x 1/2/4/8/16 shots
# x SEEDS: the grid configs/grids/taskres_enhanced.yaml, run by python -m tools.sweep.
# Needs the enhanced bases released with TaskRes, laid out as
#   STRONG_BASE_DIR/<DATASET.NAME>/rn50_<shots>shots/model.pth.tar   (default STRONG_BASE_DIR: strong_base)
# Narrow it with DATASETS="caltech101 dtd" and/or SHOT_LIST="1 16"; DRY_RUN=1 lists the runs.
# Arguments: grid command options (see python -m tools.sweep --help), then KEY VALUE config
# overrides passed to every run.
# Outputs: output/FINAL/enhanced/<dataset>/<config>_<shots>shots/seed<N>.
set -euo pipefail
source "$(dirname "$0")/../common.sh"

run_sweep configs/grids/taskres_enhanced.yaml \
    ${STRONG_BASE_DIR:+--var "strong_base_dir=$STRONG_BASE_DIR"} "$@"
