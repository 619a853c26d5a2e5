// Building blocks of the U-Mamba and nnU-Net networks, for 2D and 3D alike (the number of spatial
// axes is a constructor argument). Parameter names follow the official modules so that state_dict
// keys match (reference/umamba-mamba-nnunet.md §1.1):
//
//   Conv / ConvTranspose   weight, bias              (nn.Conv{2,3}d / nn.ConvTranspose{2,3}d)
//   InstanceNorm           weight, bias              (affine, eps 1e-5, no running stats)
//   ConvNormAct            conv, norm [+ LeakyReLU]  (dynamic_network_architectures
//                                                     ConvDropoutNormReLU; its `all_modules.N`
//                                                     aliases are handled by the checkpoint code)
//   BasicResBlock          conv1 norm1 act conv2 norm2 (+ conv3 1×1 skip) + act   (U-Mamba)
//   BasicBlockD            conv1 (CNA) conv2 (CN) + identity skip + act   (ResNet-D, stride 1)
//   StackedConvBlocks      convs.0 … convs.k−1                             (PlainConvUNet)
//   UpsampleLayer          nearest ×stride, then conv (1×1)                (U-Mamba decoder)
// LeakyReLU has slope 0.01. Initialisation (the networks apply it): He normal, a = 0.01, fan-in,
// on every Conv/ConvTranspose weight, zero biases; norms weight 1, bias 0.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <utility>
#include <vector>

namespace umamba::model {

using IntList = std::vector<int64_t>;

// A pointwise (1×1…) convolution's input and weight with zero input channels appended up to a
// multiple of `multiple`: the same result, and the weight's gradient is the first columns of the
// padded one. See ConvImpl::forward for why.
std::pair<torch::Tensor, torch::Tensor> pad_input_channels(const torch::Tensor& x,
                                                           const torch::Tensor& weight,
                                                           int64_t multiple);

class ConvImpl : public torch::nn::Module {
 public:
  // kernel, stride, padding: one entry per spatial axis (dims = kernel.size()).
  ConvImpl(int64_t in, int64_t out, IntList kernel, IntList stride, IntList padding,
           bool bias = true);
  torch::Tensor forward(const torch::Tensor& x);
  void he_init(double neg_slope = 1e-2);

  torch::Tensor weight, bias;  // [out, in, *kernel], [out]
  IntList stride, padding;
};
TORCH_MODULE(Conv);

class ConvTransposeImpl : public torch::nn::Module {
 public:
  // Kernel = stride, no padding (nnU-Net's decoder upsampling).
  ConvTransposeImpl(int64_t in, int64_t out, IntList stride, bool bias = true);
  torch::Tensor forward(const torch::Tensor& x);
  void he_init(double neg_slope = 1e-2);

  torch::Tensor weight, bias;  // [in, out, *stride], [out]
  IntList stride;
};
TORCH_MODULE(ConvTranspose);

class InstanceNormImpl : public torch::nn::Module {
 public:
  explicit InstanceNormImpl(int64_t channels, double eps = 1e-5);
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor weight, bias;  // [channels]
  double eps;
};
TORCH_MODULE(InstanceNorm);

// A block of the residual encoders/decoders: anything with forward(Tensor) → Tensor.
class BlockImpl : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
};

class ConvNormActImpl : public BlockImpl {
 public:
  ConvNormActImpl(int64_t in, int64_t out, const IntList& kernel, const IntList& stride,
                  bool nonlin);
  torch::Tensor forward(const torch::Tensor& x) override;

  Conv conv{nullptr};
  InstanceNorm norm{nullptr};
  bool nonlin;
};
TORCH_MODULE(ConvNormAct);

class BasicResBlockImpl : public BlockImpl {
 public:
  BasicResBlockImpl(int64_t in, int64_t out, const IntList& kernel, const IntList& stride,
                    bool use_1x1conv);
  torch::Tensor forward(const torch::Tensor& x) override;

  Conv conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  InstanceNorm norm1{nullptr}, norm2{nullptr};
};
TORCH_MODULE(BasicResBlock);

class BasicBlockDImpl : public BlockImpl {
 public:
  // U-Mamba only uses it with stride 1 and in == out (identity skip); other uses throw.
  BasicBlockDImpl(int64_t channels, const IntList& kernel);
  torch::Tensor forward(const torch::Tensor& x) override;

  ConvNormAct conv1{nullptr}, conv2{nullptr};
};
TORCH_MODULE(BasicBlockD);

class UpsampleLayerImpl : public torch::nn::Module {
 public:
  UpsampleLayerImpl(int64_t in, int64_t out, IntList scale);
  torch::Tensor forward(const torch::Tensor& x);

  Conv conv{nullptr};
  IntList scale;
};
TORCH_MODULE(UpsampleLayer);

// A list of blocks registered under "0", "1", … (nn.Sequential naming), run in order.
class BlockSequenceImpl : public torch::nn::Module {
 public:
  void push_back(std::shared_ptr<BlockImpl> block);
  torch::Tensor forward(torch::Tensor x);
  size_t size() const { return blocks_.size(); }

 private:
  std::vector<std::shared_ptr<BlockImpl>> blocks_;
};
TORCH_MODULE(BlockSequence);

class StackedConvBlocksImpl : public BlockImpl {
 public:
  StackedConvBlocksImpl(int64_t num_convs, int64_t in, int64_t out, const IntList& kernel,
                        const IntList& initial_stride);
  torch::Tensor forward(const torch::Tensor& x) override;

  BlockSequence convs{nullptr};
};
TORCH_MODULE(StackedConvBlocks);

// He initialisation of every Conv/ConvTranspose below `module` (nnU-Net's InitWeights_He(1e-2)).
void apply_he_init(torch::nn::Module& module, double neg_slope = 1e-2);

}  // namespace umamba::model
