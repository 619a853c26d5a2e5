#!/bin/sh
# Runs every fuzz target for a fixed number of executions under AddressSanitizer +
# UndefinedBehaviorSanitizer (libFuzzer, clang) and prints the executions each one completed.
#
#   scripts/fuzz-long.sh [--runs N] [--build DIR] [--targets "fuzz_tiff fuzz_nifti fuzz_torch_file"]
#                        [--max-seconds S] [--rss-limit-mb M] [--tolerate-known]
#
# --runs         executions per target (default 1000000)
# --build        build folder (default <repo>/build-fuzz-long); the reader targets are built in
#                DIR/readers (no LibTorch), the checkpoint target in DIR/torch (with LibTorch)
# --max-seconds  also stop each target after S seconds (default 0: no time limit)
# --rss-limit-mb libFuzzer's limit on the whole process (default 2048); its in-memory corpus and
#                AddressSanitizer's quarantine grow over a long run, so 10^6 executions of the
#                checkpoint target need more (4096)
# --tolerate-known  count the two known findings of fuzz_torch_file (see fuzz_torch_file.cpp and
#                tests/fuzz/regressions/torch-*.pth-seed) instead of stopping at them, and print
#                how often they happened; drop it once src/model/torch_file.cpp fixes them
# Seeds: the real example files and tests/fuzz/seeds (readers), tests/fuzz/seeds-torch
# (checkpoints), and past findings in tests/fuzz/regressions. The corpus grows in DIR/corpus-*;
# a crash, leak, hang (-timeout=10 s per input) or allocation over 1 GB stops that target and
# leaves DIR/<target>-crash-* (or leak-*, timeout-*, oom-*), and the script exits 1.
# Output, one line per target at the end:  fuzz_tiff: 1000000 runs, ok (123 s)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
runs=1000000
build="$root/build-fuzz-long"
targets="fuzz_tiff fuzz_nifti fuzz_torch_file"
max_seconds=0
rss_limit_mb=2048
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --targets) targets=$2; shift 2 ;;
    --max-seconds) max_seconds=$2; shift 2 ;;
    --rss-limit-mb) rss_limit_mb=$2; shift 2 ;;
    --tolerate-known) export UMAMBA_FUZZ_TOLERATE_KNOWN=1; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "fuzz-long.sh: unknown argument $1" >&2; exit 64 ;;
  esac
done
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
python=${UMAMBA_PYTHON:-$root/.venv/bin/python}

configure() {  # folder, UMAMBA_TORCH value
  if [ ! -f "$1/build.ninja" ]; then
    mkdir -p "$1"
    CC=clang CXX=clang++ cmake -S "$root" -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DUMAMBA_FUZZ=ON -DUMAMBA_TORCH="$2" -DUMAMBA_OPENCV=OFF -DUMAMBA_CUDA=OFF \
      -DUMAMBA_TESTS=ON -DUMAMBA_PYTHON="$python" -DUMAMBA_MODEL_PCH=OFF \
      "-DCMAKE_C_FLAGS=$flags" "-DCMAKE_CXX_FLAGS=$flags" >"$1.configure.log" 2>&1 ||
      { cat "$1.configure.log"; exit 1; }
  fi
}

seed_dir() {  # target -> folder of seeds
  s="$build/seeds-$1"
  mkdir -p "$s"
  case $1 in
    fuzz_tiff)
      cp -f "$root"/examples/data/dsb2018/*.tif "$root"/examples/data/go-nuclear/*.tif \
        "$root"/tests/fuzz/seeds/*.tif "$root"/tests/fuzz/regressions/*.tif "$s/" ;;
    fuzz_nifti)
      cp -f "$root"/examples/data/totalsegmentator/*.nii.gz "$root"/tests/fuzz/seeds/*.nii* "$s/" ;;
    fuzz_torch_file)
      cp -f "$root"/tests/fuzz/seeds-torch/* "$s/"
      for f in "$root"/tests/fuzz/regressions/*.pth-seed "$root"/tests/fuzz/regressions/*.pth-crash \
        "$root"/tests/fuzz/regressions/*.pth-timeout; do
        [ -e "$f" ] && cp -f "$f" "$s/"
      done ;;
  esac
  echo "$s"
}

summary=""
status=0
for t in $targets; do
  case $t in
    fuzz_torch_file) dir="$build/torch"; configure "$dir" ON ;;
    *) dir="$build/readers"; configure "$dir" OFF ;;
  esac
  cmake --build "$dir" --target "$t" -j 2 >"$dir.$t.build.log" 2>&1 ||
    { tail -40 "$dir.$t.build.log"; exit 1; }
  seeds=$(seed_dir "$t")
  mkdir -p "$build/corpus-$t"
  log="$build/$t.log"
  echo "== $t: $runs runs (log $log)"
  start=$(date +%s)
  rc=0
  supp=""
  if [ "$t" = fuzz_torch_file ]; then
    # A leak inside LibTorch's zip reader (see the file) is not ours to fix.
    supp="suppressions=$root/tests/fuzz/lsan-torch.supp:print_suppressions=0"
  fi
  (cd "$build" && LSAN_OPTIONS="$supp" "$dir/tests/fuzz/$t" -runs="$runs" -max_total_time="$max_seconds" -timeout=10 \
    -max_len=131072 -malloc_limit_mb=1024 -rss_limit_mb="$rss_limit_mb" -print_final_stats=1 \
    -artifact_prefix="$build/$t-" "corpus-$t" "$seeds") >"$log" 2>&1 || rc=$?
  end=$(date +%s)
  done_runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [ $rc -eq 0 ]; then verdict=ok; else verdict="FINDING (exit $rc, see $log)"; status=1; fi
  known=$(sed -n 's/^fuzz_torch_file: known findings tolerated: //p' "$log" | tail -1)
  [ -n "$known" ] && verdict="$verdict; known findings tolerated: $known"
  line="$t: ${done_runs:-?} runs, $verdict ($((end - start)) s)"
  echo "$line"
  summary="$summary$line
"
done
echo "== summary (ASan+UBSan, clang, runs requested per target: $runs)"
printf "%s" "$summary"
exit $status
