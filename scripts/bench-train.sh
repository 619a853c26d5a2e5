#!/usr/bin/env bash
# bench-train.sh: one GPU's training step with and without the CUDA graph (`--cuda-graph on|off`,
# src/train/step.h), for the U-Mamba paper's microscopy configuration (2D, patch 512²) with
# U-Mamba_Bot and U-Mamba_Enc, on synthetic cells from `umamba synth`. Builds nothing: pass the
# umamba binary of a CUDA build (build-gpu).
#
#   scripts/bench-train.sh UMAMBA_BINARY [WORK_DIR]
#
# For each architecture:
#  1. loss: BENCH_LOSS_ITERS iterations with the graph off and on, augmentation off, same seed, so
#     both see the same samples; the per-iteration losses side by side (the graph replays the same
#     kernels: they differ by cuDNN's and the scan's non-deterministic reductions only), and with
#     BENCH_NOISE=1 the ordinary run once more, whose difference to the first is that noise;
#  2. throughput, for each batch size of BENCH_BATCHES: 2 epochs × BENCH_ITERS iterations with
#     augmentation on, graph off then on; samples/s from the second epoch (the first holds cuDNN's
#     autotuning, the warm-up and the capture), and the ratio on / off.
# Environment:
#   BENCH_ITERS       40          iterations per epoch of the throughput runs
#   BENCH_LOSS_ITERS  20          iterations of the loss comparison (0: skip it)
#   BENCH_ARCHS       "bot enc"   architectures
#   BENCH_BATCHES     "12 6"      batch sizes (12: the paper's; 6: one GPU's share of it on two;
#                                 empty: no throughput runs)
#   BENCH_NOISE       1           also repeat the ordinary loss run (0: skip)
#   BENCH_PRECISION   bf16        bf16, fp16 or fp32
#   BENCH_IMAGES      16          synthetic images (1024² each)
#   BENCH_WORKERS     4           batch threads
# WORK_DIR (default: a new temporary folder) keeps the data, plans, model folders and logs.
set -euo pipefail

# shellcheck source=lib/train-bench.sh
BENCH_NAME=bench-train
source "$(dirname "$(realpath "$0")")/lib/train-bench.sh"
bench_start 1 "$@"
ITERS=${BENCH_ITERS:-40}
LOSS_ITERS=${BENCH_LOSS_ITERS:-20}
ARCHS=${BENCH_ARCHS:-bot enc}
BATCHES=${BENCH_BATCHES:-12 6}
PRECISION=${BENCH_PRECISION:-bf16}
IMAGES=${BENCH_IMAGES:-16}
WORKERS=${BENCH_WORKERS:-4}
BATCH=12
PORT=0 # one process: no rendezvous
unset UMAMBA_TRAIN_CUDA_GRAPH # each run names its setting

nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader | head -1
echo "patch 512x512, precision $PRECISION, batches $BATCHES"

prepare_data

for ARCH in $ARCHS; do
  if [[ "$LOSS_ITERS" -gt 0 ]]; then
    echo
    echo "== $ARCH: loss over $LOSS_ITERS iterations, same samples (augmentation off), batch $BATCH"
    for G in off on; do
      train_run "$ARCH-loss-graph-$G" 1 -a "$ARCH" --epochs 1 --iterations "$LOSS_ITERS" \
        --no-augment --cuda-graph "$G"
    done
    echo "iteration  loss_off   loss_on    difference"
    compare_losses "$ARCH-loss-graph-off" "$ARCH-loss-graph-on" "max |difference|"
    if [[ "${BENCH_NOISE:-1}" -eq 1 ]]; then
      train_run "$ARCH-loss-graph-off-again" 1 -a "$ARCH" --epochs 1 --iterations "$LOSS_ITERS" \
        --no-augment --cuda-graph off
      echo "noise: the ordinary run again (same samples, same settings)"
      echo "iteration  loss_off   again      difference"
      compare_losses "$ARCH-loss-graph-off" "$ARCH-loss-graph-off-again" \
        "noise: max |difference| between two ordinary runs"
    fi
  fi
  [[ -n "${BATCHES// /}" ]] || continue
  echo
  echo "== $ARCH: throughput, 2 epochs x $ITERS iterations (augmentation on), epoch 2 timed"
  for B in $BATCHES; do
    for G in off on; do
      RUN_BATCH=$B train_run "$ARCH-b$B-graph-$G" 1 -a "$ARCH" --epochs 2 --iterations "$ITERS" \
        --cuda-graph "$G"
    done
    awk -v s0="$(epoch2_seconds "$ARCH-b$B-graph-off")" -v s1="$(epoch2_seconds "$ARCH-b$B-graph-on")" \
      -v m0="$(epoch2_peak "$ARCH-b$B-graph-off")" -v m1="$(epoch2_peak "$ARCH-b$B-graph-on")" \
      -v w1="$(epoch2_wait "$ARCH-b$B-graph-on")" -v n="$ITERS" -v b="$B" -v a="$ARCH" 'BEGIN {
        printf "%s batch %2d graph off: %7.2f samples/s (%.4f s/iteration, peak %.2f GB)\n", a, b, n * b / s0, s0 / n, m0;
        printf "%s batch %2d graph on : %7.2f samples/s (%.4f s/iteration, peak %.2f GB, data wait %.2f s)\n", a, b, n * b / s1, s1 / n, m1, w1;
        printf "%s batch %2d ratio on / off: %.2f\n", a, b, s0 / s1 }'
  done
done
echo
echo "== bench-train done: $(date -u +%FT%TZ); logs in $WORK"
