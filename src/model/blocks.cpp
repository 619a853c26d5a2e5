// Building blocks of the U-Mamba and nnU-Net networks; see blocks.h for names and sources.
#include "model/blocks.h"

#include <torch/torch.h>

#include <fmt/ranges.h>

#include <tuple>
#include <vector>

#include "core/error.h"

namespace umamba::model {
namespace {

// In place, as nnU-Net's LeakyReLU(inplace=True): every caller passes a fresh norm output (or a
// sum made from one), which nothing else holds. Instance norm's backward needs its input, not its
// output, and leaky_relu_'s backward needs only its result, so autograd keeps one tensor per
// conv-norm-act where the out-of-place form kept two (a third of the training activations).
torch::Tensor lrelu_(torch::Tensor x) {
  return torch::leaky_relu_(x, 0.01);
}

// y + skip, into y when y's dtype holds the sum (y is a fresh norm output; under autocast it is
// fp32 and the skip may be bf16/fp16, never the other way round, but stay safe).
torch::Tensor add_into(torch::Tensor y, const torch::Tensor& skip) {
  if (torch::promote_types(y.scalar_type(), skip.scalar_type()) == y.scalar_type() &&
      y.sizes() == skip.sizes())
    return y.add_(skip);
  return y + skip;
}

IntList ones(size_t n) {
  return IntList(n, 1);
}
IntList zeros(size_t n) {
  return IntList(n, 0);
}
IntList half(const IntList& kernel) {
  IntList p;
  for (int64_t k : kernel) p.push_back(k / 2);
  return p;
}

// PyTorch's default initialisation of a (transposed) convolution: kaiming-uniform with a = √5, bias
// U(±1/√fan_in), where fan_in = weight[0].numel() for both layouts ([out, in, k...] and
// [in, out, k...]). The networks then apply He init where the official code does.
void pytorch_default_init(torch::Tensor& weight, torch::Tensor& bias) {
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(weight[0].numel()));
    bias.uniform_(-bound, bound);
  }
}

}  // namespace

ConvImpl::ConvImpl(int64_t in, int64_t out, IntList kernel, IntList stride_, IntList padding_,
                   bool with_bias)
    : stride(std::move(stride_)), padding(std::move(padding_)) {
  const size_t dims = kernel.size();
  UMAMBA_CHECK(
      (dims == 1 || dims == 2 || dims == 3) && stride.size() == dims && padding.size() == dims,
      "Conv: kernel {}, stride {}, padding {} must have 1, 2 or 3 matching axes",
      fmt::join(kernel, "x"), fmt::join(stride, "x"), fmt::join(padding, "x"));
  IntList shape = {out, in};
  shape.insert(shape.end(), kernel.begin(), kernel.end());
  weight = register_parameter("weight", torch::empty(shape));
  if (with_bias) bias = register_parameter("bias", torch::empty({out}));
  pytorch_default_init(weight, bias);
}

std::pair<torch::Tensor, torch::Tensor> pad_input_channels(const torch::Tensor& x,
                                                           const torch::Tensor& weight,
                                                           int64_t multiple) {
  const int64_t in = weight.size(1), extra = (multiple - in % multiple) % multiple;
  if (extra == 0) return {x, weight};
  // constant_pad_nd pads from the last axis backwards: zeros for every spatial axis, then `extra`
  // after the channels (axis 1 of both [B, C, *S] and [out, C, *kernel]).
  std::vector<int64_t> pad(static_cast<size_t>(2 * (x.dim() - 1)), 0);
  pad.back() = extra;
  return {torch::constant_pad_nd(x, pad), torch::constant_pad_nd(weight, pad)};
}

torch::Tensor ConvImpl::forward(const torch::Tensor& x) {
  const int64_t dims = weight.dim() - 2;
  torch::Tensor input = x, w = weight;
  // Training on a GPU, a pointwise convolution whose input channels are not a multiple of 8 gets
  // its weight gradient from an unaligned GEMM: the first residual block's 3 → 32 projection at
  // 512² took 5.5 ms of a 95 ms U-Mamba_Bot step at batch 12 on an H200 whatever the batch
  // (`umamba bench train-step --kernels`), for 0.2 GB of traffic. Zero channels make it aligned.
  bool pointwise = true;
  for (int64_t d = 2; d < weight.dim(); ++d) pointwise = pointwise && weight.size(d) == 1;
  if (pointwise && x.is_cuda() && weight.size(1) % 8 != 0 && torch::GradMode::is_enabled() &&
      weight.requires_grad())
    std::tie(input, w) = pad_input_channels(x, weight, 8);
  if (dims == 2) return torch::conv2d(input, w, bias, stride, padding);
  if (dims == 3) return torch::conv3d(input, w, bias, stride, padding);
  return torch::conv1d(input, w, bias, stride, padding);
}

void ConvImpl::he_init(double neg_slope) {
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_normal_(weight, neg_slope, torch::kFanIn, torch::kLeakyReLU);
  if (bias.defined()) bias.zero_();
}

ConvTransposeImpl::ConvTransposeImpl(int64_t in, int64_t out, IntList stride_, bool with_bias)
    : stride(std::move(stride_)) {
  UMAMBA_CHECK(stride.size() == 2 || stride.size() == 3,
               "ConvTranspose: stride {} must have 2 or 3 axes", fmt::join(stride, "x"));
  IntList shape = {in, out};
  shape.insert(shape.end(), stride.begin(), stride.end());
  weight = register_parameter("weight", torch::empty(shape));
  if (with_bias) bias = register_parameter("bias", torch::empty({out}));
  pytorch_default_init(weight, bias);
}

torch::Tensor ConvTransposeImpl::forward(const torch::Tensor& x) {
  if (stride.size() == 2) return torch::conv_transpose2d(x, weight, bias, stride);
  return torch::conv_transpose3d(x, weight, bias, stride);
}

void ConvTransposeImpl::he_init(double neg_slope) {
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_normal_(weight, neg_slope, torch::kFanIn, torch::kLeakyReLU);
  if (bias.defined()) bias.zero_();
}

InstanceNormImpl::InstanceNormImpl(int64_t channels, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({channels}));
  bias = register_parameter("bias", torch::zeros({channels}));
}

// torch::instance_norm as ATen computes it (batch norm over a [1, N*C, ...] view, weight and
// bias repeated per sample), except that the result is handed back through _unsafe_view instead of
// a view: the in-place LeakyReLU that follows (lrelu_) on a view would make autograd copy whole
// activations back through it in the backward pass (CopySlices). The batch-norm output is a
// temporary nothing else holds, and its backward needs only the input and the saved statistics.
// Under autocast batch norm keeps the input's dtype (bf16/fp16 in, same out, fp32 statistics), as
// instance_norm does; group_norm, the other way to write it, is autocast to fp32 and doubles the
// saved activations.
torch::Tensor InstanceNormImpl::forward(const torch::Tensor& x) {
  const auto sizes = x.sizes();
  const int64_t n = sizes[0], c = sizes[1];
  std::vector<int64_t> flat(sizes.begin(), sizes.end());
  flat[0] = 1;
  flat[1] = n * c;
  const torch::Tensor y =
      torch::batch_norm(x.reshape(flat), weight.repeat({n}), bias.repeat({n}),
                        /*running_mean=*/{}, /*running_var=*/{}, /*training=*/true,
                        /*momentum=*/0.1, eps, at::globalContext().userEnabledCuDNN());
  return at::_unsafe_view(y, sizes);
}

ConvNormActImpl::ConvNormActImpl(int64_t in, int64_t out, const IntList& kernel,
                                 const IntList& stride, bool nonlin_)
    : nonlin(nonlin_) {
  conv = register_module("conv", Conv(in, out, kernel, stride, half(kernel), true));
  norm = register_module("norm", InstanceNorm(out));
}

torch::Tensor ConvNormActImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = norm->forward(conv->forward(x));
  return nonlin ? lrelu_(y) : y;
}

BasicResBlockImpl::BasicResBlockImpl(int64_t in, int64_t out, const IntList& kernel,
                                     const IntList& stride, bool use_1x1conv) {
  const size_t dims = kernel.size();
  conv1 = register_module("conv1", Conv(in, out, kernel, stride, half(kernel), true));
  norm1 = register_module("norm1", InstanceNorm(out));
  conv2 = register_module("conv2", Conv(out, out, kernel, ones(dims), half(kernel), true));
  norm2 = register_module("norm2", InstanceNorm(out));
  if (use_1x1conv) {
    conv3 = register_module("conv3", Conv(in, out, ones(dims), stride, zeros(dims), true));
  } else {
    bool unit_stride = true;
    for (int64_t s : stride) unit_stride = unit_stride && s == 1;
    UMAMBA_CHECK(in == out && unit_stride,
                 "BasicResBlock without 1×1 skip needs in == out and stride 1 (got {} → {}, "
                 "stride {})",
                 in, out, fmt::join(stride, "x"));
  }
}

torch::Tensor BasicResBlockImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = lrelu_(norm1->forward(conv1->forward(x)));
  y = norm2->forward(conv2->forward(y));
  y = add_into(y, conv3 ? conv3->forward(x) : x);
  return lrelu_(y);
}

BasicBlockDImpl::BasicBlockDImpl(int64_t channels, const IntList& kernel) {
  const IntList unit = ones(kernel.size());
  conv1 = register_module("conv1", ConvNormAct(channels, channels, kernel, unit, true));
  conv2 = register_module("conv2", ConvNormAct(channels, channels, kernel, unit, false));
}

torch::Tensor BasicBlockDImpl::forward(const torch::Tensor& x) {
  return lrelu_(add_into(conv2->forward(conv1->forward(x)), x));
}

void BlockSequenceImpl::push_back(std::shared_ptr<BlockImpl> block) {
  register_module(std::to_string(blocks_.size()), block);
  blocks_.push_back(std::move(block));
}

torch::Tensor BlockSequenceImpl::forward(torch::Tensor x) {
  for (const auto& b : blocks_) x = b->forward(x);
  return x;
}

StackedConvBlocksImpl::StackedConvBlocksImpl(int64_t num_convs, int64_t in, int64_t out,
                                             const IntList& kernel, const IntList& initial_stride) {
  UMAMBA_CHECK(num_convs >= 1, "StackedConvBlocks: {} convs", num_convs);
  convs = register_module("convs", BlockSequence());
  convs->push_back(ConvNormAct(in, out, kernel, initial_stride, true).ptr());
  for (int64_t i = 1; i < num_convs; ++i) {
    convs->push_back(ConvNormAct(out, out, kernel, ones(kernel.size()), true).ptr());
  }
}

torch::Tensor StackedConvBlocksImpl::forward(const torch::Tensor& x) {
  return convs->forward(x);
}

UpsampleLayerImpl::UpsampleLayerImpl(int64_t in, int64_t out, IntList scale_)
    : scale(std::move(scale_)) {
  conv = register_module(
      "conv", Conv(in, out, ones(scale.size()), ones(scale.size()), zeros(scale.size()), true));
}

torch::Tensor UpsampleLayerImpl::forward(const torch::Tensor& x) {
  std::vector<double> factors(scale.begin(), scale.end());
  const torch::Tensor up = torch::nn::functional::interpolate(
      x,
      torch::nn::functional::InterpolateFuncOptions().scale_factor(factors).mode(torch::kNearest));
  return conv->forward(up);
}

void apply_he_init(torch::nn::Module& module, double neg_slope) {
  for (const auto& m : module.modules(/*include_self=*/false)) {
    if (auto* c = m->as<ConvImpl>()) c->he_init(neg_slope);
    if (auto* t = m->as<ConvTransposeImpl>()) t->he_init(neg_slope);
  }
}

}  // namespace umamba::model
