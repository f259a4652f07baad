#!/usr/bin/env bash
# Lambda ladder -> rate-distortion(-perception) curve: for each lambda, phase 1, then phase 2
# from that lambda's phase-1 last.ckpt (same lambda), then `corrdiff export` to a model file.
#
#   experiments/ladder/run.sh                                    # the default ladder, one node
#   LAMBDAS="0.02 0.1" experiments/ladder/run.sh --trainer.devices=4
#   DRY_RUN=1 experiments/ladder/run.sh                          # print the commands, run nothing
#
# Layout (ROOT=runs/ladder):  ROOT/lambda_L/phase1/checkpoints/last.ckpt
#                             ROOT/lambda_L/phase2/checkpoints/last.ckpt
#                             ROOT/lambda_L/model.pt        (for corrdiff compress/decompress --model)
# Each output path is set on the command line (logger save_dir and name, default_root_dir and
# the ModelCheckpoint's dirpath, which must be the LAST callback of the configs), so the runs
# never share a checkpoint folder.
#
# Restartable: a finished phase leaves ROOT/lambda_L/phaseN/DONE and is skipped; an
# interrupted one (last.ckpt but no DONE) is resumed with --ckpt_path.
#
# Environment (all optional):
#   LAMBDAS         rate weights, space-separated          (default: 0.01 0.02 0.05 0.1 0.2)
#   ROOT            output folder                          (default: runs/ladder)
#   PHASE1_CONFIG   phase-1 base config                    (default: experiments/ladder/phase1.yaml)
#   PHASE2_CONFIG   phase-2 base config                    (default: experiments/ladder/phase2.yaml)
#   PHASE1_ARGS     extra arguments of phase 1 only, e.g. "--trainer.max_steps=200000"
#   PHASE2_ARGS     extra arguments of phase 2 only, e.g. "--model.init_args.rho=2.0"
#   CORRDIFF        the corrdiff command                   (default: corrdiff)
#   DRY_RUN=1       print the commands instead of running them
# Arguments after the script name go to both `corrdiff fit` calls.
# Paths are relative to the repository root (the script changes into it).
# For a CPU smoke test of the script itself, see experiments/ladder/README.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

LAMBDAS=${LAMBDAS:-"0.01 0.02 0.05 0.1 0.2"}
ROOT=${ROOT:-runs/ladder}
PHASE1_CONFIG=${PHASE1_CONFIG:-experiments/ladder/phase1.yaml}
PHASE2_CONFIG=${PHASE2_CONFIG:-experiments/ladder/phase2.yaml}
CORRDIFF=${CORRDIFF:-corrdiff}
read -r -a phase1_args <<< "${PHASE1_ARGS:-}"
read -r -a phase2_args <<< "${PHASE2_ARGS:-}"

run() {
    printf '+'
    printf ' %q' "$@"
    printf '\n'
    if [[ -z "${DRY_RUN:-}" ]]; then
        "$@"
    fi
}

# fit PHASE LAMBDA CONFIG [extra args...]: one training phase of one ladder point.
fit() {
    local phase=$1 lmbda=$2 config=$3
    shift 3
    local out=$ROOT/lambda_$lmbda/phase$phase
    if [[ -f $out/DONE ]]; then
        echo "= $out: done, skipped (delete $out/DONE to train it again)"
        return
    fi
    local resume=()
    if [[ -f $out/checkpoints/last.ckpt ]]; then
        resume=(--ckpt_path "$out/checkpoints/last.ckpt")
    fi
    run "$CORRDIFF" fit --config "$config" \
        --model.init_args.lmbda="$lmbda" \
        --trainer.default_root_dir="$out" \
        --trainer.logger.init_args.save_dir="$out" \
        --trainer.logger.init_args.name="ladder-lambda_$lmbda-phase$phase" \
        --trainer.callbacks.init_args.dirpath="$out/checkpoints" \
        "$@" "${resume[@]}"
    if [[ -z "${DRY_RUN:-}" ]]; then
        touch "$out/DONE"
    fi
}

for lmbda in $LAMBDAS; do
    point=$ROOT/lambda_$lmbda
    fit 1 "$lmbda" "$PHASE1_CONFIG" "${phase1_args[@]}" "$@"
    fit 2 "$lmbda" "$PHASE2_CONFIG" \
        --model.init_args.init_from="$point/phase1/checkpoints/last.ckpt" "${phase2_args[@]}" "$@"
    run "$CORRDIFF" export "$point/phase2/checkpoints/last.ckpt" -o "$point/model.pt" --force
done
