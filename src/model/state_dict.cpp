// State-dict naming with the official aliases; see state_dict.h.
#include "model/state_dict.h"

#include <fmt/ranges.h>
#include <torch/torch.h>

#include <set>

#include "core/error.h"
#include "model/blocks.h"

namespace umamba::model {
namespace {

const std::string kEncoder = "encoder.";
const std::string kDecoderEncoder = "decoder.encoder.";

// Paths of ConvNormAct modules ("encoder.stem.1.conv1", ...).
std::set<std::string> conv_norm_act_paths(const torch::nn::Module& net) {
  std::set<std::string> paths;
  for (const auto& item : net.named_modules("", /*include_self=*/false)) {
    if (item.value()->as<ConvNormActImpl>() != nullptr) paths.insert(item.key());
  }
  return paths;
}

// "a.b.conv.weight" → {"a.b", "conv", "weight"} when the key has at least three parts.
bool split_last_two(const std::string& key, std::string& prefix, std::string& module,
                    std::string& leaf) {
  const size_t p2 = key.rfind('.');
  if (p2 == std::string::npos || p2 == 0) return false;
  const size_t p1 = key.rfind('.', p2 - 1);
  if (p1 == std::string::npos) return false;
  prefix = key.substr(0, p1);
  module = key.substr(p1 + 1, p2 - p1 - 1);
  leaf = key.substr(p2 + 1);
  return true;
}

}  // namespace

NamedTensors canonical_state_dict(const torch::nn::Module& net) {
  NamedTensors out;
  for (const auto& p : net.named_parameters(true)) out.emplace_back(p.key(), p.value());
  for (const auto& b : net.named_buffers(true)) out.emplace_back(b.key(), b.value());
  return out;
}

NamedTensors official_state_dict(const torch::nn::Module& net) {
  const std::set<std::string> cna = conv_norm_act_paths(net);
  NamedTensors with_cna;
  for (const auto& [key, t] : canonical_state_dict(net)) {
    with_cna.emplace_back(key, t);
  }
  // all_modules aliases follow the conv/norm keys of each ConvNormAct, as PyTorch orders them
  // (attributes first, then the all_modules Sequential).
  NamedTensors ordered;
  for (size_t i = 0; i < with_cna.size(); ++i) {
    ordered.push_back(with_cna[i]);
    std::string prefix, module, leaf;
    if (!split_last_two(with_cna[i].first, prefix, module, leaf) || !cna.count(prefix)) continue;
    // After the last tensor of this ConvNormAct (norm.bias), append its all_modules aliases.
    const bool last_of_block = module == "norm" && leaf == "bias";
    if (!last_of_block) continue;
    for (const auto& [k, t] : with_cna) {
      std::string p2, m2, l2;
      if (!split_last_two(k, p2, m2, l2) || p2 != prefix) continue;
      if (m2 == "conv") ordered.emplace_back(prefix + ".all_modules.0." + l2, t);
      if (m2 == "norm") ordered.emplace_back(prefix + ".all_modules.1." + l2, t);
    }
  }
  // decoder.encoder.* repeats encoder.*; PyTorch lists it where the decoder registers it (first).
  NamedTensors result;
  bool inserted = false;
  for (const auto& [key, t] : ordered) {
    if (!inserted && key.rfind("decoder.", 0) == 0) {
      for (const auto& [k2, t2] : ordered) {
        if (k2.rfind(kEncoder, 0) == 0) {
          result.emplace_back(kDecoderEncoder + k2.substr(kEncoder.size()), t2);
        }
      }
      inserted = true;
    }
    result.emplace_back(key, t);
  }
  return result;
}

std::string canonical_key(const std::string& key) {
  std::string k = key;
  if (k.rfind(kDecoderEncoder, 0) == 0) k = kEncoder + k.substr(kDecoderEncoder.size());
  const std::string am0 = ".all_modules.0.", am1 = ".all_modules.1.";
  if (size_t p = k.rfind(am0); p != std::string::npos) {
    k = k.substr(0, p) + ".conv." + k.substr(p + am0.size());
  } else if (size_t q = k.rfind(am1); q != std::string::npos) {
    k = k.substr(0, q) + ".norm." + k.substr(q + am1.size());
  }
  return k;
}

LoadReport load_state_dict(torch::nn::Module& net,
                           const std::map<std::string, torch::Tensor>& weights,
                           const std::string& source, bool strict) {
  LoadReport report;
  std::map<std::string, torch::Tensor> targets;
  for (auto& [k, t] : canonical_state_dict(net)) targets.emplace(k, t);

  std::vector<std::string> unknown;
  std::map<std::string, torch::Tensor> canonical;  // canonical key → source tensor
  std::vector<std::pair<std::string, std::string>> aliases;
  for (const auto& [key, t] : weights) {
    const std::string ck = canonical_key(key);
    if (!targets.count(ck)) {
      unknown.push_back(key);
      continue;
    }
    if (ck == key) {
      canonical[ck] = t;
    } else {
      aliases.emplace_back(key, ck);
    }
  }
  if (strict && !unknown.empty()) {
    const size_t show = std::min<size_t>(unknown.size(), 8);
    fail(
        "{}: {} weights belong to no parameter of this network (first: {}); is it the "
        "architecture the checkpoint was trained with?",
        source, unknown.size(),
        fmt::join(std::vector<std::string>(unknown.begin(), unknown.begin() + show), ", "));
  }
  // An alias without its canonical key still provides the tensor.
  for (const auto& [alias, ck] : aliases) {
    if (!canonical.count(ck)) canonical[ck] = weights.at(alias);
  }
  std::vector<std::string> missing;
  for (const auto& [k, t] : targets) {
    if (!canonical.count(k)) missing.push_back(k);
  }
  if (!missing.empty()) {
    const size_t show = std::min<size_t>(missing.size(), 8);
    fail("{}: {} parameters of the network are missing from the weights (first: {})", source,
         missing.size(),
         fmt::join(std::vector<std::string>(missing.begin(), missing.begin() + show), ", "));
  }
  torch::NoGradGuard no_grad;
  for (auto& [k, target] : targets) {
    const torch::Tensor& src = canonical.at(k);
    UMAMBA_CHECK(src.sizes() == target.sizes(),
                 "{}: weight '{}' has shape [{}], the network expects [{}]", source, k,
                 fmt::join(src.sizes(), ", "), fmt::join(target.sizes(), ", "));
    target.copy_(src);
    ++report.loaded;
  }
  for (const auto& [alias, ck] : aliases) {
    const torch::Tensor& a = weights.at(alias);
    const torch::Tensor& c = canonical.at(ck);
    UMAMBA_CHECK(a.sizes() == c.sizes() && torch::equal(a.to(c.dtype()), c),
                 "{}: '{}' should repeat '{}' (the official modules register it twice) but "
                 "differs; the checkpoint is inconsistent",
                 source, alias, ck);
    ++report.aliases;
  }
  return report;
}

}  // namespace umamba::model
