# Sourced by the ablation scripts: short training runs started side by side (one thread each), then
# waited for together.
#   start_run RUN_DIR CONFIG [corrdiff fit arguments...]   # config copied into RUN_DIR, its output
#                                                           # paths (its default_root_dir) pointed there
#   wait_runs OUT                                           # fails if any run failed
pids=()

start_run() {
  local run=$1 config=$2
  shift 2
  [ -e "$run/checkpoints" ] && { echo "$run holds an earlier run: move it away first" >&2; exit 2; }
  mkdir -p "$run"
  local root
  root=$(sed -n 's/^ *default_root_dir: *//p' "$config")
  sed -e "s#$root#$run#g" "$config" > "$run/config.yaml"
  OMP_NUM_THREADS=1 nice corrdiff fit --config "$run/config.yaml" "$@" > "$run/train.log" 2>&1 &
  pids+=($!)
}

wait_runs() {
  local status=0 pid
  for pid in "${pids[@]}"; do wait "$pid" || status=1; done  # wait for all before giving up on any
  [ "$status" = 0 ] || { echo "a training run failed: see $1/*/train.log" >&2; exit 1; }
}
