#!/usr/bin/env bash
# Train the shipped default model with the project's own pipeline, export it and make its int8
# files: the recipe issue 30's study chose by a street the runs never saw (docs/training.md):
#   stage 1  EfficientNet-Lite0 (ImageNet weights shipped offline) + TGM with MiniLM class
#            names, 1,800 iterations: the backbone frozen for the first 450 (head, TGM, detail
#            head alone), then the whole network at 0.3x the learning rate for the backbone
#   stage 2  prompts through the frozen MiniLM encoder, backbone frozen, 300 iterations
#   export   models/textseg_default.onnx from stage 2's LAST weights (a schedule fixed in
#            advance; nothing chosen by val), with the confidence output, scored on CamVid
#            val by ONNX Runtime, the figures and this command in its metadata
#   int8     models/textseg_default_int8.onnx (TensorRT form) and _int8_cpu.onnx (ONNX
#            Runtime's CPU form), 7-bit weights, self-check embedded
#            (scripts/quantize_default_model.py)
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
train_stage training/configs/camvid_default_stage2.yaml "$runs/default_stage2" default_stage2 \
  --set "init_from=$runs/default_stage1/last.pt"
"$train" export --checkpoint "$runs/default_stage2/last.pt" --output "$output" --confidence \
  --evaluate --metadata "reproduce=scripts/train_default_model.sh (configs: \
training/configs/camvid_default_stage1.yaml, camvid_default_stage2.yaml)" \
  --metadata "selected=stage 2 last.pt: the last weights of a schedule fixed in advance \
(recipe chosen on CamVid sequence 0006R0 held out of training, issue 30; val never chose)"
"$train" results "$results" --rows default_stage1 default_stage2 \
  --compare default_stage1:default_stage2
if [ "$output" = "$root/models/textseg_default.onnx" ]; then
  .venv/bin/python scripts/quantize_default_model.py --target tensorrt
  .venv/bin/python scripts/quantize_default_model.py --target cpu
fi
