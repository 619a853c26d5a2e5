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

// The parameter block for `in` (checked: sizes, width, x and weight present) and the launch grid.
detail::ConvParams params_for(const ConvInput& in, const char* what) {
  const ConvShape& s = in.shape;
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
  UMAMBA_CHECK(in.x && in.weight, "causal conv1d {}: x and weight are required", what);
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
  p.silu = in.silu;
  p.x = in.x;
  p.xs = in.x_strides;
  p.weight = in.weight;
  p.bias = in.bias;
  return p;
}

using Launcher = int (*)(const detail::ConvParams&, Stream);

// Runs the launcher of `dtype` and turns a CUDA error into an exception naming `what`.
void launch(ScanDtype dtype, Launcher fp32, Launcher bf16, Launcher fp16,
            const detail::ConvParams& p, Stream stream, const char* what) {
  const Launcher fn = dtype == ScanDtype::F32 ? fp32 : dtype == ScanDtype::BF16 ? bf16 : fp16;
  const auto e = static_cast<cudaError_t>(fn(p, stream));
  if (e != cudaSuccess)
    fail("causal conv1d: {} failed: {} ({})", what, cudaGetErrorString(e), static_cast<int>(e));
}

}  // namespace

ConvStrides conv_contiguous(const ConvShape& s) {
  return {s.dim * s.len, s.len, 1};
}

void conv_forward(const ConvForwardArgs& a, Stream stream) {
  detail::ConvParams p = params_for(a.in, "forward");
  UMAMBA_CHECK(a.out, "causal conv1d forward: out is required");
  p.out = a.out;
  p.os = a.out_strides;
  launch(a.in.dtype, detail::launch_conv_forward_fp32, detail::launch_conv_forward_bf16,
         detail::launch_conv_forward_fp16, p, stream, "the forward kernel launch");
}

void conv_backward(const ConvBackwardArgs& a, Stream stream) {
  detail::ConvParams p = params_for(a.in, "backward");
  UMAMBA_CHECK(a.dout && a.dx && a.dweight,
               "causal conv1d backward: dout, dx and dweight are required");
  p.dout = a.dout;
  p.gs = a.dout_strides;
  p.dx = a.dx;
  p.dxs = a.dx_strides;
  p.dweight = a.dweight;
  p.dbias = a.dbias;
  launch(a.in.dtype, detail::launch_conv_backward_fp32, detail::launch_conv_backward_bf16,
         detail::launch_conv_backward_fp16, p, stream, "the backward kernel launch");
}

}  // namespace umamba::cuda
