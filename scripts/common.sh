# Shared settings and helpers for the experiment scripts; sourced, never run on its own.
#
# Environment variables (all optional):
#   DATA         folder holding the datasets laid out as DATASETS.md says (default: $HOME/data)
#   PYTHON       interpreter that runs train.py (default: python)
#   SEEDS        seeds each setting runs with (default: "1 2 3")
#   OUTPUT_ROOT  folder the run outputs go under (each script says its default)
#   CLIP_WEIGHTS_DIR  folder with OpenAI CLIP checkpoints (RN50.pt, ViT-B-16.pt, ...) for offline use
#
# Every script cds to the repository root first, so relative paths given to it (output folders,
# checkpoint files) are taken relative to the repository root.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

DATA="${DATA:-$HOME/data}"
PYTHON="${PYTHON:-python}"
SEEDS="${SEEDS:-1 2 3}"

die() {
    echo "ERROR: $*" >&2
    exit 1
}

# usage_if_short <needed> <given> <usage text>: print the usage and stop when arguments are missing.
usage_if_short() {
    if [ "$2" -lt "$1" ]; then
        echo "$3" >&2
        exit 2
    fi
}

require_dataset_config() {
    [ -f "configs/datasets/$1.yaml" ] || die "no dataset config configs/datasets/$1.yaml." \
        "Available: $(cd configs/datasets && ls -- *.yaml | sed 's/\.yaml$//' | tr '\n' ' ')"
}

# require_trainer_config <trainer folder> <config name>
require_trainer_config() {
    [ -f "configs/trainers/$1/$2.yaml" ] || die "no config configs/trainers/$1/$2.yaml." \
        "Available: $(cd "configs/trainers/$1" && ls -- *.yaml | sed 's/\.yaml$//' | tr '\n' ' ')"
}

require_data_root() {
    [ -d "$DATA" ] || die "dataset folder '$DATA' does not exist. Set DATA=/path/to/datasets" \
        "(the folder holding caltech-101/, oxford_pets/, ... as DATASETS.md describes)."
}

# dataset_name <dataset config>: the registered DATASET.NAME written in configs/datasets/<name>.yaml.
dataset_name() {
    sed -n 's/^[[:space:]]*NAME:[[:space:]]*["'\'']\{0,1\}\([^"'\'']*\)["'\'']\{0,1\}[[:space:]]*$/\1/p' \
        "configs/datasets/$1.yaml" | head -n 1
}

# max_epoch <trainer folder> <config name>: OPTIM.MAX_EPOCH of a trainer config (the epoch of its
# last checkpoint, which eval scripts load by default).
max_epoch() {
    sed -n 's/^[[:space:]]*MAX_EPOCH:[[:space:]]*\([0-9]*\).*$/\1/p' "configs/trainers/$1/$2.yaml" | head -n 1
}

# run_finished <output dir>: true when a log in that folder already holds a test result.
run_finished() {
    "$PYTHON" tools/parse_test_res.py --finished "$1" >/dev/null 2>&1
}
