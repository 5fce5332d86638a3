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

# require_inputs <dataset config> <trainer folder> <config name>: stop with a message naming the fix
# when the dataset config, the trainer config or the data root is missing.
require_inputs() {
    require_dataset_config "$1"
    require_trainer_config "$2" "$3"
    require_data_root
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

# set_load_epoch <trainer folder> <config name> <epoch, 'best' or ''>: sets LOAD_EPOCH to the
# train.py arguments choosing the checkpoint an evaluation loads ('' = the config's last epoch,
# 'best' = model-best.pth.tar, which train.py loads when no epoch is given).
set_load_epoch() {
    local epoch=$3
    [ -n "$epoch" ] || epoch=$(max_epoch "$1" "$2")
    LOAD_EPOCH=()
    [ "$epoch" = best ] || LOAD_EPOCH=(--load-epoch "$epoch")
}

# run_finished <output dir>: true when a log in that folder already holds a test result.
run_finished() {
    "$PYTHON" tools/parse_test_res.py --finished "$1" >/dev/null 2>&1
}

# train_unless_finished <output dir> <seed, or '' for none> <trainer> <dataset> <config file>
#                       [train.py args ...]
# Runs train.py for one output folder, or says it is skipped when that folder already holds a test
# result (so an interrupted sweep can be re-run). Runs given --eval-only are worded as evaluations.
train_unless_finished() {
    local dir=$1 seed=$2 trainer=$3 dataset=$4 config_file=$5 arg
    shift 5
    if run_finished "$dir"; then
        local note="a finished run (delete the folder to run it again)"
        for arg in "$@"; do
            if [ "$arg" = --eval-only ]; then
                note="a test result (delete the folder to evaluate again)"
            fi
        done
        echo "Skipping $dir: it already holds $note."
        return 0
    fi
    local seed_args=()
    [ -z "$seed" ] || seed_args=(--seed "$seed")
    "$PYTHON" train.py \
        --root "$DATA" \
        "${seed_args[@]}" \
        --trainer "$trainer" \
        --dataset-config-file "configs/datasets/$dataset.yaml" \
        --config-file "$config_file" \
        --output-dir "$dir" \
        "$@"
}
