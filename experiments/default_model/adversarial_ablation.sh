#!/usr/bin/env bash
# Equal-budget ablation of where the adversarial term acts and how much it weighs (docs/training.md).
# Every run fine-tunes the shipped model's score network for STEPS steps with adversarial.yaml (the same
# data, crops, seed and batch of 8 CROP-pixel crops; all runs at once, one thread each), including a
# baseline with the adversarial weight 0 (the MSE recipe continued for the same steps). Then every run
# is exported; experiments/default_model/adversarial_eval.py measures them on the held-out crops.
#   STEPS=500 CROP=64 nice bash experiments/default_model/adversarial_ablation.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/default_model/adversarial_ablation}
STEPS=${STEPS:-500}
CROP=${CROP:-64}
# ONLY="name ..." runs a subset (e.g. to add runs to an ablation whose other runs are done).
NO_RESIDUAL='--model.residual_scale null'
declare -A RUNS=(
  [mse-baseline]='--model.adversarial_weight 0'
  [x0d-w0.003]='--model.adversarial_weight 0.003'
  [x0d-w0.01]='--model.adversarial_weight 0.01'
  [x0d-w0.03]='--model.adversarial_weight 0.03'
  [posterior-w0.01]="--model.target posterior --model.adversarial_weight 0.01 $NO_RESIDUAL"
  [x0e-w0.01]="--model.target x0_e --model.adversarial_weight 0.01 --model.freeze [encoder,prior] --model.distortion_weight 150 $NO_RESIDUAL"
)
if [ -n "${ONLY:-}" ]; then
  for name in "${!RUNS[@]}"; do [[ " $ONLY " == *" $name "* ]] || unset "RUNS[$name]"; done
fi
mkdir -p "$OUT"
# shellcheck source=experiments/default_model/parallel_runs.sh
source experiments/default_model/parallel_runs.sh
for name in "${!RUNS[@]}"; do
  # shellcheck disable=SC2086
  start_run "$OUT/$name" experiments/default_model/adversarial.yaml ${RUNS[$name]} \
    --trainer.max_steps "$STEPS" --data.crop_size "$CROP"
done
wait_runs "$OUT"
for name in $(printf '%s\n' "${!RUNS[@]}" | sort); do
  corrdiff export "$OUT/$name/checkpoints/last.ckpt" -o "$OUT/$name.pt" --half --force
done
