# Shared settings and helpers for the experiment scripts; sourced, never run on its own.
#
# Environment variables (all optional):
#   DATA         folder holding the datasets laid out as DATASETS.md says (default: $HOME/data)
#   PYTHON       interpreter that runs train.py (default: python, else python3)
#   SEEDS        seeds each setting runs with (default: "1 2 3")
#   OUTPUT_ROOT  folder the run outputs go under (each script says its default)
#   CLIP_WEIGHTS_DIR  folder with OpenAI CLIP checkpoints (RN50.pt, ViT-B-16.pt, ...) for offline use
#
# Every script cds to the repository root first, so relative paths given to it (output folders,
# checkpoint files) are taken relative to the repository root.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

DATA="${DATA:-$HOME/data}"
PYTHON="${PYTHON:-$(command -v python || command -v python3)}"
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

# require_dataset_config <dataset config>: the dataset table (tools/dataset_configs.py, read from
# configs/datasets/) names the missing config and the available ones.
require_dataset_config() {
    "$PYTHON" -m tools.dataset_configs name "$1" > /dev/null || exit 1
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

# train_unless_finished <output dir> <seed, or '' for none> <trainer> <dataset> <config file>
#                       [train.py args ...]
# Runs train.py for one output folder with --skip-finished: a folder that already holds a finished
# run with the same config is skipped (so an interrupted sweep can be re-run), an unfinished one
# resumes, and one holding a run with another config is refused with the differing keys.
train_unless_finished() {
    local dir=$1 seed=$2 trainer=$3 dataset=$4 config_file=$5
    shift 5
    local seed_args=()
    [ -z "$seed" ] || seed_args=(--seed "$seed")
    # RUN_LAUNCHER: train.py's refusals then name OUTPUT_ROOT, which these scripts take.
    RUN_LAUNCHER=scripts "$PYTHON" train.py \
        --root "$DATA" \
        "${seed_args[@]}" \
        --trainer "$trainer" \
        --dataset-config-file "configs/datasets/$dataset.yaml" \
        --config-file "$config_file" \
        --output-dir "$dir" \
        --skip-finished \
        "$@"
}

# train_each_seed <run folder> <trainer> <dataset> <config file> [train.py args ...]
# train_unless_finished once per seed in SEEDS, into OUTPUT_ROOT/<run folder>/seed<N> (OUTPUT_ROOT
# defaults to output).
train_each_seed() {
    local folder=$1 seed
    shift
    for seed in $SEEDS; do
        train_unless_finished "${OUTPUT_ROOT:-output}/$folder/seed$seed" "$seed" "$@"
    done
}

# select_on_test_for <dataset config>: sets ON_TEST to the override that lets a selection on val
# read ImageNet's val split, which is its test set (as upstream, whose code selects there); the
# run records it and parse_test_res.py --audit lists it. Empty for every other dataset.
select_on_test_for() {
    ON_TEST=()
    if [ "$1" = imagenet ]; then
        ON_TEST=(TEST.SELECT_ON_TEST True)
    fi
}

# split_trained <model root>: every seed's model checked before any is evaluated. Sets TRAINED to
# the seeds of SEEDS whose <model root>/seed<N> holds a finished training run and UNTRAINED to one
# line per other seed (its folder and why, from tools/trained_runs.py); stops before any work when
# no seed is trained, naming <fix> (how to train them).
split_trained() {
    local root=$1 fix=$2 seed dir why report dirs=()
    for seed in $SEEDS; do dirs+=("$root/seed$seed"); done
    report=$("$PYTHON" -m tools.trained_runs "${dirs[@]}") || exit 1
    TRAINED="" UNTRAINED=""
    for seed in $SEEDS; do
        dir="$root/seed$seed"
        why=$(awk -F '\t' -v dir="$dir" '$1 == dir { print $2 }' <<< "$report")
        if [ -n "$why" ]; then
            UNTRAINED+="  seed $seed: $dir: $why"$'\n'
        else
            TRAINED+="${TRAINED:+ }$seed"
        fi
    done
    [ -n "$TRAINED" ] || die "no trained model for any seed of SEEDS=\"$SEEDS\":"$'\n'"$UNTRAINED$fix"
}

# report_untrained <fix>: after evaluating the TRAINED seeds, list the UNTRAINED ones (exit 1) with
# <fix>; nothing when every seed was trained.
report_untrained() {
    [ -n "$UNTRAINED" ] || return 0
    printf 'ERROR: evaluated seeds %s; not evaluated (no trained model):\n%s%s\n' \
        "$TRAINED" "$UNTRAINED" "$1 Then run this command again: the evaluated seeds are skipped." >&2
    exit 1
}

# Optional positional arguments before trailing KEY VALUE overrides: a config key (OPTIM.LR,
# TRAINER.TaskRes.PREC, ...) starts the overrides, so optional positionals may be left out.
is_config_key() {
    [[ "$1" =~ ^[A-Z][A-Z0-9_]*(\.[A-Za-z0-9_]+)+$ ]]
}

# take_epoch <args ...>: sets EPOCH to the first argument when it names a checkpoint (an epoch
# number, 'best' or 'last'; '' for the default) and TAKEN to 1, else leaves EPOCH empty and TAKEN 0.
# Eval scripts used to take the residual scale here: a decimal number stops with the fix.
take_epoch() {
    EPOCH="" TAKEN=0
    [ $# -gt 0 ] || return 0
    if [[ "$1" =~ ^([0-9]+|best|last|)$ ]]; then
        EPOCH=$1 TAKEN=1
    elif [[ "$1" =~ ^[0-9]*\.[0-9]+$ ]]; then
        die "'$1' looks like a residual scale, given where EPOCH is expected. Evaluations take" \
            "alpha from the trained run's config.yaml; to override it, append" \
            "TRAINER.TaskRes.RESIDUAL_SCALE $1."
    elif ! is_config_key "$1"; then
        die "'$1' is neither a checkpoint (an epoch number, 'best' or 'last') nor a config key."
    fi
}

# run_sweep <grid file> [grid command options] [KEY VALUE ...]: run a grid (configs/grids/) through
# python -m tools.sweep with DATA, OUTPUT_ROOT and SEEDS; DATASETS ("caltech101 dtd") and SHOT_LIST
# ("1 16") narrow it, and DRY_RUN=1 lists its cells with their commands instead of running them.
run_sweep() {
    local grid=$1 seeds=() filters=()
    shift
    read -r -a seeds <<< "$SEEDS"
    filters=(--root "$DATA" --seeds "${seeds[@]}")
    [ -z "${OUTPUT_ROOT:-}" ] || filters+=(--output-root "$OUTPUT_ROOT")
    if [ -n "${DATASETS:-}" ]; then
        read -r -a seeds <<< "$DATASETS"
        filters+=(--datasets "${seeds[@]}")
    fi
    if [ -n "${SHOT_LIST:-}" ]; then
        read -r -a seeds <<< "$SHOT_LIST"
        filters+=(--shots "${seeds[@]}")
    fi
    [ "${DRY_RUN:-0}" != 1 ] || filters+=(--dry-run --commands)
    "$PYTHON" -m tools.sweep "$grid" "${filters[@]}" "$@"
}
