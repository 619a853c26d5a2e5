// The Mamba block (mamba_ssm v1.2.0 `Mamba`, slow path, which is numerically what U-Mamba runs
// without causal-conv1d) and U-Mamba's `MambaLayer` wrapper around it.
//
// Mamba (Gu & Dao 2023, Fig. 3): x [B, L, d_model] → in_proj → (x, z) [B, d_inner, L] each;
// x → depthwise causal conv1d (width d_conv, left padding) → SiLU → x_proj → (Δ raw [dt_rank],
// B [N], C [N]) per token; Δ = dt_proj.weight · Δraw (dt_proj.bias enters the scan as delta_bias,
// softplus inside); A = −exp(A_log); y = selective_scan(x, Δ, A, B, C, D, z) → out_proj.
// Initialisation as mamba_ssm: Linear/Conv1d PyTorch defaults, dt_proj.weight ~ U(±dt_rank^-½),
// dt_proj.bias = softplus⁻¹(dt), dt log-uniform in [1e-3, 1e-1] floored at 1e-4,
// A_log[d, n] = log(n + 1), D = 1.
//
// MambaLayer (U-Mamba nets/*.py): LayerNorm + Mamba on tokens taken from a feature map
// x [B, C, *spatial]: spatial tokens (raster order, last axis fastest; d_model = C) or, in the Enc
// variants' small stages, channel tokens (C tokens, d_model = prod(spatial)). No residual.
// Autocast is switched off inside and half/bfloat16 input is promoted to float32, so the layer
// always runs in fp32 and returns fp32.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

namespace umamba::model {

struct MambaOptions {
  int64_t d_model = 0;
  int64_t d_state = 16;
  int64_t d_conv = 4;
  int64_t expand = 2;
};

class MambaImpl : public torch::nn::Module {
 public:
  explicit MambaImpl(const MambaOptions& options);
  // x [B, L, d_model] → [B, L, d_model]
  torch::Tensor forward(const torch::Tensor& x);
  // The same with channels first: x [B, d_model, L] → [B, d_model, L] (contiguous). Every
  // projection is a batched GEMM W · x_b, so each intermediate comes out [B, channels, L] with L
  // contiguous, the layout the conv and the scan read: no transposed copies between them (the
  // [B, L, ·] formulation needs one for each of x_proj's input, Δ, z and out_proj's input).
  torch::Tensor forward_channels_first(const torch::Tensor& x);
  void reset_parameters();  // mamba_ssm's initialisation

  int64_t d_model, d_state, d_conv, d_inner, dt_rank;
  torch::nn::Linear in_proj{nullptr}, x_proj{nullptr}, dt_proj{nullptr}, out_proj{nullptr};
  torch::nn::Conv1d conv1d{nullptr};
  torch::Tensor A_log, D;
};
TORCH_MODULE(Mamba);

class MambaLayerImpl : public torch::nn::Module {
 public:
  MambaLayerImpl(int64_t dim, bool channel_token, const MambaOptions& mamba_options = {});
  // x [B, C, *spatial] → same shape, float32.
  torch::Tensor forward(const torch::Tensor& x);

  int64_t dim;
  bool channel_token;
  torch::nn::LayerNorm norm{nullptr};
  Mamba mamba{nullptr};
};
TORCH_MODULE(MambaLayer);

}  // namespace umamba::model
