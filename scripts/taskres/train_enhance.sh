#!/usr/bin/env bash
# Enhanced TaskRes (base = a tuned classifier) on the 11 few-shot benchmarks x 1/2/4/8/16 shots.
# Needs the enhanced bases released with TaskRes, laid out as
#   STRONG_BASE_DIR/<DATASET.NAME>/rn50_<shots>shots/model.pth.tar   (default STRONG_BASE_DIR: strong_base)
# Narrow it with DATASETS="caltech101 dtd" and/or SHOT_LIST="1 16"; DRY_RUN=1 lists the runs.
# Trailing KEY VALUE arguments are config overrides passed to every run.
# Outputs: output/FINAL/enhanced/<dataset>/<config>_<shots>shots/seed<N>.
set -euo pipefail
source "$(dirname "$0")/../common.sh"
source scripts/taskres/grid.sh

STRONG_BASE_DIR="${STRONG_BASE_DIR:-strong_base}"

enhanced_base() {
    echo "$STRONG_BASE_DIR/$(dataset_name "$1")/rn50_${2}shots/model.pth.tar"
}

run_grid enhanced_base "$@"
