#!/usr/bin/env bash
# bench-ddp.sh: data-parallel training on 2 GPUs against 1 GPU, for the U-Mamba paper's microscopy
# configuration (2D, patch 512², global batch 12) with U-Mamba_Bot and U-Mamba_Enc, on synthetic
# cells from `umamba synth`. Builds nothing: pass the umamba binary of a CUDA build (build-gpu).
#
#   scripts/bench-ddp.sh UMAMBA_BINARY [WORK_DIR]
#
# For each architecture:
#  1. loss trajectory: BENCH_LOSS_ITERS iterations on 1 GPU (batch 12) and on 2 GPUs (2 processes
#     × 6) with augmentation off and --dist-sampling global-slice (rank r takes samples r, r+2, ...
#     of the 1-GPU batch), so both see the same samples; the per-iteration losses side by side
#     (they differ by mixed-precision rounding only);
#  2. throughput: 2 epochs × BENCH_ITERS iterations with augmentation on (each rank its own batch
#     stream), no validation; samples/s = BENCH_ITERS × 12 / seconds of the second epoch (the
#     first holds cuDNN's autotuning and the warm-up), and the ratio 2 GPUs / 1 GPU;
#  3. weak scaling (BENCH_WEAK=1, the default): 2 GPUs with 12 patches each (global batch 24)
#     against the 1-GPU run, samples/s and ratio;
#  4. noise (BENCH_NOISE=1, the default): the 1-GPU loss run again, the largest difference between
#     the two 1-GPU runs (cuDNN and atomics are not deterministic), beside the 1 vs 2 GPU one;
#  5. the per-GPU share alone (BENCH_HALF=1, the default): 1 GPU training on 6 patches a step, whose
#     samples/s times 2 bound what 2 GPUs can reach at a global batch of 12 (data parallelism
#     splits the batch; it cannot make a 6-patch step cheaper).
# Environment:
#   BENCH_ITERS       40          iterations per epoch of the throughput runs
#   BENCH_LOSS_ITERS  20          iterations of the loss comparison (0: skip it)
#   BENCH_ARCHS       "bot enc"   architectures
#   BENCH_PRECISION   bf16        bf16, fp16 or fp32
#   BENCH_IMAGES      16          synthetic images (1024² each)
#   BENCH_WORKERS     4           batch threads per process
#   BENCH_PORT        29531       rendezvous port on 127.0.0.1
#   BENCH_WEAK        1           also run the weak-scaling throughput (0: skip)
#   BENCH_NOISE       1           also repeat the 1-GPU loss run (0: skip)
#   BENCH_HALF        1           also time 1 GPU at half the batch (0: skip)
# WORK_DIR (default: a new temporary folder) keeps the data, plans, model folders and logs.
set -euo pipefail

# shellcheck source=lib/train-bench.sh
BENCH_NAME=bench-ddp
source "$(dirname "$(realpath "$0")")/lib/train-bench.sh"
bench_start 2 "$@"
ITERS=${BENCH_ITERS:-40}
LOSS_ITERS=${BENCH_LOSS_ITERS:-20}
ARCHS=${BENCH_ARCHS:-bot enc}
PRECISION=${BENCH_PRECISION:-bf16}
IMAGES=${BENCH_IMAGES:-16}
WORKERS=${BENCH_WORKERS:-4}
PORT=${BENCH_PORT:-29531}
BATCH=12
# NVLink SHARP (multicast) stays off on these machines (see the device notes).
export NCCL_NVLS_ENABLE=0

nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
echo "global batch $BATCH, patch 512x512, precision $PRECISION, NCCL_NVLS_ENABLE=$NCCL_NVLS_ENABLE"

prepare_data
echo "CUDA graph of the training step: ${UMAMBA_TRAIN_CUDA_GRAPH:-auto} (UMAMBA_TRAIN_CUDA_GRAPH)"

for ARCH in $ARCHS; do
  if [[ "$LOSS_ITERS" -gt 0 ]]; then
    echo
    echo "== $ARCH: loss over $LOSS_ITERS iterations, same samples (augmentation off)"
    train_run "$ARCH-loss-1gpu" 1 -a "$ARCH" --epochs 1 --iterations "$LOSS_ITERS" --no-augment \
      --dist-sampling global-slice
    train_run "$ARCH-loss-2gpu" 2 -a "$ARCH" --epochs 1 --iterations "$LOSS_ITERS" --no-augment \
      --dist-sampling global-slice
    grep -m1 "^training " "$WORK/$ARCH-loss-1gpu.log" || true
    grep -m1 "^data parallel" "$WORK/$ARCH-loss-2gpu.rank0.log" || true
    echo "iteration  loss_1gpu  loss_2gpu  difference"
    compare_losses "$ARCH-loss-1gpu" "$ARCH-loss-2gpu" "max |difference|"
    grep -h -m3 -E "NCCL INFO Channel 00.* via " "$WORK/$ARCH-loss-2gpu.rank0.log" || true
    if [[ "${BENCH_NOISE:-1}" -eq 1 ]]; then
      train_run "$ARCH-loss-1gpu-again" 1 -a "$ARCH" --epochs 1 --iterations "$LOSS_ITERS" --no-augment \
        --dist-sampling global-slice
      echo "noise: the 1-GPU run again (same samples, same settings)"
      echo "iteration  loss_1gpu  again      difference"
      compare_losses "$ARCH-loss-1gpu" "$ARCH-loss-1gpu-again" \
        "noise: max |difference| between two 1-GPU runs"
    fi
  fi

  echo
  echo "== $ARCH: throughput, 2 epochs x $ITERS iterations (augmentation on), epoch 2 timed"
  train_run "$ARCH-speed-1gpu" 1 -a "$ARCH" --epochs 2 --iterations "$ITERS"
  train_run "$ARCH-speed-2gpu" 2 -a "$ARCH" --epochs 2 --iterations "$ITERS"
  s1=$(epoch2_seconds "$ARCH-speed-1gpu")
  s2=$(epoch2_seconds "$ARCH-speed-2gpu")
  awk -v s1="$s1" -v s2="$s2" -v n="$ITERS" -v b="$BATCH" -v m1="$(epoch2_peak "$ARCH-speed-1gpu")" \
    -v m2="$(epoch2_peak "$ARCH-speed-2gpu")" -v a="$ARCH" 'BEGIN {
      r1 = n * b / s1; r2 = n * b / s2;
      printf "%s 1 GPU : %7.2f samples/s (%.3f s/iteration, peak %.2f GB)\n", a, r1, s1 / n, m1;
      printf "%s 2 GPUs: %7.2f samples/s (%.3f s/iteration, peak %.2f GB on rank 0)\n", a, r2, s2 / n, m2;
      printf "%s ratio 2 GPUs / 1 GPU: %.2f\n", a, r2 / r1 }'
  echo "$ARCH data wait in epoch 2 (s): 1 GPU $(epoch2_wait "$ARCH-speed-1gpu"), 2 GPUs rank 0 $(epoch2_wait "$ARCH-speed-2gpu")"
  if [[ "${BENCH_HALF:-1}" -eq 1 ]]; then
    RUN_BATCH=$((BATCH / 2)) train_run "$ARCH-speed-1gpu-half" 1 -a "$ARCH" --epochs 2 --iterations "$ITERS"
    s4=$(epoch2_seconds "$ARCH-speed-1gpu-half")
    awk -v s1="$s1" -v s4="$s4" -v n="$ITERS" -v b="$BATCH" -v a="$ARCH" 'BEGIN {
        r1 = n * b / s1; r4 = n * (b / 2) / s4;
        printf "%s 1 GPU, %d per step: %7.2f samples/s (%.3f s/iteration); 2 GPUs at %d each can reach at most %.2f x\n", a, b / 2, r4, s4 / n, b / 2, 2 * r4 / r1 }'
  fi
  if [[ "${BENCH_WEAK:-1}" -eq 1 ]]; then
    # Weak scaling: each GPU keeps the paper's batch of 12 (global batch 24).
    RUN_BATCH=$((2 * BATCH)) train_run "$ARCH-speed-2gpu-weak" 2 -a "$ARCH" --epochs 2 --iterations "$ITERS"
    s3=$(epoch2_seconds "$ARCH-speed-2gpu-weak")
    awk -v s1="$s1" -v s3="$s3" -v n="$ITERS" -v b="$BATCH" -v m3="$(epoch2_peak "$ARCH-speed-2gpu-weak")" \
      -v a="$ARCH" 'BEGIN {
        r1 = n * b / s1; r3 = n * 2 * b / s3;
        printf "%s 2 GPUs, %d per GPU: %7.2f samples/s (%.3f s/iteration, peak %.2f GB on rank 0)\n", a, b, r3, s3 / n, m3;
        printf "%s ratio 2 GPUs (%d per GPU) / 1 GPU (%d): %.2f\n", a, b, b, r3 / r1 }'
  fi
done
echo
echo "== bench-ddp done: $(date -u +%FT%TZ); logs in $WORK"
