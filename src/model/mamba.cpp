// Mamba block and U-Mamba's MambaLayer; see mamba.h for the method and its sources.
#include "model/mamba.h"

#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/torch.h>

#include <cmath>

#include <fmt/ranges.h>

#include "core/error.h"
#include "model/causal_conv1d.h"
#include "model/selective_scan.h"

namespace umamba::model {

MambaImpl::MambaImpl(const MambaOptions& o)
    : d_model(o.d_model),
      d_state(o.d_state),
      d_conv(o.d_conv),
      d_inner(o.expand * o.d_model),
      dt_rank((o.d_model + 15) / 16) {
  UMAMBA_CHECK(o.d_model >= 1 && o.d_state >= 1 && o.d_conv >= 1 && o.expand >= 1,
               "Mamba: d_model {}, d_state {}, d_conv {}, expand {} must all be ≥ 1", o.d_model,
               o.d_state, o.d_conv, o.expand);
  in_proj = register_module(
      "in_proj", torch::nn::Linear(torch::nn::LinearOptions(d_model, 2 * d_inner).bias(false)));
  conv1d =
      register_module("conv1d", torch::nn::Conv1d(torch::nn::Conv1dOptions(d_inner, d_inner, d_conv)
                                                      .groups(d_inner)
                                                      .padding(d_conv - 1)
                                                      .bias(true)));
  x_proj = register_module(
      "x_proj",
      torch::nn::Linear(torch::nn::LinearOptions(d_inner, dt_rank + 2 * d_state).bias(false)));
  dt_proj = register_module(
      "dt_proj", torch::nn::Linear(torch::nn::LinearOptions(dt_rank, d_inner).bias(true)));
  out_proj = register_module(
      "out_proj", torch::nn::Linear(torch::nn::LinearOptions(d_inner, d_model).bias(false)));
  A_log = register_parameter("A_log", torch::empty({d_inner, d_state}));
  D = register_parameter("D", torch::empty({d_inner}));
  reset_parameters();
}

void MambaImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  in_proj->reset_parameters();
  conv1d->reset_parameters();
  x_proj->reset_parameters();
  out_proj->reset_parameters();
  // dt projection: preserve variance at init; bias so that softplus(bias) is log-uniform in
  // [dt_min, dt_max] = [1e-3, 1e-1], floored at 1e-4.
  const double dt_init_std = 1.0 / std::sqrt(static_cast<double>(dt_rank));
  dt_proj->weight.uniform_(-dt_init_std, dt_init_std);
  const double lo = std::log(1e-3), hi = std::log(1e-1);
  torch::Tensor dt = torch::exp(torch::rand({d_inner}) * (hi - lo) + lo).clamp_min(1e-4);
  dt_proj->bias.copy_(dt + torch::log(-torch::expm1(-dt)));
  // S4D-real: A[d, n] = -(n + 1).
  A_log.copy_(torch::log(torch::arange(1, d_state + 1, torch::kFloat32))
                  .unsqueeze(0)
                  .expand({d_inner, d_state}));
  D.fill_(1.0);
}

torch::Tensor MambaImpl::forward(const torch::Tensor& x) {
  UMAMBA_CHECK(x.dim() == 3 && x.size(2) == d_model,
               "Mamba: input must be [batch, length, d_model={}], got {}", d_model,
               fmt::join(x.sizes(), "x"));
  return forward_channels_first(x.transpose(1, 2)).transpose(1, 2).contiguous();
}

torch::Tensor MambaImpl::forward_channels_first(const torch::Tensor& x) {
  UMAMBA_CHECK(x.dim() == 3 && x.size(1) == d_model,
               "Mamba: input must be [batch, d_model={}, length], got {}", d_model,
               fmt::join(x.sizes(), "x"));
  const int64_t batch = x.size(0);
  // W [out, in] applied to every batch item of t [B, in, L]: [B, out, L], contiguous. (W is
  // broadcast with a zero batch stride; its gradient is summed over the batch by autograd.)
  auto project = [batch](const torch::Tensor& W, const torch::Tensor& t) {
    return torch::bmm(W.unsqueeze(0).expand({batch, W.size(0), W.size(1)}), t);
  };
  const torch::Tensor xz = project(in_proj->weight, x);  // [B, 2·d_inner, L]
  const torch::Tensor z = xz.narrow(1, d_inner, d_inner);
  // silu(conv1d(x)[..., :L]): causal, the first L outputs; fused on CUDA (model/causal_conv1d.h).
  const torch::Tensor xi =
      causal_conv1d_silu(xz.narrow(1, 0, d_inner), conv1d->weight,
                         conv1d->bias.defined() ? std::optional(conv1d->bias) : std::nullopt);
  const torch::Tensor x_dbl = project(x_proj->weight, xi);     // [B, R + 2N, L]
  const torch::Tensor Bm = x_dbl.narrow(1, dt_rank, d_state);  // [B, N, L], rows contiguous
  const torch::Tensor Cm = x_dbl.narrow(1, dt_rank + d_state, d_state);
  const torch::Tensor dt = project(dt_proj->weight, x_dbl.narrow(1, 0, dt_rank));  // [B, di, L]
  const torch::Tensor A = -torch::exp(A_log.to(torch::kFloat32));
  const torch::Tensor y = selective_scan(xi, dt, A, Bm, Cm, D.to(torch::kFloat32), z,
                                         dt_proj->bias.to(torch::kFloat32), true);
  return project(out_proj->weight, y);  // [B, d_model, L]
}

MambaLayerImpl::MambaLayerImpl(int64_t dim_, bool channel_token_, const MambaOptions& o)
    : dim(dim_), channel_token(channel_token_) {
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  MambaOptions mo = o;
  mo.d_model = dim;
  mamba = register_module("mamba", Mamba(mo));
}

torch::Tensor MambaLayerImpl::forward(const torch::Tensor& input) {
  // fp32 inside, whatever autocast says (U-Mamba: @autocast(enabled=False) + cast to float32).
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  torch::Tensor x = input;
  if (x.scalar_type() == torch::kHalf || x.scalar_type() == torch::kBFloat16) {
    x = x.to(torch::kFloat32);
  }
  UMAMBA_CHECK(x.dim() >= 3, "MambaLayer: input must be [batch, channels, *spatial], got {}",
               fmt::join(x.sizes(), "x"));
  const int64_t batch = x.size(0), channels = x.size(1);
  const int64_t pixels = x.numel() / std::max<int64_t>(1, batch * channels);
  if (channel_token) {
    // Tokens are the channels; each token's features are the flattened feature map.
    UMAMBA_CHECK(pixels == dim,
                 "MambaLayer (channel tokens): the feature map has {} pixels but the layer was "
                 "built for {} (UMambaEnc only accepts its training patch size)",
                 pixels, dim);
    const torch::Tensor tokens = x.flatten(2);  // [B, C, P]
    return mamba->forward(norm->forward(tokens)).reshape(x.sizes());
  }
  UMAMBA_CHECK(channels == dim, "MambaLayer: input has {} channels, the layer was built for {}",
               channels, dim);
  const torch::Tensor tokens = x.reshape({batch, channels, pixels}).transpose(1, 2);  // [B, P, C]
  // LayerNorm over the channels of each token ([B, P, C]), then the Mamba block channels first:
  // its output [B, C, P] is the feature map's layout already.
  return mamba->forward_channels_first(norm->forward(tokens).transpose(1, 2)).reshape(x.sizes());
}

}  // namespace umamba::model
