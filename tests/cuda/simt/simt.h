// A SIMT emulator: runs our CUDA kernels (cuda/selective_scan_kernels.cuh) on the CPU, so that a
// machine without a GPU - CI - checks the kernels' logic against the CPU reference, not only the
// GPU machine.
//
// Method. Each CUDA thread of a block is a fiber (its own stack, switched by hand: a handful of
// instructions, no system call) and the blocks of a grid run one after the other on the calling
// thread. A fiber runs until it reaches a synchronisation point - __syncthreads, __syncwarp or a
// warp shuffle - and hands control back to the scheduler, which resumes the others (in a random
// order, from a seed) and releases a barrier once every thread that has not exited reached it.
// Between synchronisation points a fiber runs alone, so shared memory behaves as on the GPU for
// code that synchronises where it must; code that reads what another thread wrote without a
// barrier in between sees an order that changes with the seed, which the tests vary. A warp
// shuffle is one warp barrier: each lane publishes its value in one of two slots (alternating),
// waits for the warp, and reads its source lane's slot. The emulator reports as errors what would
// hang or be undefined on the GPU: a barrier some threads can never reach (deadlock), lanes of one
// warp at different kinds of warp operation, and a full-mask warp operation after a lane exited.
//
// What it does not model: the warp's lock-step (code that relies on implicit warp synchrony is
// wrong on Volta and later anyway), memory ordering between blocks (blocks run in sequence), that
// a shuffle orders shared memory here like a __syncwarp (on the GPU it need not), and
// the numerics of the approximate instructions (ex2.approx becomes exp2f). Only 1-D grids and
// blocks of at most 1024 threads, full-mask warp operations. Not thread-safe: one launch at a time
// per process.
//
// Use: define UMAMBA_SIMT_EMULATION, include this header before the kernels' header and compile
// the kernels as C++; their launchers call simt::launch instead of <<<...>>>.
#pragma once

// The CUDA headers' host-side declarations first; the macros below then take over the device
// vocabulary (and the kernels' own includes of the same headers are no-ops).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace umamba::simt {

// The running thread's built-in variables.
struct ThreadContext {
  uint3 thread_idx{0, 0, 0};
  uint3 block_idx{0, 0, 0};
  dim3 block_dim{1, 1, 1};
  dim3 grid_dim{1, 1, 1};
};
extern ThreadContext* g_current;  // set by the scheduler before it resumes a fiber

// Scheduling of the next launches: the seed of the order in which waiting threads resume.
void set_seed(std::uint64_t seed);
// The message of the first error a launch met (deadlock, mismatched warp operations), or "".
// A launch that meets one stops and returns false from launch_raw.
const std::string& last_error();

// Synchronisation (called from kernel code through the macros below).
void syncthreads();
void syncwarp(unsigned mask);
enum class ShuffleMode { Index, Up, Down, Xor };
std::uint32_t shuffle_bits(unsigned mask, std::uint32_t value, int lane_arg, int width,
                           ShuffleMode mode);
void* dynamic_shared();  // the block's dynamic shared memory (poisoned with 0xff bytes per block)
[[noreturn]] void misaligned(const char* what, const void* address);  // prints and aborts

// Runs entry(arg) as a grid of `grid` blocks of `block` threads with `shared_bytes` of dynamic
// shared memory. False (and last_error()) when the launch met an error.
bool launch_raw(void (*entry)(void*), void* arg, unsigned grid, unsigned block,
                std::size_t shared_bytes);

// kernel(params) as a grid: the emulated `kernel<<<grid, block, shared_bytes>>>(params)`.
template <typename Params>
bool launch(void (*kernel)(Params), unsigned grid, unsigned block, std::size_t shared_bytes,
            const Params& params) {
  struct Call {
    void (*kernel)(Params);
    const Params* params;
  } call{kernel, &params};
  auto entry = [](void* c) {
    auto* k = static_cast<Call*>(c);
    k->kernel(*k->params);
  };
  return launch_raw(entry, &call, grid, block, shared_bytes);
}

template <typename T>
T shuffle(unsigned mask, T value, int lane_arg, int width, ShuffleMode mode) {
  static_assert(sizeof(T) == 4, "the emulated shuffles move 32-bit values");
  std::uint32_t bits;
  std::memcpy(&bits, &value, 4);
  bits = shuffle_bits(mask, bits, lane_arg, width, mode);
  T out;
  std::memcpy(&out, &bits, 4);
  return out;
}

}  // namespace umamba::simt

// ---- the device vocabulary, on the host

#undef __shared__
#define __shared__ static  // one copy per kernel, shared by the fibers of the running block
#undef __launch_bounds__
#define __launch_bounds__(...)
#define threadIdx (::umamba::simt::g_current->thread_idx)
#define blockIdx (::umamba::simt::g_current->block_idx)
#define blockDim (::umamba::simt::g_current->block_dim)
#define gridDim (::umamba::simt::g_current->grid_dim)

inline void __syncthreads() {
  ::umamba::simt::syncthreads();
}
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  ::umamba::simt::syncwarp(mask);
}
template <typename T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  return ::umamba::simt::shuffle(mask, v, src, width, ::umamba::simt::ShuffleMode::Index);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::umamba::simt::shuffle(mask, v, static_cast<int>(delta), width,
                                 ::umamba::simt::ShuffleMode::Up);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::umamba::simt::shuffle(mask, v, static_cast<int>(delta), width,
                                 ::umamba::simt::ShuffleMode::Down);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return ::umamba::simt::shuffle(mask, v, lane_mask, width, ::umamba::simt::ShuffleMode::Xor);
}

// Blocks run one at a time on one host thread: an atomic is a plain read-modify-write.
inline float atomicAdd(float* p, float v) {
  const float old = *p;
  *p = old + v;
  return old;
}
inline float4 atomicAdd(float4* p, float4 v) {
  // The GPU faults on a misaligned vector access: so does the emulator, loudly.
  if (reinterpret_cast<std::uintptr_t>(p) % 16 != 0)
    ::umamba::simt::misaligned("atomicAdd(float4*)", p);
  const float4 old = *p;
  p->x += v.x;
  p->y += v.y;
  p->z += v.z;
  p->w += v.w;
  return old;
}

// CUDA's device min/max over int, unsigned and float.
inline int min(int a, int b) {
  return a < b ? a : b;
}
inline int max(int a, int b) {
  return a < b ? b : a;
}

template <typename T>
T __ldg(const T* p) {
  return *p;
}
inline float __expf(float x) {
  return std::exp(x);
}
inline float __frcp_rn(float x) {
  return 1.f / x;
}
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
