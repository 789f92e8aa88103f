#!/usr/bin/env bash
# Train the shipped default model with the project's own pipeline, then export it:
#   stage 1  EfficientNet-Lite0 (ImageNet weights shipped offline) + TGM with MiniLM class names:
#            3,000 iterations at the paper's scale range, then 1,000 at a lower learning rate
#            and milder scales (camvid_default_stage1_finetune.yaml)
#   stage 2  prompts through the frozen MiniLM encoder, backbone frozen
#   export   models/textseg_default.onnx with the confidence output, scored on CamVid val by
#            ONNX Runtime, the figures and this command in its metadata
# Resumable: run it again after an interruption and each stage continues from its last.pt (a
# finished stage is only re-evaluated). For a long run in the background:
#   nohup scripts/train_default_model.sh > train_default_model.log 2>&1 &
# Checkpoints go to $TEXTSEG_RUNS (default: runs/, ignored by git); never commit them.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
runs="${TEXTSEG_RUNS:-$root/runs}"
output="${TEXTSEG_DEFAULT_MODEL:-$root/models/textseg_default.onnx}"
results="$root/training/results/default_model.json"
train="$root/.venv/bin/textseg-train"

train_stage() {  # CONFIG OUTPUT_DIR ROW [more train arguments]
  local config=$1 out=$2 row=$3
  shift 3
  local resume=()
  if [ -f "$out/last.pt" ]; then resume=(--resume "$out/last.pt"); fi
  "$train" train "$config" --set "output_dir=$out" "${resume[@]}" \
    --results "$results" --row "$row" "$@"
}

train_stage training/configs/camvid_default_stage1.yaml "$runs/default_stage1" default_stage1
train_stage training/configs/camvid_default_stage1_finetune.yaml "$runs/default_stage1_finetune" \
  default_stage1_finetune --set "init_from=$runs/default_stage1/last.pt"
train_stage training/configs/camvid_default_stage2.yaml "$runs/default_stage2" default_stage2 \
  --set "init_from=$runs/default_stage1_finetune/last.pt"
# best.pt: stage 2's checkpoint with the best val mIoU of its evaluations (every 300
# iterations); val is also what is reported, so say which one was taken (metadata `selected`).
"$train" export --checkpoint "$runs/default_stage2/best.pt" --output "$output" --confidence \
  --evaluate --metadata "reproduce=scripts/train_default_model.sh (configs: \
training/configs/camvid_default_stage1.yaml, camvid_default_stage1_finetune.yaml, \
camvid_default_stage2.yaml)" \
  --metadata "selected=stage 2 best.pt: the best CamVid val mIoU of stage 2's evaluations \
(iterations 300 and 600); the last checkpoint is in training/results/default_model.json"
"$train" results "$results" --rows default_stage1 default_stage1_finetune default_stage2 \
  --compare default_stage1_finetune:default_stage2
