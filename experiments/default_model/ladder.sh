#!/usr/bin/env bash
# Give the other rungs of the rate ladder the default model's score network (issue 12): each rung's
# codec (encoder, prior, end-to-end decoder: its own rate) is kept and frozen, its score network and
# conditioning network start from the default model's (init_parts) and are fine-tuned on its latent
# for MAX_TIME, all rungs at once. Run from the repository root:
#   MAX_TIME=00:00:15:00 bash experiments/default_model/ladder.sh corrdiff/assets/default.pt
# Rungs: experiments/default_model/models/v1/default-l<L>.pt (the codecs), exported to
# experiments/default_model/models/default-l<L>.pt. To continue an exported rung later, run
# train_long.py --start on it (without init_parts, which would replace its fine-tuned networks).
set -euo pipefail
cd "$(dirname "$0")/../.."
SCORE=$(realpath "${1:-corrdiff/assets/default.pt}")
MAX_TIME=${MAX_TIME:-00:00:15:00}
LAMBDAS=${LAMBDAS:-0.5 2}
mkdir -p runs/default_model
pids=()
for L in $LAMBDAS; do
  OMP_NUM_THREADS=1 python experiments/default_model/train_long.py --max-time "$MAX_TIME" \
    --run "runs/default_model/ladder-l$L" --start "experiments/default_model/models/v1/default-l$L.pt" \
    --export "experiments/default_model/models/default-l$L.pt" -- \
    --model.init_parts "{score_net: $SCORE, conditioner: $SCORE}" > "runs/default_model/ladder-l$L.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
