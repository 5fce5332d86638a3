# The 11-dataset x 5-shot TaskRes grid with the paper's per-dataset choices; sourced by
# train_regular.sh and train_enhance.sh, never run on its own.
#
# Choices (from the upstream train_regular.sh / train_enhance.sh):
#   learning rate  2e-4 for ImageNet, 2e-3 for the other datasets
#   epochs         100 for 1, 2 and 4 shots, 200 for 8 and 16 shots
#   scale alpha    1.0 for Oxford Flowers, 0.5 for the other datasets
#
# Environment: DATASETS and SHOT_LIST narrow the grid (default: all); DRY_RUN=1 prints the
# commands instead of running them. Arguments given to run_grid after the base function are
# KEY VALUE overrides passed to every run.

DATASETS="${DATASETS:-stanford_cars oxford_flowers caltech101 dtd fgvc_aircraft oxford_pets food101 ucf101 eurosat sun397 imagenet}"
SHOT_LIST="${SHOT_LIST:-1 2 4 8 16}"

grid_config() {  # grid_config <dataset> <shots>
    local lr=2e-3 epochs=200
    [ "$1" = imagenet ] && lr=2e-4
    [ "$2" -le 4 ] && epochs=100
    echo "adam_lr${lr}_B256_ep${epochs}"
}

grid_scale() {  # grid_scale <dataset>
    if [ "$1" = oxford_flowers ]; then echo 1.0; else echo 0.5; fi
}

# run_grid <base_fn> [KEY VALUE ...]: base_fn <dataset> <shots> prints the ENHANCED_BASE argument
# for that cell.
# A failing cell does not stop the grid; the failures are listed at the end (exit status 1).
run_grid() {
    local base_fn=$1 shots dataset failed=()
    shift
    for dataset in $DATASETS; do
        require_dataset_config "$dataset"
    done
    for shots in $SHOT_LIST; do
        for dataset in $DATASETS; do
            local cmd=(bash scripts/taskres/main.sh "$dataset" "$(grid_config "$dataset" "$shots")"
                       "$("$base_fn" "$dataset" "$shots")" "$shots" "$(grid_scale "$dataset")" "$@")
            if [ "${DRY_RUN:-0}" = 1 ]; then
                echo "${cmd[*]}"
            elif ! "${cmd[@]}"; then
                failed+=("$dataset ${shots}-shot")
            fi
        done
    done
    if [ ${#failed[@]} -gt 0 ]; then
        printf 'FAILED: %s\n' "${failed[@]}" >&2
        return 1
    fi
}
