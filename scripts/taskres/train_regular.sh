#!/usr/bin/env bash
# Regular TaskRes (base = zero-shot text classifier) on the 11 few-shot benchmarks x 1/2/4/8/16 shots
# x SEEDS: the grid configs/grids/taskres_regular.yaml, run by python -m tools.sweep (which skips
# finished runs, resumes unfinished ones and prints a summary and the results table).
# Narrow it with DATASETS="caltech101 dtd" and/or SHOT_LIST="1 16"; DRY_RUN=1 lists the runs.
# Arguments: grid command options (e.g. --workers 2, --launcher slurm --partition gpu; see
# python -m tools.sweep --help), then KEY VALUE config overrides passed to every run.
# Outputs: output/FINAL/debug/<dataset>/<config>_<shots>shots/seed<N>.
set -euo pipefail
source "$(dirname "$0")/../common.sh"

run_sweep configs/grids/taskres_regular.yaml "$@"
