// Causal depthwise conv1d + SiLU (see causal_conv1d.h): the LibTorch path, and the fused CUDA
// kernel (cuda/causal_conv1d.h) as a torch::autograd::Function when the kernels are built.
#include "model/causal_conv1d.h"

#include <torch/torch.h>

#include <string>

#include <fmt/ranges.h>

#include "core/error.h"

#if defined(UMAMBA_WITH_CUDA_KERNELS) && __has_include(<c10/cuda/CUDAGuard.h>)
#define UMAMBA_CONV_TORCH_CUDA 1
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cuda/causal_conv1d.h"
#include "model/cuda_glue.h"
#endif

namespace umamba::model {

namespace {

void check_args(const torch::Tensor& x, const torch::Tensor& weight,
                const std::optional<torch::Tensor>& bias) {
  UMAMBA_CHECK(x.dim() == 3, "causal_conv1d_silu: x must be [batch, dim, len], got {}",
               fmt::join(x.sizes(), "x"));
  UMAMBA_CHECK(weight.dim() == 3 && weight.size(0) == x.size(1) && weight.size(1) == 1 &&
                   weight.size(2) >= 1,
               "causal_conv1d_silu: weight must be [dim={}, 1, width], got {}", x.size(1),
               fmt::join(weight.sizes(), "x"));
  UMAMBA_CHECK(!bias || (bias->dim() == 1 && bias->size(0) == x.size(1)),
               "causal_conv1d_silu: bias must be [dim={}], got {}", x.size(1),
               fmt::join(bias->sizes(), "x"));
}

#ifdef UMAMBA_CONV_TORCH_CUDA

namespace conv = ::umamba::cuda;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

conv::ConvStrides strides(const torch::Tensor& t) {
  return {t.stride(0), t.stride(1), t.stride(2)};
}

// What both passes give the kernels: x and the parameters (saved by the forward).
conv::ConvInput conv_input(const torch::Tensor& x, const torch::Tensor& weight,
                           const torch::Tensor& bias, bool has_bias) {
  conv::ConvInput in;
  in.dtype = detail::kernel_dtype(x.scalar_type(), "causal_conv1d_silu: x");
  in.shape = {x.size(0), x.size(1), x.size(2), static_cast<int>(weight.size(1))};
  in.x = x.data_ptr();
  in.x_strides = strides(x);
  in.weight = weight.data_ptr<float>();
  in.bias = has_bias ? bias.data_ptr<float>() : nullptr;
  in.silu = true;
  return in;
}

class CausalConv1dSiluFunction : public torch::autograd::Function<CausalConv1dSiluFunction> {
 public:
  // weight: [dim, width] fp32 contiguous; bias: [dim] fp32 or an empty placeholder (has_bias).
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& bias,
                               bool has_bias) {
    const c10::cuda::CUDAGuard guard(x.device());
    conv::ConvForwardArgs a;
    a.in = conv_input(x, weight, bias, has_bias);
    torch::Tensor out = torch::empty_like(x, at::MemoryFormat::Contiguous);
    a.out = out.data_ptr();
    a.out_strides = strides(out);
    conv::conv_forward(a, detail::current_stream(x));
    ctx->save_for_backward({x, weight, bias});
    ctx->saved_data["has_bias"] = has_bias;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &weight = saved[1], &bias = saved[2];
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const c10::cuda::CUDAGuard guard(x.device());
    torch::Tensor dout =
        grad_outputs[0].defined() ? grad_outputs[0].to(x.scalar_type()) : torch::zeros_like(x);
    torch::Tensor dx = torch::empty_like(x, at::MemoryFormat::Contiguous);
    torch::Tensor dweight = torch::empty_like(weight);
    torch::Tensor dbias = has_bias ? torch::empty_like(bias) : torch::Tensor();
    conv::ConvBackwardArgs a;
    a.in = conv_input(x, weight, bias, has_bias);
    a.dout = dout.data_ptr();
    a.dout_strides = strides(dout);
    a.dx = dx.data_ptr();
    a.dx_strides = strides(dx);
    a.dweight = dweight.data_ptr<float>();
    a.dbias = has_bias ? dbias.data_ptr<float>() : nullptr;
    conv::conv_backward(a, detail::current_stream(x));
    return {dx, dweight, dbias, torch::Tensor()};
  }
};

#endif  // UMAMBA_CONV_TORCH_CUDA

}  // namespace

namespace detail {

torch::Tensor causal_conv1d_silu_torch(const torch::Tensor& x, const torch::Tensor& weight,
                                       const std::optional<torch::Tensor>& bias) {
  check_args(x, weight, bias);
  const int64_t width = weight.size(2);
  return torch::silu(torch::conv1d(x, weight, bias, /*stride=*/1, /*padding=*/width - 1,
                                   /*dilation=*/1,
                                   /*groups=*/x.size(1))
                         .narrow(2, 0, x.size(2)));
}

bool causal_conv1d_fused(const torch::Tensor& x, const torch::Tensor& weight) {
#ifdef UMAMBA_CONV_TORCH_CUDA
  const auto t = x.scalar_type();
  // (A weight on another device takes the LibTorch path, which refuses it with its own message.)
  return x.is_cuda() && weight.device() == x.device() && weight.dim() == 3 &&
         weight.size(2) <= conv::kConvMaxWidth &&
         (t == torch::kFloat || t == torch::kBFloat16 || t == torch::kHalf) && x.stride(0) >= 0 &&
         x.stride(1) >= 0 && x.stride(2) >= 0;
#else
  (void)x;
  (void)weight;
  return false;
#endif
}

}  // namespace detail

torch::Tensor causal_conv1d_silu(const torch::Tensor& x, const torch::Tensor& weight,
                                 const std::optional<torch::Tensor>& bias) {
  check_args(x, weight, bias);
#ifdef UMAMBA_CONV_TORCH_CUDA
  if (detail::causal_conv1d_fused(x, weight) && x.numel() > 0 &&
      (!bias || bias->device() == x.device())) {
    const torch::Tensor w = weight.reshape({weight.size(0), weight.size(2)}).to(torch::kFloat);
    const torch::Tensor b = bias ? bias->to(torch::kFloat).contiguous()
                                 : torch::empty({0}, x.options().dtype(torch::kFloat));
    torch::Tensor out = CausalConv1dSiluFunction::apply(x, w.contiguous(), b, bias.has_value());
    return out;
  }
#endif
  return detail::causal_conv1d_silu_torch(x, weight, bias);
}

}  // namespace umamba::model
