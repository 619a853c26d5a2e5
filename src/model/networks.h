// The segmentation networks: U-Mamba Bot and Enc (2D and 3D) and nnU-Net's PlainConvUNet, built
// from a NetworkConfig (network_config.h). Module and parameter names reproduce the official
// state_dict keys (without the aliases `decoder.encoder.*` and `*.all_modules.N.*`, which the
// official modules register twice; model/state_dict.h adds and checks them).
//
// forward(x [B, C_in, *patch]) returns the logits: with deep supervision one map per decoder stage,
// index 0 at full resolution, index i at the resolution of encoder stage i (n_stages − 1 maps);
// without it a single full-resolution map. Spatial sizes must be divisible by the product of the
// strides (nnU-Net pads tiles accordingly); UMambaEnc additionally needs the training patch size
// wherever a stage uses channel tokens.
#pragma once

#include <torch/nn/module.h>

#include <memory>
#include <vector>

#include "model/network_config.h"

namespace umamba::model {

class SegmentationNetwork : public torch::nn::Module {
 public:
  explicit SegmentationNetwork(ResolvedNetwork layout) : layout_(std::move(layout)) {}
  virtual std::vector<torch::Tensor> forward(const torch::Tensor& x) = 0;

  const ResolvedNetwork& layout() const { return layout_; }
  bool deep_supervision() const { return layout_.config.deep_supervision; }
  void set_deep_supervision(bool on) { layout_.config.deep_supervision = on; }
  // Number of scalar parameters (each parameter counted once).
  int64_t parameter_count() const;

 protected:
  ResolvedNetwork layout_;
};

// Builds the network with its official initialisation (He on convs, mamba_ssm on Mamba layers).
std::shared_ptr<SegmentationNetwork> make_network(const NetworkConfig& config);

}  // namespace umamba::model
