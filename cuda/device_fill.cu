// Deterministic uniform random fill on the device (device.h): a 64-bit mix of (seed, index)
// (splitmix64 finaliser, Steele et al. 2014) mapped to [lo, hi). For test and benchmark data only.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda/device.h"

namespace umamba::cuda {

namespace {

__device__ __forceinline__ float hash_uniform(std::uint64_t seed, std::uint64_t i) {
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + i + 0x632BE59BD9B4E019ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  x ^= x >> 31;
  return static_cast<float>(x >> 40) * (1.0f / 16777216.0f);  // [0, 1)
}

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}

template <typename T>
__global__ void fill_kernel(T* dst, std::size_t count, std::uint64_t seed, float lo, float span) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    dst[i] = from_float<T>(lo + span * hash_uniform(seed, i));
}

}  // namespace

namespace detail {

// Called by fill_uniform (device.cpp), which turns the returned CUDA error code into an exception.
int fill_uniform_launch(void* dst, ScanDtype dtype, std::size_t count, std::uint64_t seed, float lo,
                        float hi, Stream stream) {
  if (count == 0) return 0;
  const unsigned blocks = static_cast<unsigned>(std::min<std::size_t>((count + 255) / 256, 65536));
  switch (dtype) {
    case ScanDtype::F32:
      fill_kernel<<<blocks, 256, 0, stream>>>(static_cast<float*>(dst), count, seed, lo, hi - lo);
      break;
    case ScanDtype::BF16:
      fill_kernel<<<blocks, 256, 0, stream>>>(static_cast<__nv_bfloat16*>(dst), count, seed, lo,
                                              hi - lo);
      break;
    case ScanDtype::F16:
      fill_kernel<<<blocks, 256, 0, stream>>>(static_cast<__half*>(dst), count, seed, lo, hi - lo);
      break;
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace detail

}  // namespace umamba::cuda
