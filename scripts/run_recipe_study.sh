#!/usr/bin/env bash
# Issue 30's recipe study (docs/training.md, "Choosing the recipe by a street it never saw"):
# every candidate trains stage 1 then stage 2 (training/configs/recipe_study/) without CamVid
# sequence 0006R0 and is scored on 0006R0's 101 frames ("heldout") and on val, with its last
# weights and their moving average (rows ROW and ROW_ema), on a fixed schedule: nothing is
# chosen by a scoring split. Each run is resumable: re-run the script and it goes on.
#   scripts/run_recipe_study.sh [CANDIDATE ...]   (default: every candidate below, in order)
# SEEDS="0 1" by default (outer loop: every candidate's seed 0 comes first); TEXTSEG_RUNS says
# where run folders go (default ./runs). The tables:
#   .venv/bin/textseg-train results training/results/recipe_study.json --metric heldout_miou
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
runs="${TEXTSEG_RUNS:-$root/runs}/recipe_study"
results="$root/training/results/recipe_study.json"
configs=training/configs/recipe_study
seeds="${SEEDS:-0 1}"
train="$root/.venv/bin/textseg-train"

# Candidate -> its stage-1 keys (stage 2 is the same for all; a backbone change applies to both).
# probe_enet: the first two of the study combined (measured after the default was chosen).
declare -A candidate=(
  [today]=""
  [probe_finetune]="backbone_frozen_iterations=150 backbone_lr_mult=0.3"
  [enet_weights]="class_weights=enet"
  [other_light]="photometric=light"
  [lite2]="backbone=efficientnet_lite2"
  [full_frames]="crop_size=[360,480]"
  [probe_enet]="backbone_frozen_iterations=150 backbone_lr_mult=0.3 class_weights=enet"
)
order=(today probe_finetune enet_weights other_light lite2 full_frames probe_enet)
if [ $# -gt 0 ]; then order=("$@"); fi
for name in "${order[@]}"; do
  if [ -z "${candidate[$name]+set}" ]; then
    echo "run_recipe_study: unknown candidate '$name' (known: ${!candidate[*]})" >&2; exit 2
  fi
done

run() {  # ROW SEED CONFIG [KEY=VALUE ...]
  local row=$1 seed=$2 config=$3
  shift 3
  local out="$runs/${row}_seed$seed" resume=() sets=()
  if [ -f "$out/last.pt" ]; then resume=(--resume "$out/last.pt"); fi
  for item in "seed=$seed" "output_dir=$out" "$@"; do sets+=(--set "$item"); done
  echo "== $row seed $seed ($(date -u +%H:%M:%S))"
  "$train" train "$configs/$config" "${sets[@]}" "${resume[@]}" \
    --results "$results" --row "$row"
}

for seed in $seeds; do
  for name in "${order[@]}"; do
    read -r -a keys <<< "${candidate[$name]}"
    backbone=()
    for key in "${keys[@]}"; do
      if [[ $key == backbone=* ]]; then backbone=("$key"); fi
    done
    run "${name}_stage1" "$seed" stage1.yaml "${keys[@]}"
    run "$name" "$seed" stage2.yaml "${backbone[@]}" \
      "init_from=$runs/${name}_stage1_seed$seed/last.pt"
  done
done
