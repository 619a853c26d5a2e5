# scripts/lib/train-bench.sh: what bench-ddp.sh and bench-train.sh share, sourced by both (not
# run on its own). The caller sets BENCH_NAME (for messages) before sourcing, then calls
# bench_start, and sets BATCH, PRECISION, WORKERS, IMAGES and PORT before the others.

# bench_start MIN_GPUS "$@": without arguments prints the calling script's header comment (its
# usage) and exits 64; else sets UMAMBA (the binary, $1) and WORK ($2, or a
# new temporary folder), both absolute, exits 64 when UMAMBA is not an executable and 65 when
# nvidia-smi lists fewer than MIN_GPUS GPUs, and prints the run's first lines.
bench_start() {
  local min_gpus=$1
  shift
  if [[ $# -lt 1 ]]; then
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit 64
  fi
  UMAMBA=$(realpath "$1")
  WORK=${2:-$(mktemp -d "${TMPDIR:-/tmp}/$BENCH_NAME.XXXXXX")}
  mkdir -p "$WORK"
  WORK=$(realpath "$WORK")
  [[ -x "$UMAMBA" ]] || { echo "$BENCH_NAME: $UMAMBA is not an executable" >&2; exit 64; }
  local gpus
  # (no nvidia-smi: 0; `|| echo 0` inside the substitution would add a second line under pipefail)
  gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | wc -l) || gpus=0
  if [[ "$gpus" -lt "$min_gpus" ]]; then
    echo "$BENCH_NAME: needs $min_gpus GPU(s) (nvidia-smi lists $gpus)" >&2
    exit 65
  fi
  echo "== $BENCH_NAME: $(date -u +%FT%TZ) on $(hostname); work folder $WORK"
  "$UMAMBA" --version 2>/dev/null || true
}

# prepare_data: synthetic cells (IMAGES images of 1024²) and 2D plans under WORK, once.
prepare_data() {
  DATA=$WORK/data
  if [[ ! -d "$DATA/images" ]]; then
    "$UMAMBA" synth -o "$DATA" --count "$IMAGES" --size 1024x1024 --seed 1 >/dev/null
  fi
  if [[ ! -f "$WORK/plans.json" ]]; then
    "$UMAMBA" plan "$DATA" -o "$WORK/plans.json" --configurations 2d
  fi
}

# train_run NAME WORLD EXTRA_ARGS... : 1 process (WORLD=1) or WORLD processes on GPUs 0..WORLD-1,
# patch 512², batch RUN_BATCH (default BATCH) per process, no validation; logs in WORK/NAME*.log.
train_run() {
  local name=$1 world=$2
  shift 2
  local out=$WORK/$name
  rm -rf "$out" "$WORK/$name.dump"
  local common=(train "$DATA" --plans "$WORK/plans.json" -c 2d --patch-size 512x512
    --batch-size "${RUN_BATCH:-$BATCH}" --precision "$PRECISION" --fold all --val-every 0 --progress lines
    --progress-interval 60 --workers "$WORKERS" --cache-dir "$WORK/cache"
    --debug-dump "$WORK/$name.dump" -o "$out" "$@")
  if [[ "$world" -eq 1 ]]; then
    "$UMAMBA" "${common[@]}" --device cuda:0 >"$WORK/$name.log" 2>&1 || {
      echo "$BENCH_NAME: $name failed:" >&2
      tail -20 "$WORK/$name.log" >&2
      return 1
    }
  else
    local pids=() r
    for ((r = 0; r < world; r++)); do
      NCCL_DEBUG=${NCCL_DEBUG:-INFO} NCCL_DEBUG_SUBSYS=${NCCL_DEBUG_SUBSYS:-INIT,P2P} \
        "$UMAMBA" "${common[@]}" --world-size "$world" --rank "$r" --local-rank "$r" \
        --master-addr 127.0.0.1 --master-port "$PORT" --dist-backend nccl \
        >"$WORK/$name.rank$r.log" 2>&1 &
      pids+=($!)
    done
    local failed=0
    for r in "${!pids[@]}"; do
      wait "${pids[$r]}" || failed=1
    done
    PORT=$((PORT + 1))
    if [[ $failed -ne 0 ]]; then
      echo "$BENCH_NAME: $name failed:" >&2
      tail -20 "$WORK/$name.rank0.log" "$WORK/$name.rank1.log" >&2
      return 1
    fi
  fi
}

# Epoch 2 of a run (row 3 of training_log.csv): seconds (column 8), data wait (10), peak GPU
# memory (14).
epoch2_seconds() { awk -F, 'NR == 3 { print $8 }' "$WORK/$1/fold_all/training_log.csv"; }
epoch2_wait() { awk -F, 'NR == 3 { print $10 }' "$WORK/$1/fold_all/training_log.csv"; }
epoch2_peak() { awk -F, 'NR == 3 { print $14 }' "$WORK/$1/fold_all/training_log.csv"; }

# compare_losses RUN_A RUN_B LABEL: the per-iteration losses of two runs side by side, then LABEL
# and the largest absolute difference.
compare_losses() {
  paste "$WORK/$1.dump/rank0_losses.txt" "$WORK/$2.dump/rank0_losses.txt" |
    awk -v label="$3" '{ d = $4 - $2; printf "%9d  %9.5f  %9.5f  %+10.2e\n", $1, $2, $4, d;
      if (d < 0) d = -d; if (d > m) m = d } END { printf "%s %.3e\n", label, m }'
}
