// U-Mamba Bot/Enc and nnU-Net's PlainConvUNet in LibTorch.
//
// Structure (bowang-lab/U-Mamba nets/UMamba{Bot,Enc}_{2d,3d}.py at 28459e3; MIC-DKFZ
// dynamic_network_architectures v0.2 PlainConvUNet; reference/umamba-mamba-nnunet.md §1.1–1.4):
//   U-Mamba encoder: stem = BasicResBlock(C_in→C0, 1×1 skip) + (b0−1)·BasicBlockD; stage s =
//     BasicResBlock(C_{s−1}→C_s, stride s, 1×1 skip) + (b_s−1)·BasicBlockD, then (Enc) a MambaLayer
//     where resolve() placed one; every stage output is a skip. Bot: MambaLayer on the last skip.
//   U-Mamba decoder, deepest first: UpsampleLayer(C_below→C_skip, ×stride) → cat skip (not at full
//     resolution in 2D) → BasicResBlock(→C_skip, 1×1 skip) + (d_i−1)·BasicBlockD → 1×1 seg head.
//   PlainConvUNet: StackedConvBlocks per stage (first conv strided); decoder ConvTranspose
//     (kernel = stride) → cat skip → StackedConvBlocks → 1×1 seg head.
// Limits: no dropout, no other norms or nonlinearities than the official getters use.
#include "model/networks.h"

#include <torch/torch.h>

#include <fmt/ranges.h>

#include "core/error.h"
#include "model/blocks.h"
#include "model/mamba.h"

namespace umamba::model {

int64_t SegmentationNetwork::parameter_count() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

namespace {

IntList to_int64(const std::vector<int>& v) {
  return IntList(v.begin(), v.end());
}

std::shared_ptr<torch::nn::Module> container(torch::nn::Module& parent, const std::string& name) {
  return parent.register_module(name, std::make_shared<torch::nn::Module>());
}

MambaOptions mamba_options(const NetworkConfig& c) {
  MambaOptions o;
  o.d_state = c.mamba.d_state;
  o.d_conv = c.mamba.d_conv;
  o.expand = c.mamba.expand;
  return o;
}

// Logits of the decoder stages, reversed so that index 0 is full resolution.
std::vector<torch::Tensor> reversed(std::vector<torch::Tensor> v) {
  std::reverse(v.begin(), v.end());
  return v;
}

class UMambaNet : public SegmentationNetwork {
 public:
  explicit UMambaNet(ResolvedNetwork layout) : SegmentationNetwork(std::move(layout)) {
    const NetworkConfig& c = layout_.config;
    const int n = c.n_stages();
    const size_t dims = c.dims();
    const auto& C = c.features_per_stage;
    const IntList unit(dims, 1);
    const bool is_enc = c.architecture == Architecture::UMambaEnc;

    auto encoder = container(*this, "encoder");
    stem_ = encoder->register_module("stem", BlockSequence());
    stem_->push_back(
        BasicResBlock(c.input_channels, C[0], to_int64(c.kernel_sizes[0]), unit, true).ptr());
    for (int b = 1; b < layout_.stages[0].blocks; ++b) {
      stem_->push_back(BasicBlockD(C[0], to_int64(c.kernel_sizes[0])).ptr());
    }
    std::shared_ptr<torch::nn::Module> mamba_layers;
    if (is_enc) mamba_layers = container(*encoder, "mamba_layers");
    auto stages = container(*encoder, "stages");
    int64_t in = C[0];
    for (int s = 0; s < n; ++s) {
      BlockSequence seq;
      seq->push_back(
          BasicResBlock(in, C[s], to_int64(c.kernel_sizes[s]), to_int64(c.strides[s]), true).ptr());
      for (int b = 1; b < layout_.stages[s].blocks; ++b) {
        seq->push_back(BasicBlockD(C[s], to_int64(c.kernel_sizes[s])).ptr());
      }
      stages->register_module(std::to_string(s), seq);
      enc_stages_.push_back(seq);
      in = C[s];
      MambaLayer layer{nullptr};
      if (is_enc && layout_.stages[s].mamba) {
        layer = MambaLayer(layout_.stages[s].mamba_d_model, layout_.stages[s].channel_token,
                           mamba_options(c));
        mamba_layers->register_module(std::to_string(s), layer);
      }
      enc_mamba_.push_back(layer);
    }
    if (!is_enc) {
      bottleneck_mamba_ =
          register_module("mamba_layer", MambaLayer(C[n - 1], false, mamba_options(c)));
    }

    auto decoder = container(*this, "decoder");
    auto dstages = container(*decoder, "stages");
    auto ups = container(*decoder, "upsample_layers");
    auto segs = container(*decoder, "seg_layers");
    for (int s = 1; s < n; ++s) {
      const int i = s - 1;
      const int64_t below = C[n - s], skip = C[n - s - 1];
      const bool last = s == n - 1;
      const bool concat = !last || layout_.decoder_skips_full_resolution;
      UpsampleLayer up(below, skip, to_int64(c.strides[n - s]));
      ups->register_module(std::to_string(i), up);
      up_.push_back(up);
      const IntList k = to_int64(c.kernel_sizes[n - s - 1]);
      BlockSequence seq;
      seq->push_back(BasicResBlock(concat ? 2 * skip : skip, skip, k, unit, true).ptr());
      for (int b = 1; b < layout_.decoder_blocks[i]; ++b)
        seq->push_back(BasicBlockD(skip, k).ptr());
      dstages->register_module(std::to_string(i), seq);
      dec_stages_.push_back(seq);
      concat_.push_back(concat);
      Conv seg(skip, c.num_classes, unit, unit, IntList(dims, 0), true);
      segs->register_module(std::to_string(i), seg);
      seg_.push_back(seg);
    }
    apply_he_init(*this);
  }

  std::vector<torch::Tensor> forward(const torch::Tensor& input) override {
    check_input(input);
    std::vector<torch::Tensor> skips;
    torch::Tensor x = stem_->forward(input);
    for (size_t s = 0; s < enc_stages_.size(); ++s) {
      x = enc_stages_[s]->forward(x);
      if (enc_mamba_[s]) x = enc_mamba_[s]->forward(x);
      skips.push_back(x);
    }
    if (bottleneck_mamba_) skips.back() = bottleneck_mamba_->forward(skips.back());
    const int n = static_cast<int>(skips.size());
    std::vector<torch::Tensor> outputs;
    torch::Tensor lres = skips.back();
    for (int i = 0; i < n - 1; ++i) {
      x = up_[i]->forward(lres);
      if (concat_[i]) x = torch::cat({x, skips[n - 2 - i]}, 1);
      x = dec_stages_[i]->forward(x);
      if (deep_supervision() || i == n - 2) outputs.push_back(seg_[i]->forward(x));
      lres = x;
    }
    return reversed(std::move(outputs));
  }

 private:
  void check_input(const torch::Tensor& x) const {
    const NetworkConfig& c = layout_.config;
    UMAMBA_CHECK(x.dim() == c.dims() + 2 && x.size(1) == c.input_channels,
                 "{}: input must be [batch, {}, {} spatial axes], got {}",
                 to_string(c.architecture), c.input_channels, c.dims(), fmt::join(x.sizes(), "x"));
  }

  BlockSequence stem_{nullptr};
  std::vector<BlockSequence> enc_stages_;
  std::vector<MambaLayer> enc_mamba_;
  MambaLayer bottleneck_mamba_{nullptr};
  std::vector<UpsampleLayer> up_;
  std::vector<BlockSequence> dec_stages_;
  std::vector<bool> concat_;
  std::vector<Conv> seg_;
};

class PlainConvUNet : public SegmentationNetwork {
 public:
  explicit PlainConvUNet(ResolvedNetwork layout) : SegmentationNetwork(std::move(layout)) {
    const NetworkConfig& c = layout_.config;
    const int n = c.n_stages();
    const size_t dims = c.dims();
    const auto& C = c.features_per_stage;
    const IntList unit(dims, 1);

    auto encoder = container(*this, "encoder");
    auto stages = container(*encoder, "stages");
    int64_t in = c.input_channels;
    for (int s = 0; s < n; ++s) {
      BlockSequence seq;
      seq->push_back(StackedConvBlocks(layout_.stages[s].blocks, in, C[s],
                                       to_int64(c.kernel_sizes[s]), to_int64(c.strides[s]))
                         .ptr());
      stages->register_module(std::to_string(s), seq);
      enc_stages_.push_back(seq);
      in = C[s];
    }
    auto decoder = container(*this, "decoder");
    auto dstages = container(*decoder, "stages");
    auto tconvs = container(*decoder, "transpconvs");
    auto segs = container(*decoder, "seg_layers");
    for (int s = 1; s < n; ++s) {
      const int i = s - 1;
      const int64_t below = C[n - s], skip = C[n - s - 1];
      ConvTranspose tc(below, skip, to_int64(c.strides[n - s]), true);
      tconvs->register_module(std::to_string(i), tc);
      tconv_.push_back(tc);
      StackedConvBlocks st(layout_.decoder_blocks[i], 2 * skip, skip,
                           to_int64(c.kernel_sizes[n - s - 1]), unit);
      dstages->register_module(std::to_string(i), st);
      dec_stages_.push_back(st);
      Conv seg(skip, c.num_classes, unit, unit, IntList(dims, 0), true);
      segs->register_module(std::to_string(i), seg);
      seg_.push_back(seg);
    }
    apply_he_init(*this);
  }

  std::vector<torch::Tensor> forward(const torch::Tensor& input) override {
    const NetworkConfig& c = layout_.config;
    UMAMBA_CHECK(input.dim() == c.dims() + 2 && input.size(1) == c.input_channels,
                 "PlainConvUNet: input must be [batch, {}, {} spatial axes], got {}",
                 c.input_channels, c.dims(), fmt::join(input.sizes(), "x"));
    std::vector<torch::Tensor> skips;
    torch::Tensor x = input;
    for (auto& st : enc_stages_) {
      x = st->forward(x);
      skips.push_back(x);
    }
    const int n = static_cast<int>(skips.size());
    std::vector<torch::Tensor> outputs;
    torch::Tensor lres = skips.back();
    for (int i = 0; i < n - 1; ++i) {
      x = torch::cat({tconv_[i]->forward(lres), skips[n - 2 - i]}, 1);
      x = dec_stages_[i]->forward(x);
      if (deep_supervision() || i == n - 2) outputs.push_back(seg_[i]->forward(x));
      lres = x;
    }
    return reversed(std::move(outputs));
  }

 private:
  std::vector<BlockSequence> enc_stages_;
  std::vector<ConvTranspose> tconv_;
  std::vector<StackedConvBlocks> dec_stages_;
  std::vector<Conv> seg_;
};

}  // namespace

std::shared_ptr<SegmentationNetwork> make_network(const NetworkConfig& config) {
  ResolvedNetwork layout = resolve(config);
  if (config.architecture == Architecture::PlainConvUNet) {
    return std::make_shared<PlainConvUNet>(std::move(layout));
  }
  return std::make_shared<UMambaNet>(std::move(layout));
}

}  // namespace umamba::model
