// Network configuration: JSON in/out, nnU-Net plans → configuration, and the architecture rules of
// the official U-Mamba code (bowang-lab/U-Mamba nets/UMamba{Bot,Enc}_{2d,3d}.py, read at 28459e3):
// block-count rewrite in the model constructors, Mamba placement, channel-token stages, the 2D
// decoder without the full-resolution skip.
#include "model/network_config.h"

#include "model/plans_configuration.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

#include <fmt/ranges.h>

#include "core/error.h"

namespace umamba::model {

std::string to_string(Architecture a) {
  switch (a) {
    case Architecture::PlainConvUNet:
      return "PlainConvUNet";
    case Architecture::UMambaBot:
      return "UMambaBot";
    case Architecture::UMambaEnc:
      return "UMambaEnc";
  }
  return "?";
}

Architecture architecture_from_string(const std::string& name) {
  std::string n;
  for (char c : name) n += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (n == "plainconvunet" || n == "plain") return Architecture::PlainConvUNet;
  if (n == "umambabot" || n == "bot") return Architecture::UMambaBot;
  if (n == "umambaenc" || n == "enc") return Architecture::UMambaEnc;
  fail("unknown architecture '{}' (expected PlainConvUNet, UMambaBot or UMambaEnc)", name);
}

void NetworkConfig::validate() const {
  const int n = n_stages();
  UMAMBA_CHECK(n >= 2, "network config: {} stages; a U-Net needs at least 2", n);
  const int d = dims();
  UMAMBA_CHECK(d == 2 || d == 3, "network config: kernel sizes have {} axes; expected 2 or 3", d);
  UMAMBA_CHECK(input_channels >= 1, "network config: input_channels = {} must be ≥ 1",
               input_channels);
  UMAMBA_CHECK(num_classes >= 1, "network config: num_classes = {} must be ≥ 1", num_classes);
  UMAMBA_CHECK(static_cast<int>(kernel_sizes.size()) == n,
               "network config: {} kernel sizes for {} stages", kernel_sizes.size(), n);
  UMAMBA_CHECK(static_cast<int>(strides.size()) == n, "network config: {} strides for {} stages",
               strides.size(), n);
  UMAMBA_CHECK(static_cast<int>(n_conv_per_stage_encoder.size()) == n,
               "network config: n_conv_per_stage_encoder has {} entries for {} stages",
               n_conv_per_stage_encoder.size(), n);
  UMAMBA_CHECK(static_cast<int>(n_conv_per_stage_decoder.size()) == n - 1,
               "network config: n_conv_per_stage_decoder has {} entries; expected {} (stages - 1)",
               n_conv_per_stage_decoder.size(), n - 1);
  for (int s = 0; s < n; ++s) {
    UMAMBA_CHECK(features_per_stage[s] >= 1, "network config: features_per_stage[{}] = {}", s,
                 features_per_stage[s]);
    UMAMBA_CHECK(
        static_cast<int>(kernel_sizes[s].size()) == d && static_cast<int>(strides[s].size()) == d,
        "network config: stage {} kernel/stride do not have {} axes", s, d);
    for (int a = 0; a < d; ++a) {
      UMAMBA_CHECK(kernel_sizes[s][a] >= 1 && kernel_sizes[s][a] % 2 == 1,
                   "network config: kernel size {} at stage {} axis {} must be odd and ≥ 1",
                   kernel_sizes[s][a], s, a);
      UMAMBA_CHECK(strides[s][a] >= 1, "network config: stride {} at stage {} axis {}",
                   strides[s][a], s, a);
    }
    UMAMBA_CHECK(n_conv_per_stage_encoder[s] >= 1,
                 "network config: n_conv_per_stage_encoder[{}] = {} must be ≥ 1", s,
                 n_conv_per_stage_encoder[s]);
  }
  for (int s = 0; s < n - 1; ++s) {
    UMAMBA_CHECK(n_conv_per_stage_decoder[s] >= 1,
                 "network config: n_conv_per_stage_decoder[{}] = {} must be ≥ 1", s,
                 n_conv_per_stage_decoder[s]);
  }
  if (!patch_size.empty()) {
    UMAMBA_CHECK(static_cast<int>(patch_size.size()) == d,
                 "network config: patch_size has {} axes, kernels have {}", patch_size.size(), d);
    for (int a = 0; a < d; ++a) {
      UMAMBA_CHECK(patch_size[a] >= 1, "network config: patch_size[{}] = {}", a, patch_size[a]);
    }
  }
  if (architecture == Architecture::UMambaEnc) {
    UMAMBA_CHECK(!patch_size.empty(),
                 "network config: UMambaEnc needs patch_size (its channel-token stages are sized "
                 "from it)");
  }
  UMAMBA_CHECK(mamba.d_state >= 1 && mamba.d_conv >= 1 && mamba.expand >= 1,
               "network config: mamba d_state {}, d_conv {}, expand {} must be ≥ 1", mamba.d_state,
               mamba.d_conv, mamba.expand);
}

nlohmann::json NetworkConfig::to_json() const {
  nlohmann::json j;
  j["architecture"] = to_string(architecture);
  j["input_channels"] = input_channels;
  j["num_classes"] = num_classes;
  j["features_per_stage"] = features_per_stage;
  j["conv_kernel_sizes"] = kernel_sizes;
  j["pool_op_kernel_sizes"] = strides;
  j["n_conv_per_stage_encoder"] = n_conv_per_stage_encoder;
  j["n_conv_per_stage_decoder"] = n_conv_per_stage_decoder;
  j["patch_size"] = patch_size;
  j["deep_supervision"] = deep_supervision;
  j["mamba"] = {{"d_state", mamba.d_state}, {"d_conv", mamba.d_conv}, {"expand", mamba.expand}};
  return j;
}

namespace {

template <typename T>
T field(const nlohmann::json& j, const char* key, const char* where) {
  if (!j.contains(key)) fail("{}: missing field '{}'", where, key);
  try {
    return j.at(key).get<T>();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: field '{}' has the wrong type ({})", where, key, e.what());
  }
}

}  // namespace

NetworkConfig NetworkConfig::from_json(const nlohmann::json& j) {
  constexpr const char* kWhere = "network config";
  NetworkConfig c;
  c.architecture = architecture_from_string(field<std::string>(j, "architecture", kWhere));
  c.input_channels = field<int>(j, "input_channels", kWhere);
  c.num_classes = field<int>(j, "num_classes", kWhere);
  c.features_per_stage = field<std::vector<int>>(j, "features_per_stage", kWhere);
  c.kernel_sizes = field<std::vector<std::vector<int>>>(j, "conv_kernel_sizes", kWhere);
  c.strides = field<std::vector<std::vector<int>>>(j, "pool_op_kernel_sizes", kWhere);
  c.n_conv_per_stage_encoder = field<std::vector<int>>(j, "n_conv_per_stage_encoder", kWhere);
  c.n_conv_per_stage_decoder = field<std::vector<int>>(j, "n_conv_per_stage_decoder", kWhere);
  if (j.contains("patch_size")) c.patch_size = field<std::vector<int>>(j, "patch_size", kWhere);
  if (j.contains("deep_supervision"))
    c.deep_supervision = field<bool>(j, "deep_supervision", kWhere);
  if (j.contains("mamba")) {
    const auto& m = j.at("mamba");
    if (m.contains("d_state")) c.mamba.d_state = field<int>(m, "d_state", "network config mamba");
    if (m.contains("d_conv")) c.mamba.d_conv = field<int>(m, "d_conv", "network config mamba");
    if (m.contains("expand")) c.mamba.expand = field<int>(m, "expand", "network config mamba");
  }
  c.validate();
  return c;
}

namespace {

// plans["configurations"][name] with "inherits_from" resolved (child keys win), as nnU-Net's
// PlansManager does.
nlohmann::json resolve_configuration(const nlohmann::json& plans, const std::string& name,
                                     std::set<std::string>& visited) {
  if (!plans.contains("configurations") || !plans["configurations"].contains(name)) {
    std::vector<std::string> names;
    if (plans.contains("configurations")) {
      for (const auto& [k, v] : plans["configurations"].items()) names.push_back(k);
    }
    fail("plans: no configuration '{}' (available: {})", name, fmt::join(names, ", "));
  }
  UMAMBA_CHECK(visited.insert(name).second, "plans: configuration '{}' inherits from itself", name);
  nlohmann::json config = plans["configurations"][name];
  if (config.contains("inherits_from")) {
    nlohmann::json base =
        resolve_configuration(plans, config["inherits_from"].get<std::string>(), visited);
    for (const auto& [k, v] : config.items()) base[k] = v;
    config = base;
  }
  return config;
}

}  // namespace

nlohmann::json resolve_plans_configuration(const nlohmann::json& plans, const std::string& name) {
  std::set<std::string> visited;
  return resolve_configuration(plans, name, visited);
}

NetworkConfig NetworkConfig::from_nnunet_plans(const nlohmann::json& plans,
                                               const std::string& configuration,
                                               Architecture architecture, int input_channels,
                                               int num_classes) {
  const nlohmann::json cm = resolve_plans_configuration(plans, configuration);
  const std::string where = "plans configuration '" + configuration + "'";
  NetworkConfig c;
  c.architecture = architecture;
  c.input_channels = input_channels;
  c.num_classes = num_classes;
  if (cm.contains("architecture") && cm["architecture"].contains("arch_kwargs")) {
    // nnU-Net ≥ 2.4 plans: the network is described by architecture.arch_kwargs.
    const nlohmann::json& a = cm["architecture"]["arch_kwargs"];
    const std::string w = where + " architecture.arch_kwargs";
    c.kernel_sizes = field<std::vector<std::vector<int>>>(a, "kernel_sizes", w.c_str());
    c.strides = field<std::vector<std::vector<int>>>(a, "strides", w.c_str());
    c.features_per_stage = field<std::vector<int>>(a, "features_per_stage", w.c_str());
    const char* enc_key =
        a.contains("n_conv_per_stage") ? "n_conv_per_stage" : "n_blocks_per_stage";
    c.n_conv_per_stage_encoder = field<std::vector<int>>(a, enc_key, w.c_str());
    c.n_conv_per_stage_decoder = field<std::vector<int>>(a, "n_conv_per_stage_decoder", w.c_str());
    c.patch_size = field<std::vector<int>>(cm, "patch_size", where.c_str());
    c.validate();
    return c;
  }
  c.kernel_sizes = field<std::vector<std::vector<int>>>(cm, "conv_kernel_sizes", where.c_str());
  c.strides = field<std::vector<std::vector<int>>>(cm, "pool_op_kernel_sizes", where.c_str());
  const int base = field<int>(cm, "UNet_base_num_features", where.c_str());
  const int max_features = field<int>(cm, "unet_max_num_features", where.c_str());
  const int n = static_cast<int>(c.kernel_sizes.size());
  for (int i = 0; i < n; ++i) {
    const int64_t f = static_cast<int64_t>(base) << std::min(i, 30);
    c.features_per_stage.push_back(static_cast<int>(std::min<int64_t>(f, max_features)));
  }
  c.n_conv_per_stage_encoder =
      field<std::vector<int>>(cm, "n_conv_per_stage_encoder", where.c_str());
  c.n_conv_per_stage_decoder =
      field<std::vector<int>>(cm, "n_conv_per_stage_decoder", where.c_str());
  c.patch_size = field<std::vector<int>>(cm, "patch_size", where.c_str());
  c.validate();
  return c;
}

ResolvedNetwork resolve(const NetworkConfig& config) {
  config.validate();
  ResolvedNetwork r;
  r.config = config;
  const int n = config.n_stages();
  const int dims = config.dims();
  const bool umamba = config.architecture != Architecture::PlainConvUNet;

  std::vector<int> enc = config.n_conv_per_stage_encoder;
  std::vector<int> dec = config.n_conv_per_stage_decoder;
  if (umamba) {
    // UMambaBot/UMambaEnc constructors: for s in range(ceil(n/2), n): blocks[s] = 1, and
    // for s in range(ceil((n-1)/2 + 0.5), n-1): decoder[s] = 1.
    for (int s = (n + 1) / 2; s < n; ++s) enc[s] = 1;
    // The decoder bound is the official float expression ceil((n-1)/2 + 0.5), evaluated as such.
    const double start = std::ceil((n - 1) / 2.0 + 0.5);
    for (int s = static_cast<int>(start); s < n - 1; ++s) dec[s] = 1;
    r.decoder_skips_full_resolution = dims == 3;
  }
  r.config.n_conv_per_stage_encoder = enc;
  r.config.n_conv_per_stage_decoder = dec;
  r.decoder_blocks = dec;

  std::vector<int> fm = config.patch_size;
  for (int s = 0; s < n; ++s) {
    StageLayout st;
    st.blocks = enc[s];
    if (!fm.empty()) {
      for (int a = 0; a < dims; ++a) fm[a] /= config.strides[s][a];
      st.feature_map = fm;
    }
    if (config.architecture == Architecture::UMambaEnc) {
      int64_t pixels = 1;
      for (int v : st.feature_map) pixels *= v;
      st.channel_token = pixels <= config.features_per_stage[s];
      st.mamba = dims == 3 || ((s % 2 == 1) != (n % 2 == 1));
      if (st.mamba) {
        UMAMBA_CHECK(pixels >= 1,
                     "UMambaEnc: stage {} feature map {} is empty for patch size {}; the patch "
                     "is too small for {} stages",
                     s, fmt::join(st.feature_map, "x"), fmt::join(config.patch_size, "x"), n);
        st.mamba_d_model =
            st.channel_token ? static_cast<int>(pixels) : config.features_per_stage[s];
      }
    } else if (config.architecture == Architecture::UMambaBot && s == n - 1) {
      st.mamba = true;
      st.mamba_d_model = config.features_per_stage[s];
    }
    r.stages.push_back(st);
  }
  return r;
}

nlohmann::json ResolvedNetwork::hyperparams() const {
  nlohmann::json j = config.to_json();
  j["dims"] = config.dims();
  j["n_stages"] = config.n_stages();
  j["decoder_skips_full_resolution"] = decoder_skips_full_resolution;
  nlohmann::json stages_json = nlohmann::json::array();
  for (size_t s = 0; s < stages.size(); ++s) {
    const StageLayout& st = stages[s];
    nlohmann::json sj = {{"stage", s},
                         {"features", config.features_per_stage[s]},
                         {"kernel", config.kernel_sizes[s]},
                         {"stride", config.strides[s]},
                         {"blocks", st.blocks}};
    if (!st.feature_map.empty()) sj["feature_map"] = st.feature_map;
    if (st.mamba) {
      const int d_inner = config.mamba.expand * st.mamba_d_model;
      sj["mamba"] = {{"tokens", st.channel_token ? "channel" : "spatial"},
                     {"d_model", st.mamba_d_model},
                     {"d_inner", d_inner},
                     {"dt_rank", (st.mamba_d_model + 15) / 16},
                     {"d_state", config.mamba.d_state},
                     {"d_conv", config.mamba.d_conv}};
    }
    stages_json.push_back(sj);
  }
  j["stages"] = stages_json;
  j["decoder_blocks"] = decoder_blocks;
  return j;
}

NetworkConfig microscopy_2d_config(Architecture architecture, int patch, int input_channels,
                                   int num_classes) {
  UMAMBA_CHECK(patch >= 8, "microscopy configuration: patch {} is too small", patch);
  NetworkConfig c;
  c.architecture = architecture;
  c.input_channels = input_channels;
  c.num_classes = num_classes;
  int stages = 1;
  for (int p = patch; p % 2 == 0 && p / 2 >= 4; p /= 2) ++stages;
  for (int i = 0; i < stages; ++i) {
    c.features_per_stage.push_back(std::min(32 << i, 512));
    c.kernel_sizes.push_back({3, 3});
    c.strides.push_back(i == 0 ? std::vector<int>{1, 1} : std::vector<int>{2, 2});
    c.n_conv_per_stage_encoder.push_back(2);
    if (i > 0) c.n_conv_per_stage_decoder.push_back(2);
  }
  c.patch_size = {patch, patch};
  return c;
}

}  // namespace umamba::model
