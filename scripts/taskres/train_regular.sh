#!/usr/bin/env bash
# Regular TaskRes (base = zero-shot text classifier) on the 11 few-shot benchmarks x 1/2/4/8/16 shots.
# Narrow it with DATASETS="caltech101 dtd" and/or SHOT_LIST="1 16"; DRY_RUN=1 lists the runs.
# Trailing KEY VALUE arguments are config overrides passed to every run.
# Outputs: output/FINAL/debug/<dataset>/<config>_<shots>shots/seed<N>.
set -euo pipefail
source "$(dirname "$0")/../common.sh"
source scripts/taskres/grid.sh

regular_base() { echo none; }

run_grid regular_base "$@"
