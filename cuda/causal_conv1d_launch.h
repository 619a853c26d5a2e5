// Internal: the parameter block the causal-conv1d kernels receive and the per-dtype launchers
// (cuda/causal_conv1d.cu; the SIMT emulator's build in tests/cuda/simt). Host code only sees this.
#pragma once

#include <cstdint>

#include "cuda/causal_conv1d.h"

namespace umamba::cuda::detail {

constexpr int kConvTileDims = 32;   // channels a block tile covers
constexpr int kConvTileSteps = 64;  // time steps a block tile covers
constexpr int kConvThreads = 256;

struct ConvParams {
  int batch, dim, len, width;
  int dim_tiles;        // ceil(dim / kConvTileDims)
  int time_blocks;      // blocks along time per (batch, channel tile)
  int tiles_per_block;  // consecutive time tiles each block walks
  bool silu;
  const void* x;
  ConvStrides xs;
  const float* weight;
  const float* bias;
  void* out;  // forward
  ConvStrides os;
  const void* dout;  // backward
  ConvStrides gs;
  void* dx;
  ConvStrides dxs;
  float* dweight;
  float* dbias;
};

// Each returns the CUDA error code of its launches (0: cudaSuccess).
int launch_conv_forward_fp32(const ConvParams& p, Stream stream);
int launch_conv_forward_bf16(const ConvParams& p, Stream stream);
int launch_conv_forward_fp16(const ConvParams& p, Stream stream);
int launch_conv_backward_fp32(const ConvParams& p, Stream stream);
int launch_conv_backward_bf16(const ConvParams& p, Stream stream);
int launch_conv_backward_fp16(const ConvParams& p, Stream stream);

}  // namespace umamba::cuda::detail
