// Model folders as TileModels for `umamba predict` (see predict_model.h).
#include "pipeline/predict_model.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/error.h"
#include "core/log.h"

#if defined(UMAMBA_WITH_TORCH)
#include <torch/torch.h>

#include "engine/tile_model.h"
#include "model/model_folder.h"
#include "model/model_io.h"
#include "model/plans_configuration.h"
#include "model/runtime_info.h"
#include "model/sha256.h"
#endif

namespace umamba::pipeline {

#if !defined(UMAMBA_WITH_TORCH)

namespace {
[[noreturn]] void no_torch() {
  throw Unsupported("umamba predict needs a build with LibTorch (configure with UMAMBA_TORCH=ON)");
}
}  // namespace

ModelInfo inspect_model(const std::string&, const std::string&) {
  no_torch();
}
std::vector<std::string> resolve_devices(const std::string&) {
  no_torch();
}
std::shared_ptr<engine::TileModel> load_tile_model(const ModelInfo&, const std::string&) {
  no_torch();
}
void set_inference_threads(int) {}
nlohmann::json inference_runtime() {
  return nullptr;
}

#else

namespace {

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream list(text);
  for (std::string item; std::getline(list, item, ',');) {
    const size_t a = item.find_first_not_of(" \t"), b = item.find_last_not_of(" \t");
    if (a != std::string::npos) out.push_back(item.substr(a, b - a + 1));
  }
  return out;
}

// The selected folds' networks, logits averaged (nnU-Net's fold ensemble).
class EnsembleTileModel : public engine::TileModel {
 public:
  EnsembleTileModel(std::vector<std::shared_ptr<model::SegmentationNetwork>> nets,
                    const ModelInfo& info, torch::Device device)
      : nets_(std::move(nets)), info_(info), device_(device) {
    for (auto& n : nets_) {
      n->set_deep_supervision(false);
      n->eval();
    }
  }

  torch::Tensor forward(const torch::Tensor& batch) override {
    torch::Tensor sum;
    for (auto& n : nets_) {
      std::vector<torch::Tensor> out = n->forward(batch);
      UMAMBA_CHECK(!out.empty(), "{}: the network returned no output", info_.path);
      torch::Tensor logits = out.front().to(torch::kFloat);
      sum = sum.defined() ? sum + logits : logits;
    }
    if (nets_.size() > 1) sum = sum / static_cast<double>(nets_.size());
    return sum;
  }
  int64_t in_channels() const override { return info_.in_channels; }
  int64_t num_classes() const override { return info_.num_classes; }
  std::vector<int64_t> patch_size() const override { return info_.patch_size; }
  torch::Device device() const override { return device_; }

 private:
  std::vector<std::shared_ptr<model::SegmentationNetwork>> nets_;
  ModelInfo info_;
  torch::Device device_;
};

// The model's plans configuration with "inherits_from" resolved (model/plans_configuration.h),
// or null when the folder has no plans.json or it lacks the configuration (the network.json then
// describes the network and the normalisation falls back to z-score).
nlohmann::json plans_configuration(const nlohmann::json& plans, const std::string& name) {
  if (!plans.is_object() || !plans.contains("configurations") ||
      !plans["configurations"].contains(name))
    return nullptr;
  return model::resolve_plans_configuration(plans, name);
}

}  // namespace

ModelInfo inspect_model(const std::string& dir, const std::string& folds) {
  const model::ModelFolder folder = model::read_model_folder(dir);
  ModelInfo info;
  info.path = dir;
  info.architecture = model::to_string(folder.network.architecture);
  info.configuration = folder.metadata.value("configuration", std::string());
  info.available_folds = folder.folds;
  info.folds = folds.empty() ? folder.folds : split_list(folds);
  UMAMBA_CHECK(!info.folds.empty(), "{}: no folds selected", dir);
  for (const auto& f : info.folds) {
    UMAMBA_CHECK(folder.metadata["folds"].contains(f), "{}: no fold '{}' (the folder has: {})", dir,
                 f, fmt::join(folder.folds, ", "));
    info.fold_sha256[f] = folder.metadata["folds"][f].value("sha256", std::string());
  }
  info.in_channels = folder.network.input_channels;
  info.num_classes = folder.network.num_classes;
  const nlohmann::json configuration = info.configuration.empty()
                                           ? nlohmann::json()
                                           : plans_configuration(folder.plans, info.configuration);
  for (int p : folder.network.patch_size) info.patch_size.push_back(p);
  if (info.patch_size.empty() && configuration.is_object() &&
      configuration.contains("patch_size")) {
    for (const auto& p : configuration["patch_size"]) info.patch_size.push_back(p.get<int64_t>());
  }
  UMAMBA_CHECK(!info.patch_size.empty(),
               "{}: neither network.json nor plans.json gives the patch size", dir);
  UMAMBA_CHECK(static_cast<int>(info.patch_size.size()) == folder.network.dims(),
               "{}: patch size has {} axes but the network is {}D", dir, info.patch_size.size(),
               folder.network.dims());
  if (folder.dataset.is_object() && folder.dataset.contains("labels")) {
    info.labels = folder.dataset["labels"];
  }
  if (folder.network.dims() == 3 && configuration.is_object() &&
      configuration.contains("spacing")) {
    for (const auto& v : configuration["spacing"]) info.spacing.push_back(v.get<double>());
    UMAMBA_CHECK(info.spacing.size() == 3,
                 "{}: plans.json configuration '{}' gives a spacing of {} axes for a 3D network",
                 dir, info.configuration, info.spacing.size());
    for (double v : info.spacing) {
      UMAMBA_CHECK(std::isfinite(v) && v > 0, "{}: plans.json spacing {} is not positive", dir, v);
    }
    if (folder.plans.contains("transpose_forward")) {
      info.transpose_forward = folder.plans["transpose_forward"].get<std::vector<int64_t>>();
      std::vector<int64_t> sorted = info.transpose_forward;
      std::sort(sorted.begin(), sorted.end());
      UMAMBA_CHECK(sorted == (std::vector<int64_t>{0, 1, 2}),
                   "{}: plans.json transpose_forward must be a permutation of 0,1,2", dir);
    }
  }
  if (configuration.is_object() && configuration.contains("normalization_schemes")) {
    const nlohmann::json props =
        folder.plans.value("foreground_intensity_properties_per_channel", nlohmann::json::object());
    info.normalization = engine::Normalization::from_plans(configuration, props);
    info.normalization_source = "plans.json configuration '" + info.configuration + "'";
  } else {
    info.normalization = engine::Normalization{};
    info.normalization_source = "default z-score (no plans.json configuration)";
  }
  info.hash = model::sha256_file((std::filesystem::path(dir) / "metadata.json").string());
  return info;
}

std::vector<std::string> resolve_devices(const std::string& spec) {
  const int64_t gpus =
      torch::cuda::is_available() ? static_cast<int64_t>(torch::cuda::device_count()) : 0;
  if (spec == "auto") return {gpus > 0 ? "cuda:0" : "cpu"};
  if (spec == "cpu") return {"cpu"};
  if (spec == "all") {
    if (gpus == 0) {
      log::warn("--device all: no GPU is visible; running on the CPU");
      return {"cpu"};
    }
    std::vector<std::string> out;
    for (int64_t i = 0; i < gpus; ++i) out.push_back(fmt::format("cuda:{}", i));
    return out;
  }
  std::string name = spec == "cuda" ? "cuda:0" : spec;
  UMAMBA_CHECK(name.rfind("cuda:", 0) == 0,
               "--device '{}': expected auto, cpu, cuda, cuda:N or all", spec);
  int64_t index = -1;
  try {
    size_t used = 0;
    index = std::stoll(name.substr(5), &used);
    if (used != name.size() - 5) index = -1;
  } catch (const std::exception&) {
    index = -1;
  }
  UMAMBA_CHECK(index >= 0, "--device '{}': expected cuda:N with N a GPU index", spec);
  UMAMBA_CHECK(index < gpus, "--device {}: {} GPU(s) visible to this process{}", spec, gpus,
               gpus == 0 ? " (LibTorch sees no CUDA device)" : "");
  return {name};
}

std::shared_ptr<engine::TileModel> load_tile_model(const ModelInfo& info,
                                                   const std::string& device) {
  const model::ModelFolder folder = model::read_model_folder(info.path);
  const torch::Device dev(device);
  std::vector<std::shared_ptr<model::SegmentationNetwork>> nets;
  for (const auto& f : info.folds) nets.push_back(model::load_network(folder, f, dev));
  return std::make_shared<EnsembleTileModel>(std::move(nets), info, dev);
}

void set_inference_threads(int n) {
  if (n > 0) torch::set_num_threads(n);
}

nlohmann::json inference_runtime() {
  return model::torch_runtime_info();
}

#endif

}  // namespace umamba::pipeline
