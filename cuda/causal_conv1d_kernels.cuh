// Causal depthwise conv1d + bias + SiLU kernels, forward and backward (cuda/causal_conv1d.h for the
// semantics). Built as CUDA (causal_conv1d.cu) or as C++ for the SIMT emulator (tests/cuda/simt),
// through the element access, launch and emulation vocabulary of selective_scan_kernels.cuh.
//
// Method. A block takes a tile of kConvTileDims channels of one batch item and walks
// `tiles_per_block` consecutive tiles of kConvTileSteps time steps. Each tile of x (with the
// width - 1 steps before it: the causal halo) is read once into shared memory with the 256 threads
// along whichever of x's axes is contiguous (coalesced for [B, D, L] rows and for a
// channel-contiguous view of a [B, L, D] array alike), and every output is then
// computed from shared memory and written along out's contiguous axis: the layout change costs no
// pass of its own. The shared arrays are [step][channel] with a row of 33 floats, so that walking
// either axis is free of bank conflicts.
//   The backward recomputes pre = conv(x) + bias from x, forms g = dout * silu'(pre) for the tile
//   and
// the width - 1 steps after it (which dx of the tile's last steps needs), then
// dx[s] = sum_k w[k] g[s + width - 1 - k] and the tile's share of dweight[k] = sum_t g[t] x[t -
// width + 1 + k] and dbias = sum_t g[t]; those are summed in registers over the block's tiles and
// added with one float atomic per channel and block.
#pragma once

#include "cuda/causal_conv1d_launch.h"
#include "cuda/selective_scan_kernels.cuh"

namespace umamba::cuda::detail {

constexpr int kConvHalo = kConvMaxWidth - 1;  // steps before a tile the widest filter reads
constexpr int kConvRow = kConvTileDims + 1;   // shared-memory row: 33 floats (no bank conflicts)

__device__ __forceinline__ float conv_sigmoid(float x) {
  return 1.f / (1.f + __expf(-x));
}

// The block's task: batch b, first channel c0, first time tile of its walk.
struct ConvTask {
  int b, c0, tile0;
};
__device__ __forceinline__ ConvTask conv_task(const ConvParams& p) {
  const int blk = static_cast<int>(blockIdx.x);
  const int tb = blk % p.time_blocks;
  const int rest = blk / p.time_blocks;
  return {rest / p.dim_tiles, (rest % p.dim_tiles) * kConvTileDims, tb * p.tiles_per_block};
}

// Rows [0, kRows) of a [step][channel] shared tile from a [B, D, L] array with strides (sd, st)
// (batch offset already applied): steps t_first + r, channels c0 + c; 0 outside [0, len) x [0,
// dim). Threads run along the contiguous axis (channels when sd == 1, else steps). All of a
// thread's loads are issued before its stores to shared memory (a fixed trip count, unrolled):
// with one load in flight a thread, the forward moved a quarter of the card's bandwidth.
template <typename T, int kRows>
__device__ __forceinline__ void conv_load_tile(float* tile, const T* base, const ConvStrides& s,
                                               int t_first, int c0, int len, int dim) {
  const std::int64_t sd = s.dim, st = s.time;
  constexpr int kCount = kRows * kConvTileDims;
  constexpr int kPerThread = (kCount + kConvThreads - 1) / kConvThreads;
  const bool by_channel = sd == 1;
  float v[kPerThread];
#pragma unroll
  for (int j = 0; j < kPerThread; ++j) {
    const int i = static_cast<int>(threadIdx.x) + j * kConvThreads;
    const int r = by_channel ? i / kConvTileDims : i % kRows;
    const int c = by_channel ? i % kConvTileDims : i / kRows;
    const int t = t_first + r, ch = c0 + c;
    v[j] = 0.f;
    if (i < kCount && t >= 0 && t < len && ch < dim) v[j] = Elem<T>::load(base + ch * sd + t * st);
  }
#pragma unroll
  for (int j = 0; j < kPerThread; ++j) {
    const int i = static_cast<int>(threadIdx.x) + j * kConvThreads;
    const int r = by_channel ? i / kConvTileDims : i % kRows;
    const int c = by_channel ? i % kConvTileDims : i / kRows;
    if (i < kCount) tile[r * kConvRow + c] = v[j];
  }
}

// The (channel, step) pairs of a tile for the threads, along the output's contiguous axis:
// `i` -> (c, r).
__device__ __forceinline__ void conv_pair(int i, bool by_channel, int& c, int& r) {
  c = by_channel ? i % kConvTileDims : i / kConvTileSteps;
  r = by_channel ? i / kConvTileDims : i % kConvTileSteps;
}

// The weights and biases of the block's channels c0.. into shared memory (0 beyond dim and width).
__device__ __forceinline__ void conv_stage_weights(const ConvParams& p, int c0, float* ws,
                                                   float* bs) {
  for (int i = threadIdx.x; i < kConvTileDims; i += blockDim.x) {
    const int ch = c0 + i;
    for (int k = 0; k < kConvMaxWidth; ++k)
      ws[i * kConvMaxWidth + k] = ch < p.dim && k < p.width ? p.weight[ch * p.width + k] : 0.f;
    bs[i] = ch < p.dim && p.bias ? p.bias[ch] : 0.f;
  }
}

// pre = bias + sum_k w[k] x[t - (W - 1) + k] for channel c at tile row r, from an x tile that
// starts kConvHalo steps before the tile (x[t - (W - 1) + k] is its row r + kConvHalo - (W - 1) +
// k).
__device__ __forceinline__ float conv_pre(const float* xs, const float* ws, const float* bs, int r,
                                          int c, int W) {
  const float* xr = xs + (r + kConvHalo - (W - 1)) * kConvRow + c;
  float acc = bs[c];
  for (int k = 0; k < W; ++k) acc = fmaf(ws[c * kConvMaxWidth + k], xr[k * kConvRow], acc);
  return acc;
}

template <typename T>
__global__ void __launch_bounds__(kConvThreads, 4) conv_fwd_kernel(const ConvParams p) {
  __shared__ float xs[(kConvTileSteps + kConvHalo) * kConvRow];
  __shared__ float ws[kConvTileDims * kConvMaxWidth];
  __shared__ float bs[kConvTileDims];
  const ConvTask task = conv_task(p);
  conv_stage_weights(p, task.c0, ws, bs);
  const T* x = static_cast<const T*>(p.x) + task.b * p.xs.batch;
  T* out = static_cast<T*>(p.out) + task.b * p.os.batch;
  const bool out_by_channel = p.os.dim == 1;
  for (int j = 0; j < p.tiles_per_block; ++j) {
    const int t0 = (task.tile0 + j) * kConvTileSteps;
    if (t0 >= p.len) break;
    __syncthreads();  // the previous tile's readers are done (and ws, bs are written)
    conv_load_tile<T, kConvTileSteps + kConvHalo>(xs, x, p.xs, t0 - kConvHalo, task.c0, p.len,
                                                  p.dim);
    __syncthreads();
    for (int i = threadIdx.x; i < kConvTileSteps * kConvTileDims; i += blockDim.x) {
      int c, r;
      conv_pair(i, out_by_channel, c, r);
      const int t = t0 + r, ch = task.c0 + c;
      if (t >= p.len || ch >= p.dim) continue;
      float acc = conv_pre(xs, ws, bs, r, c, p.width);
      if (p.silu) acc *= conv_sigmoid(acc);
      Elem<T>::store(out + ch * p.os.dim + static_cast<std::int64_t>(t) * p.os.time, acc);
    }
  }
}

template <typename T>  // (T unused: one instantiation per dtype, no shared symbol)
__global__ void __launch_bounds__(kConvThreads) conv_zero_kernel(const ConvParams p) {
  for (int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x); i < p.dim * p.width;
       i += static_cast<int>(gridDim.x * blockDim.x)) {
    p.dweight[i] = 0.f;
    if (p.dbias && i < p.dim) p.dbias[i] = 0.f;
  }
}

template <typename T>
__global__ void __launch_bounds__(kConvThreads, 3) conv_bwd_kernel(const ConvParams p) {
  constexpr int kXRows = kConvTileSteps + 2 * kConvHalo;  // x at t0 - halo .. t0 + steps + halo
  constexpr int kGRows = kConvTileSteps + kConvHalo;      // g at t0 .. t0 + steps + halo
  constexpr int kParts = kConvThreads / kConvTileDims;    // threads summing one channel's sums
  constexpr int kPartSteps = kConvTileSteps / kParts;
  __shared__ float xs[kXRows * kConvRow];
  __shared__ float gs[kGRows * kConvRow];
  __shared__ float ws[kConvTileDims * kConvMaxWidth];
  __shared__ float bs[kConvTileDims];
  const ConvTask task = conv_task(p);
  const int W = p.width;
  conv_stage_weights(p, task.c0, ws, bs);
  const T* x = static_cast<const T*>(p.x) + task.b * p.xs.batch;
  const T* dout = static_cast<const T*>(p.dout) + task.b * p.gs.batch;
  T* dx = static_cast<T*>(p.dx) + task.b * p.dxs.batch;
  const bool g_by_channel = p.gs.dim == 1, dx_by_channel = p.dxs.dim == 1;
  // This thread's share of the per-channel sums: channel sum_c, steps [sum_r0, sum_r0 + kPartSteps)
  // of each tile (a channel's kParts threads are consecutive lanes).
  const int sum_c = static_cast<int>(threadIdx.x) / kParts;
  const int sum_r0 = (static_cast<int>(threadIdx.x) % kParts) * kPartSteps;
  float dw[kConvMaxWidth] = {0.f, 0.f, 0.f, 0.f};
  float db = 0.f;
  for (int j = 0; j < p.tiles_per_block; ++j) {
    const int t0 = (task.tile0 + j) * kConvTileSteps;
    if (t0 >= p.len) break;
    __syncthreads();  // the previous tile's readers are done (and ws, bs are written)
    conv_load_tile<T, kXRows>(xs, x, p.xs, t0 - kConvHalo, task.c0, p.len, p.dim);
    conv_load_tile<T, kGRows>(gs, dout, p.gs, t0, task.c0, p.len, p.dim);
    __syncthreads();
    // g = dout * silu'(pre) in place, for the tile and the halo after it (0 beyond len); without
    // SiLU, g = dout.
    if (p.silu) {
      for (int i = threadIdx.x; i < kGRows * kConvTileDims; i += blockDim.x) {
        const int c = g_by_channel ? i % kConvTileDims : i / kGRows;
        const int r = g_by_channel ? i / kConvTileDims : i % kGRows;
        const float pre = conv_pre(xs, ws, bs, r, c, W);
        const float sg = conv_sigmoid(pre);
        gs[r * kConvRow + c] *= sg * fmaf(pre, 1.f - sg, 1.f);  // silu'(p) = s (1 + p (1 - s))
      }
      __syncthreads();
    }
    // dx[s] = sum_k w[k] g[s + W - 1 - k] (g is 0 at and beyond len).
    for (int i = threadIdx.x; i < kConvTileSteps * kConvTileDims; i += blockDim.x) {
      int c, r;
      conv_pair(i, dx_by_channel, c, r);
      const int t = t0 + r, ch = task.c0 + c;
      if (t >= p.len || ch >= p.dim) continue;
      float acc = 0.f;
      for (int k = 0; k < W; ++k)
        acc = fmaf(ws[c * kConvMaxWidth + k], gs[(r + W - 1 - k) * kConvRow + c], acc);
      Elem<T>::store(dx + ch * p.dxs.dim + static_cast<std::int64_t>(t) * p.dxs.time, acc);
    }
    // dweight, dbias: the tile's own steps (rows beyond len hold g = 0).
    for (int r = sum_r0; r < sum_r0 + kPartSteps; ++r) {
      const float g = gs[r * kConvRow + sum_c];
      const float* xr = xs + (r + kConvHalo - (W - 1)) * kConvRow + sum_c;
      db += g;
#pragma unroll
      for (int k = 0; k < kConvMaxWidth; ++k)
        if (k < W) dw[k] = fmaf(g, xr[k * kConvRow], dw[k]);
    }
  }
  // Sum the kParts consecutive lanes of each channel, then one atomic per channel and sum.
#pragma unroll
  for (int off = 1; off < kParts; off <<= 1) {
    db += __shfl_xor_sync(kFull, db, off);
#pragma unroll
    for (int k = 0; k < kConvMaxWidth; ++k) dw[k] += __shfl_xor_sync(kFull, dw[k], off);
  }
  const int ch = task.c0 + sum_c;
  if (static_cast<int>(threadIdx.x) % kParts == 0 && ch < p.dim) {
    for (int k = 0; k < W; ++k) atomicAdd(p.dweight + ch * W + k, dw[k]);
    if (p.dbias) atomicAdd(p.dbias + ch, db);
  }
}

inline std::int64_t conv_blocks(const ConvParams& p) {
  return static_cast<std::int64_t>(p.batch) * p.dim_tiles * p.time_blocks;
}

template <typename T>
int launch_conv_forward(const ConvParams& p, Stream stream) {
  launch_kernel(conv_fwd_kernel<T>, conv_blocks(p), kConvThreads, 0, stream, p);
  return launch_error();
}

template <typename T>
int launch_conv_backward(const ConvParams& p, Stream stream) {
  const int zero_blocks = (p.dim * p.width + kConvThreads - 1) / kConvThreads;
  launch_kernel(conv_zero_kernel<T>, std::min(zero_blocks, 1024), kConvThreads, 0, stream, p);
  if (const int e = launch_error()) return e;
  launch_kernel(conv_bwd_kernel<T>, conv_blocks(p), kConvThreads, 0, stream, p);
  return launch_error();
}

}  // namespace umamba::cuda::detail
