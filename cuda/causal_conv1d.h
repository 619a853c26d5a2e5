// Causal depthwise conv1d with bias and SiLU, fused, forward and backward: the step of Mamba's
// block between in_proj and x_proj (Gu & Dao 2023, arXiv 2312.00752, Fig. 3; mamba_ssm's slow path
// `silu(conv1d(x)[..., :L])` with groups = channels and padding width - 1):
//
//   pre[b, d, t] = bias[d] + sum_{k < width} weight[d, k] * x[b, d, t - (width - 1) + k]
//                  (x before t = 0 is 0: causal, left-padded)
//   out[b, d, t] = silu(pre) = pre * sigmoid(pre)       (or pre itself, silu = false)
//
// Why fused: LibTorch runs the depthwise conv as `conv_depthwise2d`, then SiLU as another pass,
// and for a strided input (a channel-contiguous view of [batch, len, channels], as mamba_ssm's
// token layout gives) on a contiguous copy first. One kernel here reads x in whatever layout its
// strides say (a tile of 32 channels x 64 steps through shared memory, read along the contiguous
// axis; the Mamba block now passes rows of [batch, 2 d_inner, len]) and writes out in out's layout;
// the backward recomputes pre from x (nothing saved but x), and writes dx in dx's layout, dweight
// and dbias summed over the batch and time.
//
// Host-only API over raw device pointers: sizes, element strides, a stream. width 1..4; x, out,
// dout and dx in fp32, bf16 or fp16 (arithmetic in fp32); weight, bias, dweight, dbias fp32.
// dweight and dbias are sums over float atomics (not bitwise reproducible run to run). The CPU
// reference is causal_conv1d_ref.h.
#pragma once

#include <cstdint>

#include "cuda/selective_scan.h"  // ScanDtype, Stream

namespace umamba::cuda {

constexpr int kConvMaxWidth = 4;

struct ConvShape {
  std::int64_t batch = 0, dim = 0, len = 0;
  int width = 4;  // 1 .. kConvMaxWidth
};

// Element strides of a [batch, dim, len] array (any layout: [B, D, L] contiguous is {D*L, L, 1},
// a channel-contiguous view of [B, L, D] is {L*D, 1, D}).
struct ConvStrides {
  std::int64_t batch = 0, dim = 0, time = 0;
};
ConvStrides conv_contiguous(const ConvShape& s);  // {dim*len, len, 1}

// What both passes read: the op's input and parameters.
struct ConvInput {
  ScanDtype dtype = ScanDtype::F32;  // of x and of out (forward), dout and dx (backward)
  ConvShape shape;
  const void* x = nullptr;
  ConvStrides x_strides;
  const float* weight = nullptr;  // [dim, width], contiguous
  const float* bias = nullptr;    // [dim], or nullptr for none
  bool silu = true;
};

struct ConvForwardArgs {
  ConvInput in;
  void* out = nullptr;
  ConvStrides out_strides;
};

struct ConvBackwardArgs {
  ConvInput in;
  const void* dout = nullptr;  // d loss / d out
  ConvStrides dout_strides;
  void* dx = nullptr;
  ConvStrides dx_strides;
  float* dweight = nullptr;  // [dim, width], overwritten
  float* dbias = nullptr;    // [dim], overwritten; nullptr to skip
};

// Throw umamba::Error for bad arguments (a size < 1, width outside 1..4, a missing pointer) or a
// failed launch. Asynchronous on `stream` otherwise.
void conv_forward(const ConvForwardArgs& args, Stream stream = nullptr);
void conv_backward(const ConvBackwardArgs& args, Stream stream = nullptr);

}  // namespace umamba::cuda
