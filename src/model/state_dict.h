// Named weights of a network in the official PyTorch state_dict naming.
//
// The official modules register some submodules twice, so their state_dicts carry every such
// tensor under two (or four) keys: UNetDecoder/UNetResDecoder keep a reference to the encoder
// (`decoder.encoder.*` repeats `encoder.*`), and dynamic_network_architectures'
// ConvDropoutNormReLU keeps its conv and norm both as attributes and inside `all_modules`
// (`X.all_modules.0.*` = `X.conv.*`, `X.all_modules.1.*` = `X.norm.*`). Our modules register each
// tensor once (its canonical key); the functions here add the aliases when exporting and accept,
// check and drop them when loading.
#pragma once

#include <torch/nn/module.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace umamba::model {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Parameters and buffers under their canonical keys, in registration order.
NamedTensors canonical_state_dict(const torch::nn::Module& net);

// The keys the official network's state_dict() would have, each alias sharing the tensor of its
// canonical key.
NamedTensors official_state_dict(const torch::nn::Module& net);

// Canonical key of `key` (itself when it is not an alias).
std::string canonical_key(const std::string& key);

struct LoadReport {
  size_t loaded = 0;   // canonical tensors copied
  size_t aliases = 0;  // alias keys found and checked equal to their canonical tensor
};

// Copies `weights` (official or canonical keys) into `net`. Throws umamba::Error naming the keys
// when a canonical tensor is missing, a shape differs, an alias disagrees with its canonical
// tensor, or (strict) a key belongs to no parameter of `net`. `source` names the origin in
// messages (a file path).
LoadReport load_state_dict(torch::nn::Module& net,
                           const std::map<std::string, torch::Tensor>& weights,
                           const std::string& source, bool strict = true);

}  // namespace umamba::model
