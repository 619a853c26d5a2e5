// The selective-scan op on CUDA tensors through our kernels (cuda/selective_scan.h), as a LibTorch
// autograd function. The network code reaches it through model/selective_scan.h, which routes CUDA
// tensors here when the kernels are built (UMAMBA_WITH_CUDA_KERNELS).
#pragma once

#include <torch/torch.h>

#include <optional>

namespace umamba::model::detail {

// Shapes as mamba's selective_scan_ref: u, delta, z [batch, dim, len]; A [dim, nstate] real;
// B, C [batch, nstate, len]; D, delta_bias [dim]; returns out [batch, dim, len] in u's dtype
// (fp32, bf16 or fp16; delta, B, C and z are cast to it, A, D and delta_bias to fp32). All on one
// CUDA device; the kernels run on the current CUDA stream. Differentiable with respect to every
// tensor argument; the backward recomputes the states from checkpoints saved every 256 steps.
torch::Tensor selective_scan_cuda(const torch::Tensor& u, const torch::Tensor& delta,
                                  const torch::Tensor& A, const torch::Tensor& B,
                                  const torch::Tensor& C, const std::optional<torch::Tensor>& D,
                                  const std::optional<torch::Tensor>& z,
                                  const std::optional<torch::Tensor>& delta_bias,
                                  bool delta_softplus);

}  // namespace umamba::model::detail
