// What the engine needs from a network: a map from a batch of tiles to logits.
//
// The engine does not know U-Mamba: any torch::nn::Module whose forward takes a batch
// [N, C, (Z), Y, X] and returns logits [N, K, (Z), Y, X] at the same resolution plugs in through
// ModuleTileModel, and anything else (a network returning deep-supervision lists, a TorchScript
// module) through FunctionTileModel with a lambda that picks the highest-resolution output.
// Mixed precision and mirroring are the engine's business; a network that must keep layers in
// fp32 under autocast (Mamba) does so itself.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace umamba::engine {

class TileModel {
 public:
  virtual ~TileModel() = default;
  // batch: [N, C, Y, X] (2D) or [N, C, Z, Y, X] (3D), float32, on device(); returns the logits
  // [N, K, ...same spatial shape] in any floating dtype, on device(). Called from one thread at a
  // time, under torch::NoGradGuard / InferenceMode.
  virtual torch::Tensor forward(const torch::Tensor& batch) = 0;
  virtual int64_t in_channels() const = 0;
  virtual int64_t num_classes() const = 0;
  // The training patch, [Y, X] (2D) or [Z, Y, X] (3D); its length decides 2D or 3D.
  virtual std::vector<int64_t> patch_size() const = 0;
  virtual torch::Device device() const = 0;
  int spatial_dims() const { return static_cast<int>(patch_size().size()); }
};

// Facts shared by the adapters.
struct TileModelSpec {
  int64_t in_channels = 1;
  int64_t num_classes = 2;
  std::vector<int64_t> patch_size;  // [Y, X] or [Z, Y, X]
};

// Any module holder with `Tensor forward(Tensor)`: moved to `device` and put in eval mode.
class ModuleTileModel : public TileModel {
 public:
  ModuleTileModel(torch::nn::AnyModule module, const TileModelSpec& spec,
                  torch::Device device = torch::kCPU);
  template <typename ModuleHolder>
  ModuleTileModel(ModuleHolder holder, const TileModelSpec& spec,
                  torch::Device device = torch::kCPU)
      : ModuleTileModel(torch::nn::AnyModule(holder), spec, device) {}

  torch::Tensor forward(const torch::Tensor& batch) override;
  int64_t in_channels() const override { return spec_.in_channels; }
  int64_t num_classes() const override { return spec_.num_classes; }
  std::vector<int64_t> patch_size() const override { return spec_.patch_size; }
  torch::Device device() const override { return device_; }

 private:
  torch::nn::AnyModule module_;
  TileModelSpec spec_;
  torch::Device device_;
};

// A callable batch -> logits; the caller has placed whatever it calls on `device`.
class FunctionTileModel : public TileModel {
 public:
  using Forward = std::function<torch::Tensor(const torch::Tensor&)>;
  FunctionTileModel(Forward forward, const TileModelSpec& spec, torch::Device device = torch::kCPU);

  torch::Tensor forward(const torch::Tensor& batch) override { return forward_(batch); }
  int64_t in_channels() const override { return spec_.in_channels; }
  int64_t num_classes() const override { return spec_.num_classes; }
  std::vector<int64_t> patch_size() const override { return spec_.patch_size; }
  torch::Device device() const override { return device_; }

 private:
  Forward forward_;
  TileModelSpec spec_;
  torch::Device device_;
};

// Checks a spec (channels, classes, 2 or 3 positive patch edges); throws umamba::Error.
void validate_spec(const TileModelSpec& spec);

}  // namespace umamba::engine
