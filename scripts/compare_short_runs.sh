#!/usr/bin/env bash
# Short CamVid runs that back two decisions, recorded in training/results/camvid_short_runs.json:
#   precision  the default stage-1 run (EfficientNet-Lite0 + MiniLM, batch 8, crop 288x384)
#              for ITERATIONS (default 200) steps, warm-up 50, in fp32 and in bf16 autocast,
#              seeds 0 and 1 (same seed = same batches and augmentation): is the bf16 - fp32
#              difference within the seed-to-seed spread?
#   backbone   the same run in bf16 on EfficientNet-Lite1 and -Lite2 (seed 0), against Lite0.
# Resumable like every run (re-run the script). Prints the tables at the end:
#   scripts/compare_short_runs.sh [precision|backbones|all]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
runs="${TEXTSEG_RUNS:-$root/runs}/short"
results="$root/training/results/camvid_short_runs.json"
config=training/configs/camvid_default_stage1.yaml
iterations="${ITERATIONS:-200}"
train="$root/.venv/bin/textseg-train"
what="${1:-all}"

short_run() {  # ROW SEED [more --set KEY=VALUE]
  local row=$1 seed=$2
  shift 2
  local out="$runs/${row}_seed$seed" resume=() sets=()
  if [ -f "$out/last.pt" ]; then resume=(--resume "$out/last.pt"); fi
  for item in "iterations=$iterations" "warmup_iterations=50" "eval_interval=$iterations" \
              "checkpoint_interval=50" \
              "seed=$seed" "output_dir=$out" "$@"; do
    sets+=(--set "$item")
  done
  "$train" train "$config" "${sets[@]}" "${resume[@]}" --results "$results" --row "$row"
}

if [ "$what" = precision ] || [ "$what" = all ]; then
  for seed in 0 1; do
    short_run lite0_bf16 "$seed" precision=bf16
    short_run lite0_fp32 "$seed" precision=fp32
  done
fi
if [ "$what" = backbones ] || [ "$what" = all ]; then
  short_run lite1_bf16 0 precision=bf16 backbone=efficientnet_lite1
  short_run lite2_bf16 0 precision=bf16 backbone=efficientnet_lite2
fi
"$train" results "$results" --compare lite0_fp32:lite0_bf16
