#!/usr/bin/env bash
# The weak-supervision protocol (docs/weak_supervision.md): tags, the pseudo-label sweep and
# the training rows of training/results/camvid_weak_runs.json, each run resumable (re-run the
# script; a finished run only re-evaluates).
#   scripts/run_weak_protocol.sh [PART]   (default: main)
#     tags    the tile tags of every grid (the only step that reads train masks)
#     sweep   pseudo labels per grid, no decoder (the gate before decoder training)
#     main    weak_weclip, weak_weclip_no_rfm, full_weclip, weak_weclip_shuffled_tags, SEEDS
#     seeds   weak_weclip and weak_weclip_no_rfm only (more seeds of the paper's ablation)
#     extra   weak_weclip_random_text, SEEDS
#     strip   image | ground truth | CAM | pseudo label | prediction of weak_weclip seed 0
# SEEDS="0" by default; TEXTSEG_RUNS says where run folders and tags go (default ./runs).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
runs="${TEXTSEG_RUNS:-$root/runs}/weak"
train="$root/.venv/bin/textseg-train"
results="$root/training/results/camvid_weak.json"
config=training/configs/weak/camvid_lite0_weclip.yaml
seeds="${SEEDS:-0}"
tags="$runs/camvid_tags_3x4.npz"

run() {  # ROW SEED [KEY=VALUE ...]
  local row=$1 seed=$2
  shift 2
  local out="$runs/${row}_seed$seed" resume=() sets=()
  if [ -f "$out/last.pt" ]; then resume=(--resume "$out/last.pt"); fi
  for item in "seed=$seed" "output_dir=$out" "tags_file=$tags" "$@"; do
    sets+=(--set "$item")
  done
  echo "== $row seed $seed ($(date -u +%H:%M:%S))"
  "$train" train "$config" "${sets[@]}" "${resume[@]}" --results "$results" --row "$row"
}

case "${1:-main}" in
  tags)
    for grid in 1x1 2x2 3x4 4x6; do
      "$train" weak-tags --grid "$grid" --output "$runs/camvid_tags_$grid.npz" \
        --results "$results"
    done ;;
  sweep)
    "$train" weak-pseudo --grids 1x1 2x2 3x4 4x6 --set label_stride=8 --results "$results" \
      --strip docs/images/weak_pseudo_strip.png ;;
  main)
    for seed in $seeds; do
      run weak_weclip "$seed"
      run weak_weclip_no_rfm "$seed" rfm=false
      run full_weclip "$seed" stage=weak_full
      run weak_weclip_shuffled_tags "$seed" "shuffle_tags_seed=$seed"
    done ;;
  seeds)
    for seed in $seeds; do
      run weak_weclip "$seed"
      run weak_weclip_no_rfm "$seed" rfm=false
    done ;;
  extra)
    for seed in $seeds; do run weak_weclip_random_text "$seed" text_control=random_text; done ;;
  strip)
    "$train" weak-strip "$runs/weak_weclip_seed0/last.pt" --output docs/images/weak_strip.png ;;
  *) echo "unknown part ${1}: tags, sweep, main, seeds, extra or strip" >&2; exit 2 ;;
esac
