#!/bin/sh
# Soak run of `umamba predict` (issue 14): N predictions over mixed inputs in one process, with
# faults injected along the way, sampling the process's resident memory and its GPU memory once a
# second. Prints the figures: RSS and GPU MiB at the start and end of the first and the last tenth
# of the run, the peaks, and
# the exit status (= number of inputs that failed, capped at 63).
#
#   tests/reliability/soak_predict.sh UMAMBA_BINARY MODEL_DIR WORK_DIR [N=1000] [DEVICE=cuda:0]
#
# Inputs (N in all, cycled): the bundled 2D image (examples/data/dsb2018/img2d.tif), the two 3D
# go-nuclear stacks (predicted slice by slice by a 2D model), a truncated TIFF and an empty file
# (these two fail every time, as they should). Faults (UMAMBA_FAULT_INJECT): out of memory in
# model calls 50-51 (retried with 2, then 1 tile per call: that file succeeds, at one tile per
# call) and 2000-2002 (one tile fails too: on a GPU that file falls back to the CPU, on the CPU it
# fails; which file depends on the model's patch size), a failed rename of the label of
# case_0017, a failed write of the 300th output, an unreadable 700th open.
# Memory is read from /proc/<pid>/status (VmRSS) and nvidia-smi (used memory of the process).
# Outputs: WORK_DIR/out (labels, manifest), WORK_DIR/memory.csv (seconds, rss_mib, gpu_mib),
# WORK_DIR/predict.log.
set -eu
bin=$1
model=$2
work=$3
n=${4:-1000}
device=${5:-cuda:0}
root=$(cd "$(dirname "$0")/../.." && pwd)
in="$work/in"
rm -rf "$work"
mkdir -p "$in"
good=$(head -c 100000 "$root/examples/data/dsb2018/img2d.tif" | wc -c)
i=0
while [ $i -lt "$n" ]; do
  name=$(printf "case_%04d" $i)
  case $((i % 10)) in
    0 | 1 | 2 | 3 | 4 | 5) cp "$root/examples/data/dsb2018/img2d.tif" "$in/$name.tif" ;;
    6 | 7) cp "$root/examples/data/go-nuclear/1135_mini_raw.tif" "$in/$name.tif" ;;
    8) cp "$root/examples/data/go-nuclear/1136_mini_raw.tif" "$in/$name.tif" ;;
    9)
      if [ $((i % 20)) -eq 9 ]; then
        head -c $((good / 3)) "$root/examples/data/dsb2018/img2d.tif" >"$in/$name.tif"
      else
        : >"$in/$name.tif"
      fi ;;
  esac
  i=$((i + 1))
done
export UMAMBA_FAULT_INJECT="alloc:50-51,alloc:2000-2002,rename:1+@_0017_label,write:300,read:700"
"$bin" predict "$in" -o "$work/out" -m "$model" --device "$device" --progress lines \
  >"$work/predict.log" 2>&1 &
pid=$!
echo "seconds,rss_mib,gpu_mib" >"$work/memory.csv"
t=0
while kill -0 $pid 2>/dev/null; do
  rss=$(awk '/^VmRSS:/ {print $2}' /proc/$pid/status 2>/dev/null || true)
  gpu=$(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits 2>/dev/null |
    awk -F', *' -v p=$pid '$1 == p {print $2}' | head -1)
  [ -n "$rss" ] && echo "$t,$((rss / 1024)),${gpu:-0}" >>"$work/memory.csv"
  sleep 1
  t=$((t + 1))
done
status=0
wait $pid || status=$?
echo "exit status $status (failed inputs, capped at 63); log $work/predict.log"
grep -c "^.*done case_" "$work/predict.log" | sed 's/^/inputs done: /'
grep -c "FAILED case_" "$work/predict.log" | sed 's/^/inputs failed: /'
grep -c "running this file on the CPU instead" "$work/predict.log" | sed 's/^/CPU fallbacks: /' || true
awk -F, 'NR > 1 {r[NR] = $2; g[NR] = $3; if ($2 > pr) pr = $2; if ($3 > pg) pg = $3; n = NR}
  END {
    k = int((n - 1) / 10); if (k < 1) k = 1;
    printf "samples %d; peak RSS %d MiB, peak GPU %d MiB\n", n - 1, pr, pg;
    printf "first tenth: RSS %d..%d MiB, GPU %d..%d MiB\n", r[2], r[1 + k], g[2], g[1 + k];
    printf "last tenth:  RSS %d..%d MiB, GPU %d..%d MiB\n", r[n - k + 1], r[n], g[n - k + 1], g[n];
  }' "$work/memory.csv"
