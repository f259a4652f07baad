#!/usr/bin/env bash
# Train the AVIF-base model's score network for a wall time, then export it (docs/avif_base.md, "Training").
#   nice -n 10 bash experiments/avif_base/train.sh 01:20:00
# First call on a machine: a fresh run from experiments/avif_base/score.yaml (the packaged default's score
# network, a new conditioner). Later calls on the same machine resume runs/avif_base/score/checkpoints/last.ckpt
# with its optimiser; on a fresh clone, continue from the committed model with
#   python experiments/default_model/train_long.py --config experiments/avif_base/score.yaml \
#       --run runs/avif_base/score --export corrdiff/assets/avif.pt --max-time 01:00:00
# One torch thread: on the 2-core machines two threads beside other work ran a step 10x slower (docs/avif_base.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
MAX_TIME="${1:-01:00:00}"
RUN=runs/avif_base/score
LAST="$RUN/checkpoints/last.ckpt"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
if [ -f "$LAST" ]; then
  exec python experiments/default_model/train_long.py --config experiments/avif_base/score.yaml --run "$RUN" \
    --export corrdiff/assets/avif.pt --start corrdiff/assets/avif.pt --max-time "$MAX_TIME"
fi
corrdiff fit --config experiments/avif_base/score.yaml --trainer.max_steps -1 --trainer.max_time "00:$MAX_TIME"
corrdiff export "$LAST" -o corrdiff/assets/avif.pt --half --force
