// Selective-scan kernels (Mamba-1 S6, real diagonal A, variable B/C): forward and backward.
//
// Method. The recurrence h_t = a_t * h_{t-1} + b_t (per state n, a_t = exp(dt_t * A_n),
// b_t = dt_t * B_t[n] * u_t) is a linear scan with the associative operator
// (a1, b1) o (a2, b2) = (a1 * a2, a2 * b1 + b2) (Blelloch 1990; Martin & Cundy 2018; used for
// Mamba's kernel by Gu & Dao 2023, arXiv 2312.00752 §3.3). Here every thread owns K consecutive
// time steps of one row (batch b, channel d) and walks them sequentially in registers, one state
// at a time; the 32 lanes of a warp join their pieces with a shuffle scan once per state per tile
// (32*K steps), not once per step: per (step, state) the forward costs one ex2 and four
// multiply-adds. The decay exp(dt*A) is computed once per (step, state) and kept in a register
// between the local pass and the pass that applies the carried-in state.
//   Long rows (len > 64 forward, > 128 backward) use K = 8, 256-step tiles walked in order (the
// backward from the end), the state carried in shared memory. A block's warps take channels of one
// batch over the same time range, so the B and C tiles of all states are loaded once per block,
// coalesced, into shared memory. Rows too few to fill the GPU are cut into segments: a summary pass
// computes each segment's (decay, state) pair from a zero start and each segment folds the
// summaries before it (after it, backward) - the chunked scan of Blelloch's three-phase method.
// Short rows put 32/lanes rows in one warp and load directly.
//   The forward writes the output and, for the backward, the state every kStateChunk (256) steps
// (1/16 of a float per step and state: no state sequence in global memory). The backward
// recomputes the forward inside each tile from the saved state, runs the adjoint recurrence
// g_t = dy_t C_t + a_{t+1} g_{t+1} as a reverse scan (same operator), and forms all gradients.
// dB and dC, shared by all channels of a batch, are summed over the block's channels in shared
// memory before one atomic add per block and tile; dA, dD and ddelta_bias are reduced per row and
// added atomically once per segment.
//
// Limits: nstate <= 64; len < 2^31; fp32 state and arithmetic (ex2.approx, about 2 ulp); bf16/fp16
// only for storage. Sums over the batch and over segments use float atomics, so dA, dB, dC, dD and
// ddelta_bias are not bitwise reproducible run to run (the differences are at rounding level).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "cuda/selective_scan_launch.h"

// Built as CUDA, or as C++ for the SIMT emulator (tests/cuda/simt: UMAMBA_SIMT_EMULATION, the
// emulator's header included first), which runs these kernels on the CPU in CI. The differences
// are confined to this block, the launchers at the end and the asynchronous copies (copy_async and
// its waits: a plain copy, no-ops): exp2f for ex2.approx, the dynamic shared memory, the vector
// atomics and how a kernel is launched.
#ifdef UMAMBA_SIMT_EMULATION
#define UMAMBA_DYNAMIC_SHARED(name) \
  float* name = static_cast<float*>(::umamba::simt::dynamic_shared())
#define UMAMBA_VECTOR_ATOMICS 1
#else
#define UMAMBA_DYNAMIC_SHARED(name) extern __shared__ __align__(16) float name[]
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define UMAMBA_VECTOR_ATOMICS 1  // atomicAdd on float4 (sm_90)
#endif
#endif

namespace umamba::cuda::detail {

constexpr unsigned kFull = 0xffffffffu;
constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ float ex2(float x) {
#ifdef __CUDA_ARCH__
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#else
  return exp2f(x);
#endif
}
__device__ __forceinline__ float lg2(float x) {
#ifdef __CUDA_ARCH__
  float y;
  asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#else
  return log2f(x);
#endif
}
// softplus(x) = ln(1 + t), t = e^x, from ex2 and lg2 (20 instructions where log1pf(__expf(x)) took
// 44 on sm_90, 8 times per lane and tile in every kernel): below t = 0.1 the series of ln(1 + t) to
// t^5 (truncation under 2e-6 relative), above it lg2.approx(1 + t) ln 2 (1 + t >= 1.1: under 2e-6
// relative); x itself above 20, as before.
__device__ __forceinline__ float softplus_f(float x) {
  constexpr float kLn2 = 0.6931471805599453f;
  const float t = ex2(x * kLog2e);
  const float series = t * (1.f - t * (0.5f - t * (1.f / 3.f - t * (0.25f - t * 0.2f))));
  const float log_form = lg2(1.f + t) * kLn2;
  return x > 20.f ? x : (t < 0.1f ? series : log_form);
}
__device__ __forceinline__ float sigmoid_f(float x) {
  return __frcp_rn(1.f + __expf(-x));
}

// Sum over the `width` lanes of each lane group (width: power of two <= 32).
__device__ __forceinline__ float group_sum(float v, int width) {
  for (int off = width >> 1; off > 0; off >>= 1) v += __shfl_xor_sync(kFull, v, off, width);
  return v;
}

// ---- element access: scalar and 16-byte loads/stores converting to and from float

template <typename T>
struct Elem;

template <>
struct Elem<float> {
  static constexpr int kVec = 4;
  static __device__ __forceinline__ float load(const float* p) { return __ldg(p); }
  static __device__ __forceinline__ void store(float* p, float v) { *p = v; }
  static __device__ __forceinline__ void load_vec(const float* p, float* o) {
    const float4 v = __ldg(reinterpret_cast<const float4*>(p));
    o[0] = v.x;
    o[1] = v.y;
    o[2] = v.z;
    o[3] = v.w;
  }
  static __device__ __forceinline__ void store_vec(float* p, const float* v) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  }
};

__device__ __forceinline__ float lo_bf16(unsigned w) {
  return __uint_as_float(w << 16);
}
__device__ __forceinline__ float hi_bf16(unsigned w) {
  return __uint_as_float(w & 0xffff0000u);
}
__device__ __forceinline__ unsigned pack_bf16(float a, float b) {
  return static_cast<unsigned>(__bfloat16_as_ushort(__float2bfloat16_rn(a))) |
         (static_cast<unsigned>(__bfloat16_as_ushort(__float2bfloat16_rn(b))) << 16);
}
__device__ __forceinline__ float lo_f16(unsigned w) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(w & 0xffffu)));
}
__device__ __forceinline__ float hi_f16(unsigned w) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(w >> 16)));
}
__device__ __forceinline__ unsigned pack_f16(float a, float b) {
  return static_cast<unsigned>(__half_as_ushort(__float2half_rn(a))) |
         (static_cast<unsigned>(__half_as_ushort(__float2half_rn(b))) << 16);
}

template <>
struct Elem<__nv_bfloat16> {
  static constexpr int kVec = 8;
  static __device__ __forceinline__ float load(const __nv_bfloat16* p) {
    return __bfloat162float(__ldg(p));
  }
  static __device__ __forceinline__ void store(__nv_bfloat16* p, float v) {
    *p = __float2bfloat16_rn(v);
  }
  static __device__ __forceinline__ void unpack(const uint4& r, float* o) {
    o[0] = lo_bf16(r.x);
    o[1] = hi_bf16(r.x);
    o[2] = lo_bf16(r.y);
    o[3] = hi_bf16(r.y);
    o[4] = lo_bf16(r.z);
    o[5] = hi_bf16(r.z);
    o[6] = lo_bf16(r.w);
    o[7] = hi_bf16(r.w);
  }
  static __device__ __forceinline__ void load_vec(const __nv_bfloat16* p, float* o) {
    unpack(__ldg(reinterpret_cast<const uint4*>(p)), o);
  }
  static __device__ __forceinline__ void store_vec(__nv_bfloat16* p, const float* v) {
    *reinterpret_cast<uint4*>(p) = make_uint4(pack_bf16(v[0], v[1]), pack_bf16(v[2], v[3]),
                                              pack_bf16(v[4], v[5]), pack_bf16(v[6], v[7]));
  }
};

template <>
struct Elem<__half> {
  static constexpr int kVec = 8;
  static __device__ __forceinline__ float load(const __half* p) { return __half2float(__ldg(p)); }
  static __device__ __forceinline__ void store(__half* p, float v) { *p = __float2half_rn(v); }
  static __device__ __forceinline__ void unpack(const uint4& r, float* o) {
    o[0] = lo_f16(r.x);
    o[1] = hi_f16(r.x);
    o[2] = lo_f16(r.y);
    o[3] = hi_f16(r.y);
    o[4] = lo_f16(r.z);
    o[5] = hi_f16(r.z);
    o[6] = lo_f16(r.w);
    o[7] = hi_f16(r.w);
  }
  static __device__ __forceinline__ void load_vec(const __half* p, float* o) {
    unpack(__ldg(reinterpret_cast<const uint4*>(p)), o);
  }
  static __device__ __forceinline__ void store_vec(__half* p, const float* v) {
    *reinterpret_cast<uint4*>(p) = make_uint4(pack_f16(v[0], v[1]), pack_f16(v[2], v[3]),
                                              pack_f16(v[4], v[5]), pack_f16(v[6], v[7]));
  }
};

// K consecutive elements starting at p; `left` = elements from p to the end of the range (any
// int: <= 0 reads nothing, >= K reads all); out-of-range elements read as 0. The 16-byte path is
// chosen by `left >= K` directly: written as max(0, min(K, left)) == K, nvcc 13.0 (sm_90) folded
// the clamp into a VIMNMX.RELU predicate that also took partial runs down the vector path.
template <typename T, int K>
__device__ __forceinline__ void load_run(const T* p, int left, bool vec, float (&v)[K]) {
  constexpr int V = Elem<T>::kVec;
  static_assert(K % V == 0, "a run must be a whole number of 16-byte vectors");
  if (vec && left >= K) {
#pragma unroll
    for (int i = 0; i < K; i += V) Elem<T>::load_vec(p + i, v + i);
  } else {
#pragma unroll
    for (int k = 0; k < K; ++k) v[k] = k < left ? Elem<T>::load(p + k) : 0.f;
  }
}

template <typename T, int K>
__device__ __forceinline__ void store_run(T* p, int left, bool vec, const float (&v)[K]) {
  constexpr int V = Elem<T>::kVec;
  if (vec && left >= K) {
#pragma unroll
    for (int i = 0; i < K; i += V) Elem<T>::store_vec(p + i, v + i);
  } else {
#pragma unroll
    for (int k = 0; k < K; ++k)
      if (k < left) Elem<T>::store(p + k, v[k]);
  }
}

// ---- block staging of B and C tiles through shared memory
//
// A thread's K consecutive steps of a B or C row would be read with K-strided (uncoalesced) loads,
// and every warp of a block (channels of one batch) needs the same B and C values. So the block
// loads the tile of up to kStageStates rows of B and of C once, coalesced (16-byte accesses),
// converts it to float in shared memory, and each lane reads its K values back. Index e of a row
// is stored at e + 4*(e/32): the padding keeps both the coalesced float4 writes and the per-lane
// float4 reads (K = 8 or 16) free of bank conflicts.
constexpr int kStageStates = 16;  // B/C rows staged at once (a group of states)

__device__ __forceinline__ int stage_index(int e) {
  return e + ((e >> 5) << 2);
}

template <int K>
__host__ __device__ constexpr int stage_floats() {
  return 32 * K + K * 4;  // 32*K values + 4 pad floats per 32
}

// Asynchronous 16- or 4-byte copies global -> shared (cp.async, sm_80+): `bytes` (0 to `kSize`)
// are read, the rest of the kSize bytes zero-filled. A thread's copies are waited for by
// stage_wait(). Without a CUDA device (the SIMT emulator) a plain copy.
template <int kSize>
__device__ __forceinline__ void copy_async(void* dst, const void* src, int bytes) {
#ifdef UMAMBA_SIMT_EMULATION
  for (int i = 0; i < kSize; ++i)
    static_cast<unsigned char*>(dst)[i] = i < bytes ? static_cast<const unsigned char*>(src)[i] : 0;
#else
  const auto d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  if constexpr (kSize == 16)
    asm volatile("cp.async.ca.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(bytes));
  else
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(d), "l"(src), "r"(bytes));
#endif
}

// The V elements of `row` from element e, those before `len` read and the rest zero-filled, to dst
// (V * sizeof(T) = 4 or 16 bytes, aligned both ways). The source stays inside the row when nothing
// is read.
template <typename T, int V>
__device__ __forceinline__ void copy_elements_async(void* dst, const T* row, int e, int len) {
  constexpr int kBytes = V * static_cast<int>(sizeof(T));
  static_assert(kBytes == 4 || kBytes == 16, "cp.async copies 4 or 16 bytes here");
  if constexpr (V == 1) {
    copy_async<kBytes>(dst, row + (e < len ? e : 0), e < len ? kBytes : 0);
  } else {
    const int in = min(max(len - e, 0), V);
    copy_async<kBytes>(dst, row + (in > 0 ? e : 0), in * static_cast<int>(sizeof(T)));
  }
}

// Waits for this thread's copies of stage_rows (fp32 rows); the caller's __syncthreads that follows
// publishes them to the block.
__device__ __forceinline__ void stage_wait() {
#ifndef UMAMBA_SIMT_EMULATION
  asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}

// Groups of asynchronous copies: commit this thread's copies issued so far as one group; wait
// until at most kPending of its groups are still in flight.
__device__ __forceinline__ void copy_commit() {
#ifndef UMAMBA_SIMT_EMULATION
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
template <int kPending>
__device__ __forceinline__ void copy_wait() {
#ifndef UMAMBA_SIMT_EMULATION
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
#endif
}

// Rows r < nrows of a tile [0, 32*K) (`left` steps in range) from base + r*stride into
// buf + r*stage_floats<K>(), by all threads of the block. The caller calls stage_wait() and
// synchronises the block after it (and before it, if buf was in use).
//   Rows are copied asynchronously (cp.async) wherever they allow it: fp32 rows as floats (16- or
// 4-byte copies into the padded layout), 16-byte aligned bf16/fp16 rows as they are (read_stage
// converts them, one 16-byte read a lane). No registers, and all of a thread's copies in flight at
// once: the loop of a load and a store per iteration that it replaces waited out a load's latency
// every iteration, and on rows of one tile the backward's staging of 16 states (8 to 32
// iterations a thread) was most of its warps' stalls on global memory (ncu, H200, (2, 640, 210)
// fp32: long-scoreboard 4.0 of 11.6 cycles per instruction). Unaligned 16-bit rows still take that
// loop (cp.async copies 4, 8 or 16 bytes).
template <typename T, int K>
__device__ __forceinline__ void stage_rows(const T* base, std::int64_t stride, int nrows, int left,
                                           bool vec, float* buf) {
  constexpr int V = Elem<T>::kVec;
  constexpr int kTile = 32 * K;
  constexpr int kSF = stage_floats<K>();
  if constexpr (std::is_same_v<T, float>) {
    if (vec) {
      constexpr int kPerRow = kTile / 4;
      for (int i = threadIdx.x; i < nrows * kPerRow; i += blockDim.x) {
        const int r = i / kPerRow;
        const int e = (i - r * kPerRow) * 4;
        copy_elements_async<T, 4>(buf + r * kSF + stage_index(e), base + r * stride, e, left);
      }
    } else {
      for (int i = threadIdx.x; i < nrows * kTile; i += blockDim.x) {
        const int r = i / kTile;
        const int e = i - r * kTile;
        copy_elements_async<T, 1>(buf + r * kSF + stage_index(e), base + r * stride, e, left);
      }
    }
  } else if (vec) {  // 16-bit rows as they are: 8 elements a copy
    static_assert(K == 8, "16-bit staging: one 16-byte read a lane (8 steps)");
    constexpr int kPerRow = kTile / V;
    for (int i = threadIdx.x; i < nrows * kPerRow; i += blockDim.x) {
      const int r = i / kPerRow;
      const int e = (i - r * kPerRow) * V;
      copy_elements_async<T, V>(reinterpret_cast<T*>(buf + r * kSF) + e, base + r * stride, e,
                                left);
    }
  } else {  // unaligned 16-bit rows: element-wise, through registers
    for (int i = threadIdx.x; i < nrows * kTile; i += blockDim.x) {
      const int r = i / kTile;
      const int e = i - r * kTile;
      reinterpret_cast<T*>(buf + r * kSF)[e] = e < left ? base[r * stride + e] : T(0.f);
    }
  }
}

template <int K>
__device__ __forceinline__ void read_staged(const float* buf, int lane, float (&v)[K]) {
#pragma unroll
  for (int j = 0; j < K; j += 4) {
    const float4 x = *reinterpret_cast<const float4*>(buf + stage_index(lane * K + j));
    v[j] = x.x;
    v[j + 1] = x.y;
    v[j + 2] = x.z;
    v[j + 3] = x.w;
  }
}

// A lane's K values of a row staged by stage_rows<T, K>: floats for fp32 rows, the 16-bit elements
// themselves (one 16-byte read, converted here) for bf16/fp16 rows.
template <typename T, int K>
__device__ __forceinline__ void read_stage(const float* buf, int lane, float (&v)[K]) {
  if constexpr (std::is_same_v<T, float>) {
    read_staged<K>(buf, lane, v);
  } else {
    static_assert(K % 8 == 0, "16-bit staging: 16-byte reads");
#pragma unroll
    for (int j = 0; j < K / 8; ++j)  // (K = 16: two-way bank conflicts, one-tile forward only)
      Elem<T>::unpack(reinterpret_cast<const uint4*>(buf)[lane * (K / 8) + j], v + 8 * j);
  }
}

// ---- a warp's row through its shared-memory slot
//
// When one row fills the warp (32 lanes x K steps), lane l's run of K consecutive steps, read
// directly, makes every load instruction touch K times the cache lines of a coalesced read (8 x
// 128-byte lines for 32 B a lane): on rows whose length breaks the 16-byte alignment, element-wise
// loads 8 apart kept the L1 at 74 % of its throughput on (2, 640, 210) fp32, the forward's bound
// (ncu, H200). Instead the warp reads the row coalesced (32 lanes on consecutive elements or
// 16-byte vectors), stores it to its slot (stage_index layout, conflict-free both ways) and each
// lane reads its run back. The caller orders slot reuse with __syncwarp.
template <typename T, int K>
__device__ __forceinline__ void warp_fill_slot(const T* row, int len, bool vec, int lane,
                                               float* slot) {
  constexpr int V = Elem<T>::kVec;
  if (vec) {
#pragma unroll
    for (int i = 0; i < K / V; ++i) {
      const int e = (i * 32 + lane) * V;
      float v[V];
      if (e + V <= len) {
        Elem<T>::load_vec(row + e, v);
      } else {
#pragma unroll
        for (int j = 0; j < V; ++j) v[j] = e + j < len ? Elem<T>::load(row + e + j) : 0.f;
      }
#pragma unroll
      for (int j = 0; j < V; j += 4)
        *reinterpret_cast<float4*>(slot + stage_index(e + j)) =
            make_float4(v[j], v[j + 1], v[j + 2], v[j + 3]);
    }
  } else {
#pragma unroll
    for (int i = 0; i < K; ++i) {
      const int e = i * 32 + lane;
      slot[stage_index(e)] = e < len ? Elem<T>::load(row + e) : 0.f;
    }
  }
}

// The same fill with asynchronous copies (cp.async), so that the next state's B and C are in
// flight while this state is computed; committed as one group by the caller. fp32 rows as floats
// in the stage_index layout; 16-bit rows (16-byte aligned only) as they are, read back by
// read_stage<T, K>.
template <typename T, int K>
__device__ __forceinline__ void warp_fill_slot_async(const T* row, int len, bool vec, int lane,
                                                     float* slot) {
  if constexpr (!std::is_same_v<T, float>) {
#pragma unroll
    for (int i = 0; i < K / 8; ++i) {
      const int e = (i * 32 + lane) * 8;
      copy_elements_async<T, 8>(reinterpret_cast<T*>(slot) + e, row, e, len);
    }
  } else if (vec) {
#pragma unroll
    for (int i = 0; i < K / 4; ++i) {
      const int e = (i * 32 + lane) * 4;
      copy_elements_async<T, 4>(slot + stage_index(e), row, e, len);
    }
  } else {
#pragma unroll
    for (int i = 0; i < K; ++i) {
      const int e = i * 32 + lane;
      copy_elements_async<T, 1>(slot + stage_index(e), row, e, len);
    }
  }
}

// The reverse: each lane's K values into the slot, then the warp writes the row's first `len`
// elements coalesced. Ends with the slot free again.
template <typename T, int K>
__device__ __forceinline__ void warp_write_row(T* row, int len, bool vec, int lane, float* slot,
                                               const float (&v)[K]) {
  constexpr int V = Elem<T>::kVec;
  __syncwarp();
#pragma unroll
  for (int j = 0; j < K; j += 4)
    *reinterpret_cast<float4*>(slot + stage_index(lane * K + j)) =
        make_float4(v[j], v[j + 1], v[j + 2], v[j + 3]);
  __syncwarp();
  if (vec) {
#pragma unroll
    for (int i = 0; i < K / V; ++i) {
      const int e = (i * 32 + lane) * V;
      float x[V];
#pragma unroll
      for (int j = 0; j < V; j += 4) {
        const float4 f = *reinterpret_cast<const float4*>(slot + stage_index(e + j));
        x[j] = f.x;
        x[j + 1] = f.y;
        x[j + 2] = f.z;
        x[j + 3] = f.w;
      }
      if (e + V <= len) {
        Elem<T>::store_vec(row + e, x);
      } else {
#pragma unroll
        for (int j = 0; j < V; ++j)
          if (e + j < len) Elem<T>::store(row + e + j, x[j]);
      }
    }
  } else {
#pragma unroll
    for (int i = 0; i < K; ++i) {
      const int e = i * 32 + lane;
      if (e < len) Elem<T>::store(row + e, slot[stage_index(e)]);
    }
  }
  __syncwarp();
}

// dt = softplus(delta + bias) (or delta + bias) on the valid steps, 0 beyond: a step with dt = 0
// has decay 1 and input 0, the identity of the scan, so padded steps leave the state unchanged.
template <int K>
__device__ __forceinline__ float make_dt(float (&dt)[K], int valid, float bias, bool softplus) {
  float sum = 0.f;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const float x = dt[k] + bias;
    dt[k] = k < valid ? (softplus ? softplus_f(x) : x) : 0.f;
    sum += dt[k];
  }
  return sum;
}

// Inclusive scan of (decay P, state s) pairs over groups of `width` lanes, in lane order. The
// conditional update (predicated copies of both values) rather than scan_up_down's selects: the
// select form, applied here, raised the bf16 forward long kernel from 80 to 110 registers (4
// instead of 6 blocks per SM; H200: 40 % slower).
__device__ __forceinline__ void scan_up(float& P, float& s, int sub, int width) {
  for (int off = 1; off < width; off <<= 1) {
    const float Pp = __shfl_up_sync(kFull, P, off, width);
    const float sp = __shfl_up_sync(kFull, s, off, width);
    if (sub >= off) {
      s = fmaf(P, sp, s);
      P *= Pp;
    }
  }
}

// Both at once, level by level (the backward): (P, s) in lane order as scan_up, (Pr, W) in reverse
// lane order as scan_down. A lane with no partner at a distance combines with the identity (1, 0)
// through selects: fewer instructions in the backward's state loop than the conditional form.
__device__ __forceinline__ void scan_up_down(float& P, float& s, float& Pr, float& W, int sub,
                                             int width) {
  for (int off = 1; off < width; off <<= 1) {
    const float Pp = __shfl_up_sync(kFull, P, off, width);
    const float sp = __shfl_up_sync(kFull, s, off, width);
    const float Pn = __shfl_down_sync(kFull, Pr, off, width);
    const float Wn = __shfl_down_sync(kFull, W, off, width);
    const bool up = sub >= off, down = sub + off < width;
    s = fmaf(P, up ? sp : 0.f, s);
    P *= up ? Pp : 1.f;
    W = fmaf(Pr, down ? Wn : 0.f, W);
    Pr *= down ? Pn : 1.f;
  }
}

// Inclusive scan in reverse lane order: w_first = W + P * w_right.
__device__ __forceinline__ void scan_down(float& P, float& W, int sub, int width) {
  for (int off = 1; off < width; off <<= 1) {
    const float Pn = __shfl_down_sync(kFull, P, off, width);
    const float Wn = __shfl_down_sync(kFull, W, off, width);
    const bool has = sub + off < width;
    W = fmaf(P, has ? Wn : 0.f, W);
    P *= has ? Pn : 1.f;
  }
}

// ================================ forward ================================

// The work of a warp in the long-row and summary kernels: blocks enumerate the row's segments
// fastest (`seg_tasks` of them, from `first_seg`), then groups of `per_block` channels of one
// batch, then batches; the block's warps take consecutive channels. A warp past the last channel
// computes on the last one and writes nothing (`active` false, uniform over the warp).
struct SegmentTask {
  int seg, b, d;
  bool active;
  std::int64_t row;  // b * dim + d
};
__device__ __forceinline__ SegmentTask segment_task(int dim, int seg_tasks, int first_seg,
                                                    int per_block, int warp) {
  const int groups = (dim + per_block - 1) / per_block;
  const int rest = static_cast<int>(blockIdx.x / seg_tasks);
  const int b = rest / groups;
  const int d_raw = (rest % groups) * per_block + warp;
  const bool active = d_raw < dim;
  const int d = active ? d_raw : dim - 1;
  return {first_seg + static_cast<int>(blockIdx.x % seg_tasks), b, d, active,
          static_cast<std::int64_t>(b) * dim + d};
}

// Short rows (len <= 32 * kFwdItems): one tile each, 32/lanes rows per warp, direct loads. Rows
// longer than kStateChunk save the states the backward starts its tiles from. With state_split
// S > 1, S warps of a block take the same rows, each a share of the states, and add their outputs
// through shared memory: a row's work is a chain over the states, too short to hide its latency
// when rows are few, and S warps walk S shorter chains at once.
//   kWhole (lanes == 32, one row a warp): rows are read and written coalesced through the warp's
// slots - u, delta and z by warp_fill_slot, out by warp_write_row, B and C double-buffered by
// cp.async (warp_fill_slot_async), the next state's in flight while this one is computed. A
// template parameter: both paths in one kernel took 78 registers to 102 (8 steps a lane) and
// spilled at 16.
template <typename T, int K, bool kWhole>
__global__ void __launch_bounds__(kFwdWarps * 32, K == 8 ? 6 : 4)
    scan_fwd_short_kernel(const FwdParams p) {
  __shared__ float s_y[kFwdWarps][K][32];  // partial outputs of warps sharing rows (S > 1)
  // kWhole: B and C of two states (double buffer) per warp; u, delta, z and out pass through the
  // second one's before and after the state loop.
  __shared__ __align__(16) float s_slot[kWhole ? kFwdWarps : 1][4][kWhole ? stage_floats<K>() : 4];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int S = p.state_split;
  const int part = warp % S;
  const int G = kWhole ? 32 : p.lanes;  // a compile-time 32 unrolls the lane scan
  const int N = p.nstate;
  const int rpw = 32 / G;
  const std::int64_t rows = static_cast<std::int64_t>(p.batch) * p.dim;
  const std::int64_t task = static_cast<std::int64_t>(blockIdx.x) * (kFwdWarps / S) + warp / S;
  if (S == 1 && task * rpw >= rows) return;  // (with S > 1 every warp meets the barrier below)
  std::int64_t row = task * rpw + lane / G;
  const int sub = lane & (G - 1);
  const bool active = row < rows;
  if (!active) row = rows - 1;
  const int b = static_cast<int>(row / p.dim);
  const int d = static_cast<int>(row % p.dim);
  const T* u_row = static_cast<const T*>(p.u) + b * p.u_sb + d * p.u_sd;
  const T* dl_row = static_cast<const T*>(p.delta) + b * p.dl_sb + d * p.dl_sd;
  const T* B_b = static_cast<const T*>(p.B) + b * p.B_sb;
  const T* C_b = static_cast<const T*>(p.C) + b * p.C_sb;
  const float* A_row = p.A + static_cast<std::int64_t>(d) * N;
  const float Dv = p.D && part == 0 ? __ldg(p.D + d) : 0.f;  // the skip term: once per row
  const float bias = p.delta_bias ? __ldg(p.delta_bias + d) : 0.f;
  const int my_t = sub * K;
  const int valid = p.len - my_t;  // in-range steps from my_t (may be <= 0 or > K)
  float* const slot_b = s_slot[kWhole ? warp : 0][2];
  float* const slot_c = s_slot[kWhole ? warp : 0][3];
  const int n_begin = part * N / S, n_end = (part + 1) * N / S;
  if constexpr (kWhole) {  // the first state's B and C in flight during the prologue
    warp_fill_slot_async<T, K>(B_b + n_begin * p.B_sn, p.len, p.vec, lane, s_slot[warp][0]);
    warp_fill_slot_async<T, K>(C_b + n_begin * p.C_sn, p.len, p.vec, lane, s_slot[warp][1]);
    copy_commit();
  }
  float dt[K], dtu[K], y[K];
  float dt_sum;
  {
    float uv[K];
    if constexpr (kWhole) {
      warp_fill_slot<T, K>(u_row, p.len, p.vec, lane, slot_b);
      warp_fill_slot<T, K>(dl_row, p.len, p.vec, lane, slot_c);
      __syncwarp();
      read_staged<K>(slot_b, lane, uv);
      read_staged<K>(slot_c, lane, dt);
    } else {
      load_run<T, K>(u_row + my_t, valid, p.vec, uv);
      load_run<T, K>(dl_row + my_t, valid, p.vec, dt);
    }
    dt_sum = make_dt<K>(dt, valid, bias, p.softplus);
#pragma unroll
    for (int k = 0; k < K; ++k) {
      dtu[k] = dt[k] * uv[k];
      y[k] = Dv * uv[k];
    }
  }
#pragma unroll 1
  for (int n = n_begin; n < n_end; ++n) {
    const float a = __ldg(A_row + n) * kLog2e;
    float bv[K], cv[K], dA[K];
    float* const cur_b = s_slot[kWhole ? warp : 0][((n - n_begin) & 1) * 2];
    float* const cur_c = cur_b + stage_floats<K>();
    if constexpr (kWhole) {
      __syncwarp();  // every lane is done with the other buffer (state n - 1, or u and delta)
      if (n + 1 < n_end) {
        float* const next_b = s_slot[warp][((n + 1 - n_begin) & 1) * 2];
        warp_fill_slot_async<T, K>(B_b + (n + 1) * p.B_sn, p.len, p.vec, lane, next_b);
        warp_fill_slot_async<T, K>(C_b + (n + 1) * p.C_sn, p.len, p.vec, lane,
                                   next_b + stage_floats<K>());
        copy_commit();
        copy_wait<1>();  // this state's group has landed
      } else {
        copy_wait<0>();
      }
      __syncwarp();                       // ... for every lane
      read_stage<T, K>(cur_b, lane, bv);  // C is read where it is used, B again there too: the
    } else {                              // buffers stay valid, and neither lives across the scan
      load_run<T, K>(B_b + n * p.B_sn + my_t, valid, p.vec, bv);
      load_run<T, K>(C_b + n * p.C_sn + my_t, valid, p.vec, cv);
    }
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      dA[k] = ex2(dt[k] * a);
      bv[k] *= dtu[k];
      s = fmaf(dA[k], s, bv[k]);
    }
    float P = ex2(a * dt_sum);
    scan_up(P, s, sub, G);
    float h = __shfl_up_sync(kFull, s, 1, G);
    if (sub == 0) h = 0.f;
    if (p.states && active && my_t > 0 && my_t < p.len && my_t % kStateChunk == 0)
      p.states[(row * p.chunks + my_t / kStateChunk) * N + n] = h;
    if constexpr (kWhole) {
      read_stage<T, K>(cur_b, lane, bv);
      read_stage<T, K>(cur_c, lane, cv);
#pragma unroll
      for (int k = 0; k < K; ++k) {
        h = fmaf(dA[k], h, bv[k] * dtu[k]);
        y[k] = fmaf(cv[k], h, y[k]);
      }
    } else {
#pragma unroll
      for (int k = 0; k < K; ++k) {
        h = fmaf(dA[k], h, bv[k]);
        y[k] = fmaf(cv[k], h, y[k]);
      }
    }
  }
  if (S > 1) {
#pragma unroll
    for (int k = 0; k < K; ++k) s_y[warp][k][lane] = y[k];
    __syncthreads();
    if (part != 0) return;
    for (int j = 1; j < S; ++j)
#pragma unroll
      for (int k = 0; k < K; ++k) y[k] += s_y[warp + j][k][lane];
  }
  if (p.z) {
    float zv[K];
    const T* z_row = static_cast<const T*>(p.z) + b * p.z_sb + d * p.z_sd;
    if constexpr (kWhole) {
      __syncwarp();
      warp_fill_slot<T, K>(z_row, p.len, p.vec, lane, slot_b);
      __syncwarp();
      read_staged<K>(slot_b, lane, zv);
    } else {
      load_run<T, K>(z_row + my_t, valid, p.vec, zv);
    }
#pragma unroll
    for (int k = 0; k < K; ++k) y[k] *= zv[k] * sigmoid_f(zv[k]);
  }
  T* const out_row = static_cast<T*>(p.out) + b * p.o_sb + d * p.o_sd;
  if constexpr (kWhole) {
    if (active) warp_write_row<T, K>(out_row, p.len, p.vec, lane, slot_c, y);
  } else if (active) {
    store_run<T, K>(out_row + my_t, valid, p.vec, y);
  }
}

// Forward segment summaries (segments 0..S-2): each segment's end state from a zero start,
//   h_end(n) = sum_t 2^(a_n T_t) x_t B_t(n), x_t = dt_t u_t, T_t = sum of dt over (t, segment end),
// (a_n = A_n log2 e) and the segment's sum of dt, which scan_fwd_long_kernel folds into the state
// entering each later segment. Unlike the main pass this needs no scan per state: the decays are
// suffix sums of dt, shared by all states, so a state costs one ex2, one product and one FMA per
// step (the main pass's state loop, run as the summary before, cost 0.66 of the main pass on
// (12, 128, 65536) bf16: ncu, H200). A warp takes one channel over one segment, tiles from the last
// to the first; each lane sums its own steps' terms per state in registers (kStageStates states at
// a time) and the warp reduces them once at the end. The block's warps are channels of one batch:
// B is staged per tile for all of them (read directly, its load latency stalled the warps: ncu).
template <typename T>
__global__ void __launch_bounds__(kFwdWarps * 32, 5) scan_fwd_summary_kernel(const FwdParams p) {
  constexpr int K = kLongItems;
  constexpr int G = kStageStates;
  constexpr int kSF = stage_floats<K>();
  __shared__ __align__(16) float s_b[G * kSF];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int N = p.nstate;
  // Pieces of seg_len / pieces steps: a segment's summary is that of its pieces folded, and finer
  // pieces give the pass more, shorter blocks (the main kernel folds pieces, not segments).
  const int P = p.segments * p.pieces;
  const int piece_len = p.seg_len / p.pieces;
  // (every warp takes part in the staging, active or not)
  const auto [piece, b, d, active, row] =
      segment_task(p.dim, (p.segments - 1) * p.pieces, 0, kFwdWarps, warp);
  const int t_begin = piece * piece_len;
  const int t_end = min(p.len, t_begin + piece_len);
  const int ntiles = (t_end - t_begin + kStateChunk - 1) / kStateChunk;
  const T* u_row = static_cast<const T*>(p.u) + b * p.u_sb + d * p.u_sd;
  const T* dl_row = static_cast<const T*>(p.delta) + b * p.dl_sb + d * p.dl_sd;
  const T* B_b = static_cast<const T*>(p.B) + b * p.B_sb;
  const float* A_row = p.A + static_cast<std::int64_t>(d) * N;
  const float bias = p.delta_bias ? __ldg(p.delta_bias + d) : 0.f;
  float* out = p.summary + (row * P + piece) * (N + 1);

  float seg_dt = 0.f;  // uniform over the warp
#pragma unroll 1
  for (int n0 = 0; n0 < N; n0 += G) {
    const int ng = min(G, N - n0);
    float a[G], acc[G];
#pragma unroll
    for (int j = 0; j < G; ++j) {
      a[j] = j < ng ? __ldg(A_row + n0 + j) * kLog2e : 0.f;
      acc[j] = 0.f;
    }
    seg_dt = 0.f;
#pragma unroll 1
    for (int it = ntiles - 1; it >= 0; --it) {
      const int t0 = t_begin + it * kStateChunk;
      const int my_t = t0 + lane * K;
      const int valid = t_end - my_t;
      __syncthreads();  // the previous tile's readers are done with s_b
      stage_rows<T, K>(B_b + n0 * p.B_sn + t0, p.B_sn, ng, t_end - t0, p.vec, s_b);
      float dt[K], x[K], Tk[K];
      load_run<T, K>(u_row + my_t, valid, p.vec, x);
      load_run<T, K>(dl_row + my_t, valid, p.vec, dt);
      const float mine = make_dt<K>(dt, valid, bias, p.softplus);
      float after = mine;  // then: the sum of dt over lanes >= this one
#pragma unroll
      for (int off = 1; off < 32; off <<= 1) {
        const float v = __shfl_down_sync(kFull, after, off);
        if (lane + off < 32) after += v;
      }
      float T_after = seg_dt + (after - mine);  // dt after my last step, to the segment's end
#pragma unroll
      for (int k = K - 1; k >= 0; --k) {
        Tk[k] = T_after;
        T_after += dt[k];
        x[k] *= dt[k];
      }
      seg_dt += __shfl_sync(kFull, after, 0);
      stage_wait();
      __syncthreads();
#pragma unroll
      for (int j = 0; j < G; ++j) {
        if (j < ng) {
          float bv[K];
          read_stage<T, K>(s_b + j * kSF, lane, bv);
          float sum = 0.f;
#pragma unroll
          for (int k = 0; k < K; ++k) sum = fmaf(ex2(a[j] * Tk[k]), x[k] * bv[k], sum);
          acc[j] += sum;
        }
      }
    }
#pragma unroll
    for (int j = 0; j < G; ++j) {
      if (j < ng) {
        const float v = group_sum(acc[j], 32);
        if (active && lane == 0) out[n0 + j] = v;
      }
    }
  }
  if (active && lane == 0) out[N] = seg_dt;
}

// Long rows: a block's warps take kFwdWarps channels of one batch over one segment, 256-step tiles
// in order, the state carried in shared memory; B and C tiles are staged per block. The state
// entering a segment folds the summaries of the segments before it (scan_fwd_summary_kernel).
template <typename T>
__global__ void __launch_bounds__(kFwdWarps * 32, 4) scan_fwd_long_kernel(const FwdParams p) {
  constexpr int K = kLongItems;
  constexpr int kSF = stage_floats<K>();
  __shared__ float s_carry[kFwdWarps][kMaxState];
  __shared__ __align__(16) float s_bc[2 * kStageStates * kSF];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int N = p.nstate;
  const int S = p.segments;
  const auto [seg, b, d, active, row] = segment_task(p.dim, S, 0, kFwdWarps, warp);
  const int t_begin = seg * p.seg_len;
  const int t_end = min(p.len, t_begin + p.seg_len);

  const T* u_row = static_cast<const T*>(p.u) + b * p.u_sb + d * p.u_sd;
  const T* dl_row = static_cast<const T*>(p.delta) + b * p.dl_sb + d * p.dl_sd;
  const T* B_b = static_cast<const T*>(p.B) + b * p.B_sb;
  const T* C_b = static_cast<const T*>(p.C) + b * p.C_sb;
  const float* A_row = p.A + static_cast<std::int64_t>(d) * N;
  const float Dv = p.D ? __ldg(p.D + d) : 0.f;
  const float bias = p.delta_bias ? __ldg(p.delta_bias + d) : 0.f;
  float* states_row = p.states ? p.states + row * p.chunks * N : nullptr;

  for (int n = lane; n < N; n += 32) {
    float h = 0.f;
    if (seg > 0) {  // fold the summaries of the pieces before this segment
      const float a = __ldg(A_row + n) * kLog2e;
      const float* sm = p.summary + row * S * p.pieces * (N + 1);
      for (int j = 0; j < seg * p.pieces; ++j)
        h = fmaf(ex2(a * sm[j * (N + 1) + N]), h, sm[j * (N + 1) + n]);
    }
    s_carry[warp][n] = h;
  }
  __syncwarp();

  for (int t0 = t_begin; t0 < t_end; t0 += 32 * K) {
    const int my_t = t0 + lane * K;
    const int valid = t_end - my_t;  // in-range steps from my_t (may be <= 0 or > K)
    float dt[K], dtu[K], y[K];
    float dt_sum;
    {
      float uv[K];
      load_run<T, K>(u_row + my_t, valid, p.vec, uv);
      load_run<T, K>(dl_row + my_t, valid, p.vec, dt);
      dt_sum = make_dt<K>(dt, valid, bias, p.softplus);
#pragma unroll
      for (int k = 0; k < K; ++k) {
        dtu[k] = dt[k] * uv[k];
        y[k] = Dv * uv[k];
      }
    }
#pragma unroll 1
    for (int n0 = 0; n0 < N; n0 += kStageStates) {
      const int ng = min(kStageStates, N - n0);
      __syncthreads();  // the previous group's readers are done with s_bc
      stage_rows<T, K>(B_b + n0 * p.B_sn + t0, p.B_sn, ng, t_end - t0, p.vec, s_bc);
      stage_rows<T, K>(C_b + n0 * p.C_sn + t0, p.C_sn, ng, t_end - t0, p.vec,
                       s_bc + kStageStates * kSF);
      stage_wait();
      __syncthreads();
      // A_n one state ahead: its load is not on the state's critical path.
      float a_next = __ldg(A_row + n0);
#pragma unroll 1
      for (int j = 0; j < ng; ++j) {
        const int n = n0 + j;
        const float a = a_next * kLog2e;
        if (j + 1 < ng) a_next = __ldg(A_row + n + 1);
        float bv[K], dA[K];
        read_stage<T, K>(s_bc + j * kSF, lane, bv);
        float s = 0.f;
#pragma unroll
        for (int k = 0; k < K; ++k) {
          dA[k] = ex2(dt[k] * a);
          bv[k] *= dtu[k];
          s = fmaf(dA[k], s, bv[k]);
        }
        float P = ex2(a * dt_sum);
        scan_up(P, s, lane, 32);
        const float carry = s_carry[warp][n];
        const float incl = fmaf(P, carry, s);  // state after my last step
        float h = __shfl_up_sync(kFull, incl, 1);
        if (lane == 0) h = carry;
        if (states_row && active && lane == 0 && (my_t % kStateChunk) == 0)
          states_row[(my_t / kStateChunk) * N + n] = h;
        float cv[K];
        read_stage<T, K>(s_bc + (kStageStates + j) * kSF, lane, cv);
#pragma unroll
        for (int k = 0; k < K; ++k) {
          h = fmaf(dA[k], h, bv[k]);
          y[k] = fmaf(cv[k], h, y[k]);
        }
        const float last = __shfl_sync(kFull, incl, 31);
        __syncwarp();
        if (lane == 0) s_carry[warp][n] = last;
      }
    }
    __syncwarp();
    if (active) {
      if (p.z) {
        float zv[K];
        load_run<T, K>(static_cast<const T*>(p.z) + b * p.z_sb + d * p.z_sd + my_t, valid, p.vec,
                       zv);
#pragma unroll
        for (int k = 0; k < K; ++k) y[k] *= zv[k] * sigmoid_f(zv[k]);
      }
      store_run<T, K>(static_cast<T*>(p.out) + b * p.o_sb + d * p.o_sd + my_t, valid, p.vec, y);
    }
  }
}

// ================================ backward ================================
// Backward of one row over one tile [t0, t0 + lanes*K) clipped to t_end. Lane `sub` of a group of
// `G` lanes owns K steps. s_w: this row's adjoint carries (nstate floats, entering from the right;
// updated to the carry leaving the tile on the left), or nullptr for single-tile rows. s_dA: this
// row's dA accumulators in shared memory, or nullptr to add to global memory directly. s_red: the
// block's dB/dC accumulators for this tile, or nullptr to add to global memory directly. s_wslot:
// this warp's 2 x kStateChunk floats for adding dB/dC with coalesced atomics per warp (long rows,
// G == 32), or nullptr. s_bc: the
// block's staged B and C tile (rows n of B at n*SF, of C at (kStageStates+n)*SF), or nullptr to
// load B and C directly (short rows); with stage_here, this call stages each group of
// kStageStates states itself (nstate > kStageStates; every warp of the block must call it).
//   kMode fixes at compile time which of these the caller passes (the pointers of the other modes
// are unused): a runtime test per step kept every path's address arithmetic in the inner loop.
enum class BwdMode {
  kShort,           // one tile per row, G lanes, direct loads, dB/dC atomics from registers
  kLongWarpSlots,   // long rows, staged B/C, dB/dC through the warp's slot (s_wslot)
  kLongBlockSlots,  // long rows, staged B/C, dB/dC summed over the block (s_red, s_slots)
};
template <typename T, BwdMode kMode, bool kStageHere = false>
__device__ __forceinline__ void bwd_row_tile(const BwdParams& p, std::int64_t row, int b, int d,
                                             int t0, int t_end, int sub, int G, bool active,
                                             float* s_w, float* s_dA, float* s_red, float* s_slots,
                                             float* s_wslot, float* s_bc, bool warp_reduce_bc,
                                             float& dD_part, float& dbias_part, int part = 0,
                                             int split = 1) {
  constexpr int K = kBwdItems;
  constexpr bool kLong = kMode != BwdMode::kShort;
  const int N = p.nstate;
  const int my_t = t0 + sub * K;
  const int valid = t_end - my_t;  // in-range steps from my_t (may be <= 0 or > K)
  const std::int64_t u_off = b * p.u_sb + d * p.u_sd + my_t;
  const std::int64_t dl_off = b * p.dl_sb + d * p.dl_sd + my_t;
  const std::int64_t do_off = b * p.do_sb + d * p.do_sd + my_t;
  const std::int64_t z_off = b * p.z_sb + d * p.z_sd + my_t;
  const float Dv = p.D ? __ldg(p.D + d) : 0.f;
  const float bias = p.delta_bias ? __ldg(p.delta_bias + d) : 0.f;

  float u[K], dt[K], dy[K], y[K], gB[K], dq[K];
  load_run<T, K>(static_cast<const T*>(p.u) + u_off, valid, p.vec, u);
  load_run<T, K>(static_cast<const T*>(p.delta) + dl_off, valid, p.vec, dt);
  const float dt_sum = make_dt<K>(dt, valid, bias, p.softplus);
  load_run<T, K>(static_cast<const T*>(p.dout) + do_off, valid, p.vec, dy);
  if (p.z) {
    float zv[K];
    load_run<T, K>(static_cast<const T*>(p.z) + z_off, valid, p.vec, zv);
#pragma unroll
    for (int k = 0; k < K; ++k) dy[k] *= zv[k] * sigmoid_f(zv[k]);  // dy = d out / d (y + D u)
  }
#pragma unroll
  for (int k = 0; k < K; ++k) {
    y[k] = part == 0 ? Dv * u[k] : 0.f;  // the skip term once per row (split: warp 0 of the row)
    gB[k] = 0.f;
    dq[k] = 0.f;
  }
  const float* st =
      (kLong && p.states && t0 > 0) ? p.states + (row * p.chunks + t0 / kStateChunk) * N : nullptr;
  // The tile's start states, loaded once: lane n holds state n (and n + 32), handed out by shuffle
  // (st is only set on long rows, where G == 32 and sub is the lane).
  float st_lo = 0.f, st_hi = 0.f;
  if (st) {
    if (sub < N) st_lo = st[sub];
    if (sub + 32 < N) st_hi = st[sub + 32];
  }
  const float* A_row = p.A + static_cast<std::int64_t>(d) * N;
  const T* B_b = static_cast<const T*>(p.B) + b * p.B_sb;
  const T* C_b = static_cast<const T*>(p.C) + b * p.C_sb;

  constexpr int kSF = stage_floats<K>();
#pragma unroll 1
  for (int n0 = 0; n0 < N; n0 += kStageStates) {
    const int ng = min(kStageStates, N - n0);
    if (kStageHere) {
      __syncthreads();
      stage_rows<T, K>(B_b + n0 * p.B_sn + t0, p.B_sn, ng, t_end - t0, p.vec, s_bc);
      stage_rows<T, K>(C_b + n0 * p.C_sn + t0, p.C_sn, ng, t_end - t0, p.vec,
                       s_bc + kStageStates * kSF);
      stage_wait();
      __syncthreads();
    }
    float a_next = part < ng ? __ldg(A_row + n0 + part) : 0.f;  // A_n one state ahead
#pragma unroll 1
    for (int j = part; j < ng; j += split) {
      const int n = n0 + j;
      const float a_nat = a_next;
      if (j + split < ng) a_next = __ldg(A_row + n + split);
      const float a = a_nat * kLog2e;
      float bv[K], cv[K], dA[K], h[K];
      if constexpr (kLong) {
        read_stage<T, K>(s_bc + j * kSF, sub, bv);
        read_stage<T, K>(s_bc + (kStageStates + j) * kSF, sub, cv);
      } else {
        load_run<T, K>(B_b + n * p.B_sn + my_t, valid, p.vec, bv);
        load_run<T, K>(C_b + n * p.C_sn + my_t, valid, p.vec, cv);
      }
      // Forward recomputation inside the tile from the saved state.
      float s = 0.f;
#pragma unroll
      for (int k = 0; k < K; ++k) {
        dA[k] = ex2(dt[k] * a);
        s = fmaf(dA[k], s, dt[k] * u[k] * bv[k]);
      }
      // Adjoint: w_t = a_t (dy_t C_t + w_{t+1}) flows right to left; g_t = dy_t C_t + w_{t+1}.
      // Its lane-local part needs no forward state, so both lane scans run level by level
      // together (scan_up_down): two independent shuffle chains, half the latency of one after
      // the other.
      float W = 0.f;
#pragma unroll
      for (int k = K - 1; k >= 0; --k) W = dA[k] * fmaf(cv[k], dy[k], W);
      const float P0 = ex2(a * dt_sum);
      float P = P0, Pr = P0;
      scan_up_down(P, s, Pr, W, sub, G);
      const float start = st ? __shfl_sync(kFull, n < 32 ? st_lo : st_hi, n & 31) : 0.f;
      const float incl = fmaf(P, start, s);
      float h0 = __shfl_up_sync(kFull, incl, 1, G);
      if (sub == 0) h0 = start;
      {
        float hh = h0;
#pragma unroll
        for (int k = 0; k < K; ++k) {
          hh = fmaf(dA[k], hh, dt[k] * u[k] * bv[k]);
          h[k] = hh;
          y[k] = fmaf(cv[k], hh, y[k]);
        }
      }
      const float cin = kLong ? s_w[n] : 0.f;
      const float incl_w = fmaf(Pr, cin, W);
      float wn = __shfl_down_sync(kFull, incl_w, 1, G);
      if (sub == G - 1) wn = cin;
      float dA_part = 0.f;
      float tb[K], tc[K];  // kLongWarpSlots: this lane's dB/dC terms, written to the slot below
#pragma unroll
      for (int k = K - 1; k >= 0; --k) {
        const float g = fmaf(cv[k], dy[k], wn);
        const float hprev = k > 0 ? h[k - 1] : h0;
        const float q = g * hprev * dA[k];
        dq[k] = fmaf(a_nat, q, dq[k]);
        dA_part = fmaf(dt[k], q, dA_part);
        gB[k] = fmaf(g, bv[k], gB[k]);
        const float dBc = g * (dt[k] * u[k]);  // dt*u as in the recomputation: one product
        const float dCc = dy[k] * h[k];
        wn = dA[k] * g;
        if constexpr (kMode == BwdMode::kLongWarpSlots) {
          tb[k] = dBc;
          tc[k] = dCc;
        } else if constexpr (kMode == BwdMode::kLongBlockSlots) {
          // nstate <= kBwdSmemState: into this warp's slot (see below)
          const int idx = k * 32 + ((sub + (32 / K) * k) & 31);
          float* slot = s_slots + ((n & 1) * kBwdWarps + static_cast<int>(threadIdx.x >> 5)) * 2 *
                                      kStateChunk;
          slot[idx] = active ? dBc : 0.f;
          slot[kStateChunk + idx] = active ? dCc : 0.f;
        } else if (warp_reduce_bc) {
          // Short rows, one batch per warp: sum the warp's rows (lanes sub, sub+G, ...) first.
          float rb = active ? dBc : 0.f, rc = active ? dCc : 0.f;
          for (int off = G; off < 32; off <<= 1) {
            rb += __shfl_xor_sync(kFull, rb, off);
            rc += __shfl_xor_sync(kFull, rc, off);
          }
          if (sub == static_cast<int>(threadIdx.x & 31) && k < valid) {
            const std::int64_t o = (static_cast<std::int64_t>(b) * N + n) * p.len + my_t + k;
            atomicAdd(p.dB + o, rb);
            atomicAdd(p.dC + o, rc);
          }
        } else if (active && k < valid) {  // short rows of several batches in one warp
          const std::int64_t o = (static_cast<std::int64_t>(b) * N + n) * p.len + my_t + k;
          atomicAdd(p.dB + o, dBc);
          atomicAdd(p.dC + o, dCc);
        }
      }
      if constexpr (kMode == BwdMode::kLongWarpSlots) {
        // Transposed through this warp's slot so that the atomics are coalesced: lane s writes its
        // steps 8s..8s+7 as two float4 (halves h = 0, 1) at float4 index 2s + (h ^ x), x = bit 2
        // of s, for dB (float4 0..63) and dC (64..127); lane l then reads steps 4l..4l+3 at index
        // l ^ (bit 3 of l) and steps 128 + 4l.. 32 further on. The swizzle x keeps both the writes
        // and the reads free of bank conflicts (every 8 lanes of a 16-byte access touch 8
        // distinct 16-byte bank groups). 4 stores and 4 loads a lane, no index arithmetic per step.
        static_assert(K == 8 && kStateChunk == 256, "the slot layout assumes 8 steps a lane");
        const std::int64_t o = (static_cast<std::int64_t>(b) * N + n) * p.len + t0;
        const int lim = t_end - t0;
#ifdef UMAMBA_VECTOR_ATOMICS
        // kReduceDirect on a whole aligned tile: each lane adds its own 8 steps as two 4-float
        // atomics per array, no transposition (half-used 32-byte sectors: twice the L2 sectors of
        // the coalesced path, none of its shared-memory traffic). Uniform over the warp.
        if (p.reduce == kReduceDirect && p.vec_dbc && lim >= kStateChunk) {
          if (active) {
            float4* db = reinterpret_cast<float4*>(p.dB + o) + 2 * sub;
            float4* dc = reinterpret_cast<float4*>(p.dC + o) + 2 * sub;
            atomicAdd(db, make_float4(tb[0], tb[1], tb[2], tb[3]));
            atomicAdd(db + 1, make_float4(tb[4], tb[5], tb[6], tb[7]));
            atomicAdd(dc, make_float4(tc[0], tc[1], tc[2], tc[3]));
            atomicAdd(dc + 1, make_float4(tc[4], tc[5], tc[6], tc[7]));
          }
        } else
#endif
        {
          float4* slot4 = reinterpret_cast<float4*>(s_wslot);
          const int x = (sub >> 2) & 1;
          slot4[2 * sub + x] = make_float4(tb[0], tb[1], tb[2], tb[3]);
          slot4[2 * sub + (x ^ 1)] = make_float4(tb[4], tb[5], tb[6], tb[7]);
          slot4[64 + 2 * sub + x] = make_float4(tc[0], tc[1], tc[2], tc[3]);
          slot4[64 + 2 * sub + (x ^ 1)] = make_float4(tc[4], tc[5], tc[6], tc[7]);
          __syncwarp();
          if (active) {
            // The atomics' results are unused (RED, fire and forget); no block barrier.
#ifdef UMAMBA_VECTOR_ATOMICS
            if (p.vec_dbc) {  // aligned rows: 4-float atomics
              const int r = sub ^ ((sub >> 3) & 1);
              const float4 b0 = slot4[r], b1 = slot4[32 + r];
              const float4 c0 = slot4[64 + r], c1 = slot4[96 + r];
              float4* db = reinterpret_cast<float4*>(p.dB + o) + sub;
              float4* dc = reinterpret_cast<float4*>(p.dC + o) + sub;
              if (lim >= kStateChunk) {  // a whole tile
                atomicAdd(db, b0);
                atomicAdd(db + 32, b1);
                atomicAdd(dc, c0);
                atomicAdd(dc + 32, c1);
              } else {  // the row's last tile: element-wise only where its end cuts a group
                const float4 vb[2] = {b0, b1}, vc[2] = {c0, c1};
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                  const int tt = h * 128 + 4 * sub;
                  if (tt + 4 <= lim) {
                    atomicAdd(db + 32 * h, vb[h]);
                    atomicAdd(dc + 32 * h, vc[h]);
                  } else {
                    const float eb[4] = {vb[h].x, vb[h].y, vb[h].z, vb[h].w};
                    const float ec[4] = {vc[h].x, vc[h].y, vc[h].z, vc[h].w};
#pragma unroll
                    for (int j = 0; j < 4; ++j)
                      if (tt + j < lim) {
                        atomicAdd(p.dB + o + tt + j, eb[j]);
                        atomicAdd(p.dC + o + tt + j, ec[j]);
                      }
                  }
                }
              }
            } else
#endif
            {
              // Element-wise, 32 consecutive steps per instruction (4-float atomics would cut 128
              // bytes into 4 sectors per instruction). Step t, written by lane s = t / 8 as its
              // k = t % 8, is float k % 4 of float4 2s + (k / 4 ^ bit 2 of s): for one i the 32
              // lanes read a permutation of 32 consecutive floats, free of bank conflicts.
#pragma unroll
              for (int i = 0; i < K; ++i) {
                const int t = i * 32 + sub, s = t >> 3, k = t & 7;
                const int idx = 4 * (2 * s + ((k >> 2) ^ ((s >> 2) & 1))) + (k & 3);
                if (t < lim) {
                  atomicAdd(p.dB + o + t, s_wslot[idx]);
                  atomicAdd(p.dC + o + t, s_wslot[kStateChunk + idx]);
                }
              }
            }
          }
          __syncwarp();  // the slot is rewritten by the next state
        }
      } else if constexpr (kMode == BwdMode::kLongBlockSlots) {
        // Sum the block's warps (channels) into the tile's dB/dC accumulators. Shared-memory float
        // atomics are compare-and-swap loops on sm_90, so each warp writes its own slot (double
        // buffered by n: one barrier per state) and a fixed thread owns each accumulator element.
        __syncthreads();
        const float* base = s_slots + (n & 1) * kBwdWarps * 2 * kStateChunk;
        for (int i = threadIdx.x; i < 2 * kStateChunk; i += blockDim.x) {
          float sum = 0.f;
#pragma unroll
          for (int w = 0; w < kBwdWarps; ++w) sum += base[w * 2 * kStateChunk + i];
          const int which = i / kStateChunk;
          s_red[(which * kBwdSmemState + n) * kStateChunk + (i - which * kStateChunk)] += sum;
        }
      }
      if constexpr (kLong) {
        const float left = __shfl_sync(kFull, incl_w, 0);
        __syncwarp();
        if (sub == 0) s_w[n] = left;
      }
      dA_part = group_sum(dA_part, G);
      if constexpr (kLong) {
        if (sub == 0) s_dA[n] += dA_part;
      } else if (active && sub == 0) {
        atomicAdd(p.dA + static_cast<std::int64_t>(d) * N + n, dA_part);
      }
    }
  }

  if constexpr (kMode == BwdMode::kLongWarpSlots) {
    // State split: the `split` warps of a row (consecutive warps, part 0 first) each summed their
    // share of the states into gB, dq and y; parts 1.. hand theirs to part 0 through the staging
    // buffer (free once every warp left the state loop), which alone goes on. The branch and its
    // barriers are uniform over the block.
    if (split > 1) {
      const int warp = static_cast<int>(threadIdx.x >> 5);
      __syncthreads();
      if (part > 0) {
        float* mine = s_bc + warp * 3 * K * 32;
#pragma unroll
        for (int k = 0; k < K; ++k) {
          mine[k * 32 + sub] = gB[k];
          mine[(K + k) * 32 + sub] = dq[k];
          mine[(2 * K + k) * 32 + sub] = y[k];
        }
      }
      __syncthreads();
      if (part == 0) {
        for (int q = 1; q < split; ++q) {
          const float* other = s_bc + (warp + q) * 3 * K * 32;
#pragma unroll
          for (int k = 0; k < K; ++k) {
            gB[k] += other[k * 32 + sub];
            dq[k] += other[(K + k) * 32 + sub];
            y[k] += other[(2 * K + k) * 32 + sub];
          }
        }
      }
    }
  }
  if (part != 0) return;  // the row's outputs are written by part 0

  // Per-step gradients. y now holds o = sum_n C h + D u, the value the gate multiplied.
  float du[K], dd[K];
#pragma unroll
  for (int k = 0; k < K; ++k) {
    du[k] = fmaf(dt[k], gB[k], Dv * dy[k]);
    float ddt = fmaf(u[k], gB[k], dq[k]);
    if (p.softplus) ddt *= -expm1f(-dt[k]);  // softplus'(x) = sigmoid(x) = 1 - exp(-softplus(x))
    dd[k] = ddt;
    if (k < valid) {
      dbias_part += ddt;
      dD_part = fmaf(dy[k], u[k], dD_part);
    }
  }
  if (active) {
    store_run<T, K>(static_cast<T*>(p.du) + b * p.du_sb + d * p.du_sd + my_t, valid, p.vec, du);
    store_run<T, K>(static_cast<T*>(p.ddelta) + b * p.dd_sb + d * p.dd_sd + my_t, valid, p.vec, dd);
  }
  if (p.z) {
    float zv[K], go[K];
    load_run<T, K>(static_cast<const T*>(p.z) + z_off, valid, p.vec, zv);
    load_run<T, K>(static_cast<const T*>(p.dout) + do_off, valid, p.vec, go);
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const float sg = sigmoid_f(zv[k]);
      go[k] = go[k] * y[k] * sg * fmaf(zv[k], 1.f - sg, 1.f);
    }
    if (active)
      store_run<T, K>(static_cast<T*>(p.dz) + b * p.dz_sb + d * p.dz_sd + my_t, valid, p.vec, go);
  }
}

// Short rows (len <= 128): one tile each, 32/lanes rows per warp, atomics straight to global.
template <typename T>
__global__ void __launch_bounds__(kBwdWarps * 32) scan_bwd_short_kernel(const BwdParams p) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int G = p.lanes;
  const int rpw = 32 / G;
  const std::int64_t rows = static_cast<std::int64_t>(p.batch) * p.dim;
  const std::int64_t task = static_cast<std::int64_t>(blockIdx.x) * kBwdWarps + warp;
  if (task * rpw >= rows) return;
  std::int64_t row = task * rpw + lane / G;
  const bool active = row < rows;
  if (!active) row = rows - 1;
  const int sub = lane & (G - 1);
  const int b = static_cast<int>(row / p.dim);
  const int d = static_cast<int>(row % p.dim);
  // All rows of this warp in one batch (warp-uniform): dB/dC are summed over them in registers.
  const std::int64_t first = task * rpw, last = min(rows, first + rpw) - 1;
  const bool one_batch = first / p.dim == last / p.dim;
  float dD_part = 0.f, dbias_part = 0.f;
  bwd_row_tile<T, BwdMode::kShort>(p, row, b, d, 0, p.len, sub, G, active, nullptr, nullptr,
                                   nullptr, nullptr, nullptr, nullptr, one_batch, dD_part,
                                   dbias_part);
  dD_part = group_sum(dD_part, G);
  dbias_part = group_sum(dbias_part, G);
  if (active && sub == 0) {
    if (p.dD) atomicAdd(p.dD + d, dD_part);
    if (p.ddelta_bias) atomicAdd(p.ddelta_bias + d, dbias_part);
  }
}

// Long rows (len > 128): the block's warps take channels of one batch over one segment, tile by
// tile from the end; warp w, pass r has channel grp*W*R + r*W + w. kReduce: how dB/dC are summed
// over channels (kReduceBlock: nstate <= kBwdSmemState only). kStageInRow: the B and C tiles are
// staged inside each row's pass, kStageStates states at a time (any nstate), instead of once per
// tile for all rows of the block (nstate <= kStageStates). Staging inside the row keeps fewer
// values live across the state loop: about 170 registers instead of 255 (ptxas, sm_90), so 3
// blocks fit per SM.
template <typename T, bool kStageInRow, int kMinBlocks, int kReduce>
__global__ void __launch_bounds__(kBwdWarps * 32, kMinBlocks)
    scan_bwd_long_kernel(const BwdParams p) {
  UMAMBA_DYNAMIC_SHARED(smem);
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int N = p.nstate;
  const int R = p.rows_per_warp;
  static_assert(kBwdSmemState == kStageStates, "one threshold for block staging and reduction");
  static_assert(kReduce == kReduceWarp || (kReduce == kReduceBlock && !kStageInRow),
                "the block reduction holds at most kBwdSmemState states");
  constexpr bool use_red = kReduce == kReduceBlock;
  constexpr bool use_wslot = kReduce == kReduceWarp;
  float* s_red = smem;  // [2][kBwdSmemState][kStateChunk] when use_red
  // use_red: [2][W][2][chunk] (double buffered); use_wslot: [W][2][chunk]
  float* s_slots = s_red + (use_red ? 2 * kBwdSmemState * kStateChunk : 0);
  float* s_w = s_slots + (use_red     ? 2 * kBwdWarps * 2 * kStateChunk
                          : use_wslot ? kBwdWarps * 2 * kStateChunk
                                      : 0);  // [W][R][N]
  float* s_dA = s_w + kBwdWarps * R * N;     // [W][R][N]
  float* s_misc = s_dA + kBwdWarps * R * N;  // [W][R][2]
  const int per_row = kBwdWarps * R * (2 * N + 2);
  float* s_bc = s_w + per_row + (4 - per_row % 4) % 4;  // [2][kStageStates][SF], 16-byte aligned
  // State split (warp atomics only): `split` consecutive warps share a channel, warp `part` of them
  // taking the states j = part, part + split, ... of every group.
  const int split = use_red ? 1 : p.state_split;
  const int slots = kBwdWarps / split;  // channels per pass of the block
  const int my_slot = warp / split, part = warp % split;
  const int per_block = slots * R;
  const int groups = (p.dim + per_block - 1) / per_block;
  const int S = p.segments;
  const int seg = static_cast<int>(blockIdx.x % S);
  const int rest = static_cast<int>(blockIdx.x / S);
  const int grp = rest % groups;
  const int b = rest / groups;
  const int t_begin = seg * p.seg_len;
  const int t_end = min(p.len, t_begin + p.seg_len);

  if (use_red)
    for (int i = threadIdx.x; i < 2 * kBwdSmemState * kStateChunk; i += blockDim.x) s_red[i] = 0.f;
  for (int r = 0; r < R && part == 0; ++r) {
    const int d = grp * per_block + r * slots + my_slot;
    float* w_r = s_w + (my_slot * R + r) * N;
    float* dA_r = s_dA + (my_slot * R + r) * N;
    for (int n = lane; n < N; n += 32) {
      float c = 0.f;
      if (d < p.dim && seg + 1 < S) {
        const std::int64_t row = static_cast<std::int64_t>(b) * p.dim + d;
        const float a = __ldg(p.A + static_cast<std::int64_t>(d) * N + n) * kLog2e;
        const float* sm = p.summary + row * S * (N + 1);
        for (int j = S - 1; j > seg; --j)
          c = fmaf(ex2(a * sm[j * (N + 1) + N]), c, sm[j * (N + 1) + n]);
      }
      w_r[n] = c;
      dA_r[n] = 0.f;
    }
    if (lane < 2) s_misc[(my_slot * R + r) * 2 + lane] = 0.f;
  }
  __syncthreads();

  const int ntiles = (t_end - t_begin + kStateChunk - 1) / kStateChunk;
  for (int it = ntiles - 1; it >= 0; --it) {
    const int t0 = t_begin + it * kStateChunk;
    if (!kStageInRow) {  // all states' B and C rows of the tile, once for every channel
      stage_rows<T, kBwdItems>(static_cast<const T*>(p.B) + b * p.B_sb + t0, p.B_sn, N, t_end - t0,
                               p.vec, s_bc);
      stage_rows<T, kBwdItems>(static_cast<const T*>(p.C) + b * p.C_sb + t0, p.C_sn, N, t_end - t0,
                               p.vec, s_bc + kStageStates * stage_floats<kBwdItems>());
      stage_wait();
      __syncthreads();
    }
    for (int r = 0; r < R; ++r) {
      const int d_raw = grp * per_block + r * slots + my_slot;
      const bool valid_d = d_raw < p.dim;  // warp-uniform
      // Every warp takes part (block barriers inside); one without a channel computes on the last
      // channel and writes nothing.
      const int d = valid_d ? d_raw : p.dim - 1;
      __syncwarp();
      const std::int64_t row = static_cast<std::int64_t>(b) * p.dim + d;
      float dD_part = 0.f, dbias_part = 0.f;
      bwd_row_tile<T, use_red ? BwdMode::kLongBlockSlots : BwdMode::kLongWarpSlots, kStageInRow>(
          p, row, b, d, t0, t_end, lane, 32, valid_d, s_w + (my_slot * R + r) * N,
          s_dA + (my_slot * R + r) * N, use_red ? s_red : nullptr, use_red ? s_slots : nullptr,
          use_wslot ? s_slots + warp * 2 * kStateChunk : nullptr, s_bc, false, dD_part, dbias_part,
          part, split);
      dD_part = group_sum(dD_part, 32);
      dbias_part = group_sum(dbias_part, 32);
      if (lane == 0 && valid_d && part == 0) {
        s_misc[(my_slot * R + r) * 2] += dD_part;
        s_misc[(my_slot * R + r) * 2 + 1] += dbias_part;
      }
    }
    __syncthreads();  // every warp is done with s_bc (and s_red) for this tile
    if (use_red) {
      const int total = 2 * N * kStateChunk;
      for (int i = threadIdx.x; i < total; i += blockDim.x) {
        const int which = i / (N * kStateChunk);
        const int rem = i - which * N * kStateChunk;
        const int n = rem / kStateChunk;
        const int tt = rem % kStateChunk;
        const int ln = tt / kBwdItems;
        const int k = tt % kBwdItems;
        float* slot = s_red + (which * kBwdSmemState + n) * kStateChunk + k * 32 +
                      ((ln + (32 / kBwdItems) * k) & 31);
        const int t = t0 + tt;
        if (t < t_end) {
          float* dst = which ? p.dC : p.dB;
          atomicAdd(dst + (static_cast<std::int64_t>(b) * N + n) * p.len + t, *slot);
        }
        *slot = 0.f;
      }
      __syncthreads();
    }
  }

  // (the last tile ended with a block barrier: every part's dA is in shared memory)
  for (int r = 0; r < R && part == 0; ++r) {
    const int d = grp * per_block + r * slots + my_slot;
    if (d >= p.dim) continue;
    for (int n = lane; n < N; n += 32)
      atomicAdd(p.dA + static_cast<std::int64_t>(d) * N + n, s_dA[(my_slot * R + r) * N + n]);
    if (lane == 0) {
      if (p.dD) atomicAdd(p.dD + d, s_misc[(my_slot * R + r) * 2]);
      if (p.ddelta_bias) atomicAdd(p.ddelta_bias + d, s_misc[(my_slot * R + r) * 2 + 1]);
    }
  }
}

// Backward segment summaries: the adjoint carry w leaving segment `seg` on the left when nothing
// enters from the right, and the sum of dt over the segment. A block's warps take kBwdWarps
// channels of one batch over one segment (> 0); the C tile is staged per block.
template <typename T>
__global__ void __launch_bounds__(kBwdWarps * 32) scan_bwd_summary_kernel(const BwdParams p) {
  constexpr int K = kBwdItems;
  constexpr int kSF = stage_floats<K>();
  __shared__ float s_carry[kBwdWarps][kMaxState];
  __shared__ __align__(16) float s_c[kStageStates * kSF];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int N = p.nstate;
  const int S = p.segments;
  const auto [seg, b, d, active, row] = segment_task(p.dim, S - 1, 1, kBwdWarps, warp);
  const int t_begin = seg * p.seg_len;
  const int t_end = min(p.len, t_begin + p.seg_len);
  const T* dl_row = static_cast<const T*>(p.delta) + b * p.dl_sb + d * p.dl_sd;
  const T* do_row = static_cast<const T*>(p.dout) + b * p.do_sb + d * p.do_sd;
  const T* z_row = p.z ? static_cast<const T*>(p.z) + b * p.z_sb + d * p.z_sd : nullptr;
  const T* C_b = static_cast<const T*>(p.C) + b * p.C_sb;
  const float* A_row = p.A + static_cast<std::int64_t>(d) * N;
  const float bias = p.delta_bias ? __ldg(p.delta_bias + d) : 0.f;

  for (int n = lane; n < N; n += 32) s_carry[warp][n] = 0.f;
  __syncwarp();
  float seg_dt = 0.f;
  const int ntiles = (t_end - t_begin + kStateChunk - 1) / kStateChunk;
  for (int it = ntiles - 1; it >= 0; --it) {
    const int t0 = t_begin + it * kStateChunk;
    const int my_t = t0 + lane * K;
    const int valid = t_end - my_t;
    float dt[K], dy[K];
    load_run<T, K>(dl_row + my_t, valid, p.vec, dt);
    const float dt_sum = make_dt<K>(dt, valid, bias, p.softplus);
    seg_dt += dt_sum;
    load_run<T, K>(do_row + my_t, valid, p.vec, dy);
    if (z_row) {
      float zv[K];
      load_run<T, K>(z_row + my_t, valid, p.vec, zv);
#pragma unroll
      for (int k = 0; k < K; ++k) dy[k] *= zv[k] * sigmoid_f(zv[k]);
    }
#pragma unroll 1
    for (int n0 = 0; n0 < N; n0 += kStageStates) {
      const int ng = min(kStageStates, N - n0);
      __syncthreads();
      stage_rows<T, K>(C_b + n0 * p.C_sn + t0, p.C_sn, ng, t_end - t0, p.vec, s_c);
      stage_wait();
      __syncthreads();
#pragma unroll 1
      for (int j = 0; j < ng; ++j) {
        const int n = n0 + j;
        const float a = __ldg(A_row + n) * kLog2e;
        float cv[K];
        read_stage<T, K>(s_c + j * kSF, lane, cv);
        float W = 0.f;
#pragma unroll
        for (int k = K - 1; k >= 0; --k) W = ex2(dt[k] * a) * fmaf(dy[k], cv[k], W);
        float P = ex2(a * dt_sum);
        scan_down(P, W, lane, 32);
        const float carry = s_carry[warp][n];
        const float left = __shfl_sync(kFull, fmaf(P, carry, W), 0);
        __syncwarp();
        if (lane == 0) s_carry[warp][n] = left;
      }
    }
    __syncwarp();
  }
  if (active) {
    seg_dt = group_sum(seg_dt, 32);
    float* out = p.summary + (row * S + seg) * (N + 1);
    for (int n = lane; n < N; n += 32) out[n] = s_carry[warp][n];
    if (lane == 0) out[N] = seg_dt;
  }
}

// ================================ launchers ================================

// The backward's accumulators (dA, dB, dC, dD, ddelta_bias) zeroed by one kernel: five memsets
// were five graph nodes, about as long as the whole backward of a short row.
struct ZeroRanges {
  float* ptr[5];
  std::int64_t count[5];
};

template <typename T>  // (T unused: one instantiation per dtype file, no shared symbol)
__global__ void zero_ranges_kernel(const ZeroRanges z) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
#pragma unroll 1
  for (int r = 0; r < 5; ++r) {
    float* p = z.ptr[r];
    if (p == nullptr) continue;
    const std::int64_t n = z.count[r];
    // 16-byte stores from the first aligned element; the head and tail one float at a time.
    const std::int64_t skip =
        static_cast<std::int64_t>(((16 - (reinterpret_cast<std::uintptr_t>(p) & 15)) & 15) / 4);
    const std::int64_t head = skip < n ? skip : n;
    const std::int64_t vecs = (n - head) / 4;
    float4* v = reinterpret_cast<float4*>(p + head);
    for (std::int64_t i = first; i < vecs; i += stride) v[i] = make_float4(0.f, 0.f, 0.f, 0.f);
    for (std::int64_t i = first; i < head; i += stride) p[i] = 0.f;
    for (std::int64_t i = head + 4 * vecs + first; i < n; i += stride) p[i] = 0.f;
  }
}

inline int launch_error() {
#ifdef UMAMBA_SIMT_EMULATION
  return 0;  // a failed emulated launch has already thrown
#else
  return static_cast<int>(cudaGetLastError());
#endif
}

// kernel<<<blocks, threads, shared_bytes, stream>>>(params), or its emulation.
template <typename Params>
void launch_kernel(void (*kernel)(Params), std::int64_t blocks, int threads, int shared_bytes,
                   Stream stream, const Params& params) {
#ifdef UMAMBA_SIMT_EMULATION
  (void)stream;
  if (!::umamba::simt::launch(kernel, static_cast<unsigned>(blocks), static_cast<unsigned>(threads),
                              static_cast<std::size_t>(shared_bytes), params))
    throw std::runtime_error("simt emulator: " + ::umamba::simt::last_error());
#else
  kernel<<<static_cast<unsigned>(blocks), threads, shared_bytes, stream>>>(params);
#endif
}

template <typename T>
int launch_forward(const FwdParams& p, Stream stream) {
  const std::int64_t rows = static_cast<std::int64_t>(p.batch) * p.dim;
  if (p.one_tile) {
    const std::int64_t tasks = (rows + 32 / p.lanes - 1) / (32 / p.lanes);
    const int per_block = kFwdWarps / p.state_split;
    const auto blocks = static_cast<unsigned>((tasks + per_block - 1) / per_block);
    // One row a warp: B and C double-buffered through cp.async (whole rows); bf16/fp16 rows only
    // when 16-byte aligned (cp.async copies 4 to 16 bytes), else read directly.
    using Kernel = void (*)(FwdParams);
    Kernel kernel = p.items == 8 ? scan_fwd_short_kernel<T, 8, false>
                                 : scan_fwd_short_kernel<T, kFwdItems, false>;
    if (p.lanes == 32 && (std::is_same_v<T, float> || p.vec))
      kernel = p.items == 8 ? scan_fwd_short_kernel<T, 8, true>
                            : scan_fwd_short_kernel<T, kFwdItems, true>;
    launch_kernel(kernel, blocks, kFwdWarps * 32, 0, stream, p);
    return launch_error();
  }
  const std::int64_t per_seg =
      static_cast<std::int64_t>(p.batch) * ((p.dim + kFwdWarps - 1) / kFwdWarps);
  if (p.segments > 1) {
    launch_kernel(scan_fwd_summary_kernel<T>, per_seg * (p.segments - 1) * p.pieces, kFwdWarps * 32,
                  0, stream, p);
    if (const int e = launch_error()) return e;
  }
  launch_kernel(scan_fwd_long_kernel<T>, per_seg * p.segments, kFwdWarps * 32, 0, stream, p);
  return launch_error();
}

template <typename T>
int launch_backward(const BwdParams& p, Stream stream) {
  const std::int64_t rows = static_cast<std::int64_t>(p.batch) * p.dim;
  const std::size_t bc_bytes = static_cast<std::size_t>(p.batch) * p.nstate *
                               static_cast<std::size_t>(p.len) * sizeof(float);
  int e = 0;
  {
    const std::int64_t bc = static_cast<std::int64_t>(bc_bytes / sizeof(float));
    const ZeroRanges z{{p.dB, p.dC, p.dA, p.dD, p.ddelta_bias},
                       {bc, bc, static_cast<std::int64_t>(p.dim) * p.nstate, p.dim, p.dim}};
    // Enough blocks for the largest range at 4 floats a thread (grid-stride beyond 4096 blocks).
    const std::int64_t want = (bc / 4 + 255) / 256;
    const auto blocks =
        static_cast<unsigned>(std::max<std::int64_t>(1, std::min<std::int64_t>(want, 4096)));
    launch_kernel(zero_ranges_kernel<T>, blocks, 256, 0, stream, z);
    if ((e = launch_error())) return e;
  }
  if (p.lanes < 32) {
    const std::int64_t warps = (rows + 32 / p.lanes - 1) / (32 / p.lanes);
    const auto blocks = static_cast<unsigned>((warps + kBwdWarps - 1) / kBwdWarps);
    launch_kernel(scan_bwd_short_kernel<T>, blocks, kBwdWarps * 32, 0, stream, p);
    return launch_error();
  }
  if (p.segments > 1) {
    const std::int64_t per_seg =
        static_cast<std::int64_t>(p.batch) * ((p.dim + kBwdWarps - 1) / kBwdWarps);
    launch_kernel(scan_bwd_summary_kernel<T>, per_seg * (p.segments - 1), kBwdWarps * 32, 0, stream,
                  p);
    if ((e = launch_error())) return e;
  }
  const int smem = bwd_smem_bytes(p);
  const bool block_reduce = p.reduce == kReduceBlock && p.nstate <= kStageStates;
  const int split = block_reduce ? 1 : p.state_split;  // as the kernel reads it
  const int per_block = kBwdWarps / split * p.rows_per_warp;
  const std::int64_t groups = (p.dim + per_block - 1) / per_block;
  const auto blocks = static_cast<unsigned>(p.batch * groups * p.segments);
  // Register budget: 2 blocks per SM allow 255 registers, 3 allow 168, 4 allow 128 (the block
  // reduction's shared memory fits only 2 blocks per SM anyway).
  using Kernel = void (*)(BwdParams);
  Kernel kernel = nullptr;
  const int bps = p.blocks_per_sm;
  if (block_reduce) {
    kernel = bps == 3 ? scan_bwd_long_kernel<T, false, 3, kReduceBlock>
                      : scan_bwd_long_kernel<T, false, 2, kReduceBlock>;
  } else {
    kernel = bps == 4   ? scan_bwd_long_kernel<T, true, 4, kReduceWarp>
             : bps == 3 ? scan_bwd_long_kernel<T, true, 3, kReduceWarp>
                        : scan_bwd_long_kernel<T, true, 2, kReduceWarp>;
  }
#ifndef UMAMBA_SIMT_EMULATION
  if (smem > 48 * 1024) {
    if ((e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem)))
      return e;
  }
#endif
  launch_kernel(kernel, blocks, kBwdWarps * 32, smem, stream, p);
  return launch_error();
}

}  // namespace umamba::cuda::detail
