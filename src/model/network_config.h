// The configuration a network is built from: an nnU-Net plans configuration plus the choice of
// architecture. Free of LibTorch, so that the planner, the pipeline and the CLI can read, write
// and report it without seeing tensors.
//
// Architectures (reference/umamba-mamba-nnunet.md §1, §4):
//   PlainConvUNet  nnU-Net's baseline (dynamic_network_architectures v0.2): per stage
//                  n_conv_per_stage_encoder conv–norm–LeakyReLU, transposed-conv decoder.
//   UMambaBot      residual U-Net, one Mamba layer on the bottleneck.
//   UMambaEnc      residual U-Net, a Mamba layer after encoder stages (every stage in 3D; in 2D the
//                  stages s with odd(s) XOR odd(n_stages)); stages whose feature map has no more
//                  pixels than channels use channel tokens, which ties the net to `patch_size`.
// Both U-Mamba variants rewrite the block counts the plans give (encoder stages s ≥ ⌈n/2⌉ get
// 1 block, decoder stages ⌈(n−1)/2 + 0.5⌉ … n−2 get 1), and their 2D decoders do not concatenate
// the full-resolution skip. `resolve()` applies these rules once and reports the result.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace umamba::model {

enum class Architecture { PlainConvUNet, UMambaBot, UMambaEnc };

std::string to_string(Architecture a);  // "PlainConvUNet", "UMambaBot", "UMambaEnc"
Architecture architecture_from_string(
    const std::string& name);  // also accepts "plain", "bot", "enc"

// Mamba block sizes (mamba_ssm v1.2.0 defaults, as U-Mamba uses them).
struct MambaSettings {
  int d_state = 16;  // N, state size per channel
  int d_conv = 4;    // width of the depthwise causal conv1d
  int expand = 2;    // d_inner = expand · d_model
};

struct NetworkConfig {
  Architecture architecture = Architecture::UMambaBot;
  int input_channels = 1;
  int num_classes = 2;                         // segmentation heads (labels including background)
  std::vector<int> features_per_stage;         // [n_stages]
  std::vector<std::vector<int>> kernel_sizes;  // [n_stages][dims], plans "conv_kernel_sizes"
  std::vector<std::vector<int>> strides;       // [n_stages][dims], plans "pool_op_kernel_sizes"
  std::vector<int> n_conv_per_stage_encoder;   // [n_stages], as the plans give it
  std::vector<int> n_conv_per_stage_decoder;   // [n_stages - 1], as the plans give it
  std::vector<int> patch_size;                 // [dims] voxels; required by UMambaEnc
  bool deep_supervision = true;
  MambaSettings mamba;

  int n_stages() const { return static_cast<int>(features_per_stage.size()); }
  int dims() const { return kernel_sizes.empty() ? 0 : static_cast<int>(kernel_sizes[0].size()); }

  // Throws umamba::Error naming the field at fault when lengths, dims or values are inconsistent.
  void validate() const;

  nlohmann::json to_json() const;
  static NetworkConfig from_json(const nlohmann::json& j);

  // Builds the configuration nnU-Net's getters would build from plans.json
  // (plans["configurations"][configuration], resolving "inherits_from"):
  // features_per_stage[i] = min(UNet_base_num_features · 2^i, unet_max_num_features) in the
  // nnU-Net 2.2 format U-Mamba uses; nnU-Net ≥ 2.4 plans (architecture.arch_kwargs) are read too.
  static NetworkConfig from_nnunet_plans(const nlohmann::json& plans,
                                         const std::string& configuration,
                                         Architecture architecture, int input_channels,
                                         int num_classes);
};

// One encoder stage as the network really builds it.
struct StageLayout {
  std::vector<int> feature_map;  // [dims] size after this stage for the configured patch size
  int blocks = 0;                // residual blocks (U-Mamba) or convs (PlainConvUNet)
  bool mamba = false;            // a Mamba layer follows this stage (Enc) / sits on it (Bot)
  bool channel_token = false;    // that Mamba layer uses channels as tokens
  int mamba_d_model = 0;         // its d_model (features, or pixels for channel tokens)
};

struct ResolvedNetwork {
  NetworkConfig config;             // with the block counts rewritten as the network uses them
  std::vector<StageLayout> stages;  // [n_stages]
  std::vector<int> decoder_blocks;  // [n_stages - 1], index 0 = deepest decoder stage
  bool decoder_skips_full_resolution = true;  // false for the U-Mamba 2D variants
  // What the network is, as JSON (tiny-cuda-nn style hyperparams): every effective setting.
  nlohmann::json hyperparams() const;
};

// The U-Mamba paper's 2D microscopy configuration at a square patch (reference peer-perf.md §4:
// at 512², 8 stages with features 32·2^i capped at 512, 3×3 kernels, strides 1 then 2, two convs
// per stage), with as many stages as halve the patch down to 4 pixels; deep supervision on.
NetworkConfig microscopy_2d_config(Architecture architecture, int patch, int input_channels,
                                   int num_classes);

// Applies the architecture's rules (block-count rewrite, Mamba placement, channel tokens, 2D
// decoder rule). Throws when the configuration is invalid.
ResolvedNetwork resolve(const NetworkConfig& config);

}  // namespace umamba::model
