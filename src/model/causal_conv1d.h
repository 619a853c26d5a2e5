// Mamba's causal depthwise conv1d followed by SiLU: silu(conv1d(x, weight, bias, padding width - 1,
// groups = channels)[..., :L]), the step between in_proj and x_proj (mamba_ssm's slow path).
//
// x [batch, dim, len] in any layout (the Mamba block passes the first half of in_proj's
// [batch, 2 d_inner, len] output; a channel-contiguous view works as well); weight [dim, 1, width]
// (width <= 4 on the fused path); bias [dim] optional. Returns [batch, dim, len], contiguous, in
// x's dtype. Differentiable with respect to x, weight and bias. CUDA tensors, when the kernels are
// built (UMAMBA_WITH_CUDA_KERNELS), go through the fused kernel of cuda/causal_conv1d.h (one pass
// reading x in its own layout: no contiguous copy, no separate SiLU); everything else through
// LibTorch's conv1d and silu. No double backward.
#pragma once

#include <torch/types.h>

#include <optional>

namespace umamba::model {

torch::Tensor causal_conv1d_silu(const torch::Tensor& x, const torch::Tensor& weight,
                                 const std::optional<torch::Tensor>& bias);

namespace detail {

// The LibTorch-ops path on any device (exposed for tests and the benchmark).
torch::Tensor causal_conv1d_silu_torch(const torch::Tensor& x, const torch::Tensor& weight,
                                       const std::optional<torch::Tensor>& bias);

// Whether causal_conv1d_silu takes the fused CUDA kernel for these arguments.
bool causal_conv1d_fused(const torch::Tensor& x, const torch::Tensor& weight);

}  // namespace detail

}  // namespace umamba::model
