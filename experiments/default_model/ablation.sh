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
pids=()
for name in "${!RECIPES[@]}"; do
  run="$OUT/$name"
  [ -e "$run/checkpoints" ] && { echo "$run holds an earlier run: move it away first" >&2; exit 2; }
  mkdir -p "$run"
  sed -e "s#runs/default_model/score#$run#g" experiments/default_model/score.yaml > "$run/config.yaml"
  OMP_NUM_THREADS=1 nice corrdiff fit --config "$run/config.yaml" \
    --model.init_from "$INIT" --model.codec "{score_net: ${RECIPES[$name]}}" \
    --trainer.max_steps "$STEPS" --data.crop_size "$CROP" > "$run/train.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done  # wait for all before giving up on any
[ "$status" = 0 ] || { echo "a training run failed: see $OUT/*/train.log" >&2; exit 1; }
models=()
for name in $(printf '%s\n' "${!RECIPES[@]}" | sort); do
  corrdiff export "$OUT/$name/checkpoints/last.ckpt" -o "$OUT/$name.pt" --half --force
  models+=(--model "$OUT/$name.pt")
done
corrdiff eval data/default_model/heldout "${models[@]}" --same-file --baselines none \
  --metrics psnr-rgb,ms-ssim-rgb,hf-ratio,colour-error --out "$OUT/eval" --force
