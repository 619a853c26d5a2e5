// Host side of the causal-conv1d kernels (causal_conv1d.h): argument checks, the launch grid, the
// per-dtype launcher.
#include "cuda/causal_conv1d.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "core/error.h"
#include "cuda/causal_conv1d_launch.h"
#include "cuda/device.h"

namespace umamba::cuda {

namespace {

constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();
// Blocks the grid aims for per SM (8 blocks of 256 threads fill an H100/H200 SM); a block walks
// several time tiles when the rows are long, so that the dweight/dbias atomics stay few.
constexpr std::int64_t kConvBlocksPerSm = 8;

void check_shape(const ConvShape& s, const char* what) {
  UMAMBA_CHECK(s.batch >= 1 && s.dim >= 1 && s.len >= 1,
               "causal conv1d {}: every size must be >= 1 (batch {}, dim {}, len {})", what,
               s.batch, s.dim, s.len);
  UMAMBA_CHECK(s.width >= 1 && s.width <= kConvMaxWidth,
               "causal conv1d {}: width {} (the kernels take 1 to {})", what, s.width,
               kConvMaxWidth);
  UMAMBA_CHECK(s.len < kIntMax - 2 * detail::kConvTileSteps && s.batch * s.dim < kIntMax &&
                   s.dim * s.width < kIntMax,
               "causal conv1d {}: len {}, batch*dim {} and dim*width {} must be below 2^31", what,
               s.len, s.batch * s.dim, s.dim * s.width);
}

detail::ConvParams base_params(const ConvShape& s) {
  detail::ConvParams p{};
  p.batch = static_cast<int>(s.batch);
  p.dim = static_cast<int>(s.dim);
  p.len = static_cast<int>(s.len);
  p.width = s.width;
  p.dim_tiles = static_cast<int>((s.dim + detail::kConvTileDims - 1) / detail::kConvTileDims);
  const std::int64_t tiles = (s.len + detail::kConvTileSteps - 1) / detail::kConvTileSteps;
  const std::int64_t groups = s.batch * p.dim_tiles;
  const std::int64_t target = kConvBlocksPerSm * std::max(1, current_multiprocessors());
  std::int64_t time_blocks = std::clamp<std::int64_t>((target + groups - 1) / groups, 1, tiles);
  const std::int64_t per_block = (tiles + time_blocks - 1) / time_blocks;
  time_blocks = (tiles + per_block - 1) / per_block;
  UMAMBA_CHECK(groups * time_blocks < kIntMax, "causal conv1d: {} blocks are too many",
               groups * time_blocks);
  p.time_blocks = static_cast<int>(time_blocks);
  p.tiles_per_block = static_cast<int>(per_block);
  return p;
}

void check_launch(int code, const char* what) {
  const auto e = static_cast<cudaError_t>(code);
  if (e != cudaSuccess)
    fail("causal conv1d: {} failed: {} ({})", what, cudaGetErrorString(e), code);
}

}  // namespace

ConvStrides conv_contiguous(const ConvShape& s) {
  return {s.dim * s.len, s.len, 1};
}

void conv_forward(const ConvForwardArgs& a, Stream stream) {
  check_shape(a.shape, "forward");
  UMAMBA_CHECK(a.x && a.weight && a.out, "causal conv1d forward: x, weight and out are required");
  detail::ConvParams p = base_params(a.shape);
  p.silu = a.silu;
  p.x = a.x;
  p.x_sb = a.x_strides.batch;
  p.x_sd = a.x_strides.dim;
  p.x_st = a.x_strides.time;
  p.weight = a.weight;
  p.bias = a.bias;
  p.out = a.out;
  p.o_sb = a.out_strides.batch;
  p.o_sd = a.out_strides.dim;
  p.o_st = a.out_strides.time;
  int code = 0;
  switch (a.dtype) {
    case ScanDtype::F32:
      code = detail::launch_conv_forward_fp32(p, stream);
      break;
    case ScanDtype::BF16:
      code = detail::launch_conv_forward_bf16(p, stream);
      break;
    case ScanDtype::F16:
      code = detail::launch_conv_forward_fp16(p, stream);
      break;
  }
  check_launch(code, "the forward kernel launch");
}

void conv_backward(const ConvBackwardArgs& a, Stream stream) {
  check_shape(a.shape, "backward");
  UMAMBA_CHECK(a.x && a.weight && a.dout && a.dx && a.dweight,
               "causal conv1d backward: x, weight, dout, dx and dweight are required");
  detail::ConvParams p = base_params(a.shape);
  p.silu = a.silu;
  p.x = a.x;
  p.x_sb = a.x_strides.batch;
  p.x_sd = a.x_strides.dim;
  p.x_st = a.x_strides.time;
  p.weight = a.weight;
  p.bias = a.bias;
  p.dout = a.dout;
  p.g_sb = a.dout_strides.batch;
  p.g_sd = a.dout_strides.dim;
  p.g_st = a.dout_strides.time;
  p.dx = a.dx;
  p.dx_sb = a.dx_strides.batch;
  p.dx_sd = a.dx_strides.dim;
  p.dx_st = a.dx_strides.time;
  p.dweight = a.dweight;
  p.dbias = a.dbias;
  int code = 0;
  switch (a.dtype) {
    case ScanDtype::F32:
      code = detail::launch_conv_backward_fp32(p, stream);
      break;
    case ScanDtype::BF16:
      code = detail::launch_conv_backward_bf16(p, stream);
      break;
    case ScanDtype::F16:
      code = detail::launch_conv_backward_fp16(p, stream);
      break;
  }
  check_launch(code, "the backward kernel launch");
}

}  // namespace umamba::cuda
