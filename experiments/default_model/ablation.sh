#!/usr/bin/env bash
# Equal-budget ablation of score-network recipes on top of the shipped codec (issue 12).
# Each recipe trains a fresh score network for STEPS steps (batch 8, CROP-pixel crops, the same data
# and seed) with score.yaml, all recipes at once (one thread each), then every model is exported and
# evaluated on the held-out crops: corrected, diffusion-only and end-to-end from the same file.
#   STEPS=500 CROP=64 bash experiments/default_model/ablation.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/default_model/ablation}
STEPS=${STEPS:-500}
CROP=${CROP:-64}
INIT=${INIT:-corrdiff/assets/default.pt}
declare -A RECIPES=(
  [eps-minsnr]='{prediction: eps, e2e_input: none}'
  [v-minsnr]='{prediction: v, e2e_input: none}'
  [x0-minsnr]='{prediction: x0, e2e_input: none}'
  [v-concat]='{prediction: v, e2e_input: concat}'
  [x0-residual]='{prediction: x0, e2e_input: residual}'
)
mkdir -p "$OUT"
# shellcheck source=experiments/default_model/parallel_runs.sh
source experiments/default_model/parallel_runs.sh
for name in "${!RECIPES[@]}"; do
  start_run "$OUT/$name" experiments/default_model/score.yaml --model.init_from "$INIT" \
    --model.codec "{score_net: ${RECIPES[$name]}}" --trainer.max_steps "$STEPS" --data.crop_size "$CROP"
done
wait_runs "$OUT"
models=()
for name in $(printf '%s\n' "${!RECIPES[@]}" | sort); do
  corrdiff export "$OUT/$name/checkpoints/last.ckpt" -o "$OUT/$name.pt" --half --force
  models+=(--model "$OUT/$name.pt")
done
corrdiff eval data/default_model/heldout "${models[@]}" --same-file --baselines none \
  --metrics psnr-rgb,ms-ssim-rgb,hf-ratio,colour-error --out "$OUT/eval" --force
