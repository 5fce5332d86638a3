#!/usr/bin/env bash
# The built-in demo: zero-shot CLIP, CoOp, a linear probe, CLIP-Adapter and TaskRes end to end on
# CPU, with a tiny random-weight CLIP and a synthetic dataset written on the fly (nothing is
# downloaded).
# Options (see python -m tools.demo --help): --output DIR (default demo_output), --epochs, --shots.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-$(command -v python || command -v python3)}" -m tools.demo "$@"
