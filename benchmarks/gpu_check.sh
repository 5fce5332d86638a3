#!/usr/bin/env bash
# The prepared GPU check: one command for a lent GPU machine (no network, Python 3.12 with torch),
# proven on the CPU with tiny sizes (--cpu; tests/tools/test_gpu_check.py runs it).
#   1. set-up: install the carried wheels (.whl/, made by benchmarks/gpu_wheels.sh) into a site
#      folder, the test oracle into .oracle if it was not carried, and report what is there
#   2. the tests that touch devices, precisions and training, CUDA-marked ones included
#      (--cpu: collected only; on the CPU the CUDA-marked ones skip and the rest run in CI)
#   3. benchmarks/gpu_check.py: fp16/amp against fp32, finite long fp16 runs, where an epoch's
#      time goes, peak memory at 1000 classes
# Every figure and PASS/FAIL line goes to OUTDIR/gpu_check.txt; the trainers' output to
# gpu_check.log, the tests' to pytest.txt. Exit status 0 when every check passed.
#
#   bash benchmarks/gpu_check.sh [--cpu] [OUTDIR]      (OUTDIR: default $OUT, else output/gpu_check)
set -uo pipefail
cd "$(dirname "$0")/.."
cpu=()
if [[ ${1:-} == --cpu ]]; then
    cpu=(--cpu)
    shift
fi
out=${1:-${OUT:-output/gpu_check}}
wheels=${GPU_CHECK_WHEELS:-.whl}
site=${GPU_CHECK_SITE:-/tmp/gpu_check_site}
results=$out/gpu_check.txt
mkdir -p "$out"
rm -f "$results" "$out/gpu_check.log" "$out/pytest.txt"
say() { echo "$*" | tee -a "$results"; }
failed=0
export PYTHONUNBUFFERED=1 PIP_ROOT_USER_ACTION=ignore

# The tests a GPU changes, about 110 s on two busy CPU cores. Every CUDA-marked test lives in the
# first four files (precision training on CUDA, a CUDA run reloaded for eval-only, loading onto
# CUDA in fp16, pinned batches); with CUDA present the rest of those files, and the training and
# method tests, take the paths a GPU user's machine takes (pin_memory, the GradScaler, the
# CPU-fallback test skipping). Left out: the resume, protocol and feature-store tests (~220 s
# here): their runs set USE_CUDA False, so a GPU changes nothing in them.
TESTS=(
    tests/trainers/test_precision.py
    tests/engine/test_trainer_run.py
    tests/clip/test_checkpoints.py
    tests/data/test_data_manager.py
    tests/trainers/test_training.py
    tests/trainers/test_methods.py
)
TESTS_TIMEOUT=${GPU_CHECK_TESTS_TIMEOUT:-150}
CHECK_TIMEOUT=${GPU_CHECK_TIMEOUT:-300}

say "== set-up ($(date -u +%FT%TZ), ${cpu[*]:-GPU} mode)"
if compgen -G "$wheels/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" "$wheels"/*.whl || { say "ERROR set-up: installing $wheels failed"; exit 2; }
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
    say "installed $(ls "$wheels"/*.whl | xargs -n1 basename | tr '\n' ' ')into $site"
else
    say "no wheels in $wheels: using the installed packages"
fi
if ! python3 -c "import pkg_resources" 2>/dev/null && compgen -G "$wheels/fallback/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$wheels"/fallback/*.whl
    say "installed $(ls "$wheels"/fallback/*.whl | xargs -n1 basename) (no pkg_resources here)"
fi
if [[ ! -f .oracle/clip/__init__.py ]] && compgen -G "$wheels/oracle/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target .oracle "$wheels"/oracle/*.whl
    say "installed the test oracle into .oracle"
fi
python3 - <<'EOF' 2>&1 | tee -a "$results" || failed=1
import importlib, platform, subprocess, sys
import torch
sys.path.insert(0, ".")
from tools.openai_clip import load_openai_clip
print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
if torch.cuda.is_available():
    smi = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    print("GPU:", subprocess.run(smi, capture_output=True, text=True).stdout.strip())
missing = []
for name in ("torchvision", "numpy", "PIL", "yacs", "ftfy", "regex", "tqdm", "tabulate",
             "submitit", "open_clip", "timm", "pytest"):
    try:
        print(f"  {name} {getattr(importlib.import_module(name), '__version__', '?')}")
    except Exception as err:
        missing.append(f"{name} ({type(err).__name__}: {err})")
try:
    oracle = load_openai_clip() is not None
except Exception as err:
    oracle, missing = False, [*missing, f"oracle ({type(err).__name__}: {err})"]
print(f"  test oracle (.oracle): {'found' if oracle else 'MISSING'}")
print(f"FAIL set-up: cannot import {'; '.join(missing)}" if missing else "PASS set-up: imports")
sys.exit(1 if missing or not oracle else 0)
EOF

say ""
say "== tests"
start=$SECONDS
if [[ ${#cpu[@]} -gt 0 ]]; then
    collected=$(python3 -m pytest -q -p no:cacheprovider --collect-only "${TESTS[@]}" 2>&1 | tail -1)
    say "CPU mode: collected only ($collected; the CUDA-marked ones skip without CUDA)"
else
    timeout "$TESTS_TIMEOUT" python3 -m pytest -q -p no:cacheprovider -rfEs --durations=15 \
        "${TESTS[@]}" >"$out/pytest.txt" 2>&1
    rc=$?
    summary=$(grep -E "(passed|failed|error|skipped)" "$out/pytest.txt" | tail -1)
    if [[ $rc -eq 0 ]]; then
        say "PASS tests: $summary"
    else
        failed=1
        [[ $rc -eq 124 ]] && summary="stopped after ${TESTS_TIMEOUT} s; last: $(tail -c 300 "$out/pytest.txt")"
        say "FAIL tests (exit $rc): $summary"
        grep -E "^(FAILED|ERROR)" "$out/pytest.txt" | head -20 | tee -a "$results"
    fi
fi
say "(tests: $((SECONDS - start)) s)"

timeout "$CHECK_TIMEOUT" python3 benchmarks/gpu_check.py "${cpu[@]}" --results "$results"
rc=$?
if [[ $rc -ne 0 ]]; then
    failed=1
    [[ $rc -eq 124 ]] && say "FAIL gpu_check.py stopped after ${CHECK_TIMEOUT} s"
    [[ $rc -gt 1 && $rc -ne 124 ]] && say "FAIL gpu_check.py exited $rc (see gpu_check.log)"
fi
say ""
say "gpu_check.sh: $((SECONDS)) s in all; $([[ $failed -eq 0 ]] && echo 'all passed' || echo 'SOME FAILED')"
exit $failed
