#!/usr/bin/env bash
# Reproduce the packaged model: fetch photos, train both phases, export to corrdiff/assets/default.pt.
#   bash experiments/default_model/train.sh            # from the repository root
# To continue an interrupted or committed run instead of starting over, pass the checkpoint:
#   PHASE2_RESUME=runs/default_model/phase2/checkpoints/last.ckpt bash experiments/default_model/train.sh
# To fine-tune an exported model (e.g. the shipped one) instead, see finetune.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=experiments/default_model
[ -d data/default_model/train ] || python "$HERE/prepare_data.py" data/default_model
if [ -z "${PHASE2_RESUME:-}" ]; then
  [ -f runs/default_model/phase1/checkpoints/last.ckpt ] || corrdiff fit --config "$HERE/phase1.yaml" "$@"
  corrdiff fit --config "$HERE/phase2.yaml" "$@"
else
  corrdiff fit --config "$HERE/phase2.yaml" --ckpt_path "$PHASE2_RESUME" "$@"
fi
corrdiff export runs/default_model/phase2/checkpoints/last.ckpt -o corrdiff/assets/default.pt --half --force
