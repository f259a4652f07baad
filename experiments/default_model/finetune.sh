#!/usr/bin/env bash
# Fine-tune the packaged model at one or more rate weights (lambda), concurrently, then export each.
# This is how the shipped model was continued on a lent GPU (see README.md here); on a CPU it works
# the same, only slower. Optimiser state starts afresh (init_from a model file), so it can continue
# any exported model, not only a Lightning checkpoint.
#
#   LAMBDAS="0.5 1 2.5" MAX_TIME=00:00:06:30 BATCH=16 CROP=256 \
#     bash experiments/default_model/finetune.sh [INIT_MODEL] [OUT_DIR] [extra corrdiff fit options]
#
# Each lambda L trains in runs/default_model/finetune/lL/ and is exported to OUT_DIR/default-lL.pt.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
INIT=${1:-$ROOT/corrdiff/assets/default.pt}
OUT_DIR=${2:-$ROOT/runs/default_model/finetune}
[ -e "$INIT" ] && INIT=$(realpath "$INIT")  # else a packaged model name such as "default"
mkdir -p "$OUT_DIR" && OUT_DIR=$(realpath "$OUT_DIR")
cd "$ROOT"
shift $(( $# > 2 ? 2 : $# ))
LAMBDAS=${LAMBDAS:-1}
MAX_TIME=${MAX_TIME:-00:01:00:00}
BATCH=${BATCH:-16}
CROP=${CROP:-256}
CORRDIFF=${CORRDIFF:-corrdiff}
for L in $LAMBDAS; do  # check them all before starting any (Lightning would write last-v1.ckpt beside
  # an old last.ckpt and the export below would take the old one)
  if [ -e "runs/default_model/finetune/l$L/checkpoints" ]; then
    echo "runs/default_model/finetune/l$L holds an earlier run: move it away first" >&2; exit 2
  fi
done
pids=()
for L in $LAMBDAS; do
  RUN=runs/default_model/finetune/l$L
  mkdir -p "$RUN"
  sed -e "s#runs/default_model/phase2#$RUN#g" experiments/default_model/phase2.yaml > "$RUN/config.yaml"
  $CORRDIFF fit --config "$RUN/config.yaml" --model.init_from "$INIT" --model.lmbda "$L" \
    --data.batch_size "$BATCH" --data.crop_size "$CROP" --trainer.max_steps -1 --trainer.max_time "$MAX_TIME" \
    --trainer.val_check_interval 1000 "$@" > "$RUN/train.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for L in $LAMBDAS; do
  RUN=runs/default_model/finetune/l$L
  tail -n 3 "$RUN/train.log"
  if [ -f "$RUN/checkpoints/last.ckpt" ]; then
    $CORRDIFF export "$RUN/checkpoints/last.ckpt" -o "$OUT_DIR/default-l$L.pt" --half --force || status=1
  else
    echo "lambda $L: no checkpoint (see $RUN/train.log)"; status=1
  fi
done
exit $status
