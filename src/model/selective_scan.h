// The selective scan of Mamba (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with
// Selective State Spaces", Alg. 2), with the semantics of mamba_ssm v1.2.0's selective_scan_ref:
//
//   Δ_t   = softplus(delta_t + delta_bias)        (softplus only when delta_softplus)
//   h_t   = exp(Δ_t · A) ⊙ h_{t−1} + Δ_t · B_t · u_t        h_{−1} = 0, h: [batch, dim, N]
//   y_t   = Σ_n C_t[n] · h_t[n] + D · u_t
//   out_t = y_t · silu(z_t)                        (when z is given)
//
// Shapes: u, delta, z [batch, dim, L]; A [dim, N] (real); B, C [batch, N, L] (input-dependent,
// shared by all channels of a batch item); D, delta_bias [dim]. Output [batch, dim, L] in u's
// dtype. The state is kept in fp32 (fp64 when u is fp64, which the gradient checks use).
//
// Differentiable with respect to every tensor argument. CPU: a TBB-parallel scan over
// (batch, channel) rows with a backward that recomputes the states chunk by chunk from
// checkpoints saved by the forward. CUDA: our kernels when built with UMAMBA_WITH_CUDA_KERNELS,
// else a chunked LibTorch-ops formulation (correct, memory-bounded per chunk, not fast).
// Limits: no complex A, no time-invariant or grouped B/C, no last-state output.
#pragma once

#include <torch/types.h>

#include <optional>

namespace umamba::model {

torch::Tensor selective_scan(const torch::Tensor& u, const torch::Tensor& delta,
                             const torch::Tensor& A, const torch::Tensor& B, const torch::Tensor& C,
                             const std::optional<torch::Tensor>& D,
                             const std::optional<torch::Tensor>& z,
                             const std::optional<torch::Tensor>& delta_bias, bool delta_softplus);

namespace detail {

// The LibTorch-ops path (any device, autograd through ordinary ops). Exposed for tests.
// `chunk` is the number of time steps per chunk; 0 picks it from a memory budget.
torch::Tensor selective_scan_torch_ops(const torch::Tensor& u, const torch::Tensor& delta,
                                       const torch::Tensor& A, const torch::Tensor& B,
                                       const torch::Tensor& C,
                                       const std::optional<torch::Tensor>& D,
                                       const std::optional<torch::Tensor>& z,
                                       const std::optional<torch::Tensor>& delta_bias,
                                       bool delta_softplus, int64_t chunk = 0);

// The CPU path with an explicit checkpoint interval (time steps between saved states); the public
// function uses 256. Exposed so tests can exercise chunk boundaries with short sequences.
torch::Tensor selective_scan_cpu(const torch::Tensor& u, const torch::Tensor& delta,
                                 const torch::Tensor& A, const torch::Tensor& B,
                                 const torch::Tensor& C, const std::optional<torch::Tensor>& D,
                                 const std::optional<torch::Tensor>& z,
                                 const std::optional<torch::Tensor>& delta_bias,
                                 bool delta_softplus, int64_t checkpoint_interval);

}  // namespace detail

}  // namespace umamba::model
