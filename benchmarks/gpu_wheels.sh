#!/usr/bin/env bash
# Download, on a machine with PyPI, the wheels that benchmarks/gpu_check.sh installs on a GPU
# machine without network (Python 3.12, x86_64; its image holds torch, torchvision, numpy, timm,
# huggingface_hub, safetensors, regex, tqdm, PyYAML, cloudpickle, pytest, but not these).
#   .whl/*.whl           the packages the project needs there (pure Python, py3-none-any)
#   .whl/oracle/*.whl    the test oracle openai-clip (PyPI has only its sdist: built here)
#   .whl/fallback/*.whl  setuptools<81, installed there only if `import pkg_resources` fails
# .whl/ is git-ignored; name it in the device call's `carry`. Versions are those of
# constraints.txt. Usage: bash benchmarks/gpu_wheels.sh [DIR]   (default .whl)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.whl}
rm -rf "$dir"
mkdir -p "$dir/oracle" "$dir/fallback"
target=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
        --platform manylinux2014_x86_64)
python3 -m pip download -q "${target[@]}" -d "$dir" \
    yacs==0.1.8 ftfy==6.3.1 wcwidth==0.7.0 submitit==1.5.4 open_clip_torch==3.3.0
python3 -m pip download -q "${target[@]}" -d "$dir/fallback" setuptools==80.10.2
python3 -m pip wheel -q --no-deps -w "$dir/oracle" openai-clip==1.0.1
ls -l "$dir" "$dir/oracle" "$dir/fallback"
du -sh "$dir"
