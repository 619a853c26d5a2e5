// Model folders and the import of nnU-Net / U-Mamba results folders; see model_folder.h.
//
// nnU-Net facts used (U-Mamba's vendored nnU-Net 2.2.1; reference/umamba-mamba-nnunet.md §1.5,
// §4.7): results folders are `<Trainer>__<Plans>__<configuration>/fold_<f>/checkpoint_*.pth`;
// the checkpoint is a dict with 'network_weights' (the state_dict), 'trainer_name', 'init_args'
// ({'configuration', 'fold', 'plans', 'dataset_json', 'device', ...}), 'current_epoch'; the
// network's input channels are the dataset's channel_names and its heads the labels (the
// foreground regions when labels are region lists).
#include <fmt/ranges.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <ftw.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/build_info.h"
#include "core/error.h"
#include "model/model_io.h"
#include "model/sha256.h"
#include "model/state_dict.h"
#include "model/torch_file.h"

namespace umamba::model {
namespace fs = std::filesystem;

namespace {

constexpr int kFormatVersion = 1;

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) fail_file(path.string(), "cannot be opened");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail_file(path.string(), "is not valid JSON: {}", e.what());
  }
}

void write_file(const fs::path& path, const char* data, size_t size) {
  const fs::path tmp = path.parent_path() / ("." + path.filename().string() + ".tmp");
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail_file(tmp.string(), "cannot be created");
    out.write(data, static_cast<std::streamsize>(size));
    out.close();
    if (!out) fail_file(tmp.string(), "write failed (disk full?)");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) fail_file(path.string(), "cannot be renamed into place: {}", ec.message());
}

void write_json(const fs::path& path, const nlohmann::json& j) {
  const std::string text = j.dump(2) + "\n";
  write_file(path, text.data(), text.size());
}

std::string utc_now() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void require_empty_dir(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    UMAMBA_CHECK(fs::is_directory(dir, ec) && fs::is_empty(dir, ec),
                 "{}: exists and is not an empty folder; choose another output or remove it",
                 dir.string());
  } else {
    fs::create_directories(dir, ec);
    if (ec) fail_file(dir.string(), "cannot be created: {}", ec.message());
  }
}

// Segmentation heads of an nnU-Net dataset.json: labels including background, or the foreground
// regions when some label maps to a list (region-based training).
int heads_from_dataset(const nlohmann::json& dataset, const std::string& where) {
  UMAMBA_CHECK(dataset.contains("labels") && dataset["labels"].is_object(),
               "{}: dataset.json has no 'labels' object", where);
  bool regions = false;
  for (const auto& [name, value] : dataset["labels"].items()) regions = regions || value.is_array();
  if (!regions) return static_cast<int>(dataset["labels"].size());
  int n = 0;
  for (const auto& [name, value] : dataset["labels"].items()) {
    if (name != "background") ++n;
  }
  return n;
}

int channels_from_dataset(const nlohmann::json& dataset, const std::string& where) {
  const char* key = dataset.contains("channel_names") ? "channel_names" : "modality";
  UMAMBA_CHECK(dataset.contains(key) && dataset[key].is_object() && !dataset[key].empty(),
               "{}: dataset.json has no 'channel_names'", where);
  return static_cast<int>(dataset[key].size());
}

Architecture architecture_from_trainer(const std::string& trainer) {
  if (trainer.find("UMambaBot") != std::string::npos) return Architecture::UMambaBot;
  if (trainer.find("UMambaEnc") != std::string::npos) return Architecture::UMambaEnc;
  return Architecture::PlainConvUNet;
}

std::string str_or(const PyValuePtr& v, const std::string& fallback) {
  return v && v->kind == PyValue::Kind::Str ? v->s : fallback;
}

int remove_entry(const char* path, const struct stat*, int, struct FTW*) {
  return ::remove(path);
}

}  // namespace

void remove_tree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return;
    fail_file(path, "cannot be inspected for removal: {}", std::strerror(errno));
  }
  if (::nftw(path.c_str(), remove_entry, 32, FTW_DEPTH | FTW_PHYS) != 0) {
    fail_file(path, "cannot be removed: {}", std::strerror(errno));
  }
}

std::string ModelFolder::weights_path(const std::string& fold) const {
  return (fs::path(path) / ("fold_" + fold) / "weights.pt").string();
}

ModelFolder read_model_folder(const std::string& dir) {
  ModelFolder m;
  m.path = dir;
  const fs::path root(dir);
  UMAMBA_CHECK(fs::is_directory(root), "{}: not a model folder (no such folder)", dir);
  m.metadata = read_json(root / "metadata.json");
  const std::string meta_path = (root / "metadata.json").string();
  if (m.metadata.value("format", "") != "umamba-model") {
    fail_file(meta_path, "is not umamba model metadata (format '{}')",
              m.metadata.value("format", std::string("?")));
  }
  if (m.metadata.value("format_version", 0) > kFormatVersion) {
    fail_file(meta_path, "format version {} is newer than this umamba reads ({})",
              m.metadata.value("format_version", 0), kFormatVersion);
  }
  try {
    m.network = NetworkConfig::from_json(read_json(root / "network.json"));
  } catch (const FileError&) {
    throw;
  } catch (const Error& e) {
    fail_file((root / "network.json").string(), "{}", e.what());
  }
  if (fs::exists(root / "plans.json")) m.plans = read_json(root / "plans.json");
  if (fs::exists(root / "dataset.json")) m.dataset = read_json(root / "dataset.json");
  if (!m.metadata.contains("folds") || !m.metadata["folds"].is_object() ||
      m.metadata["folds"].empty()) {
    fail_file(meta_path, "lists no folds");
  }
  for (const auto& [fold, info] : m.metadata["folds"].items()) m.folds.push_back(fold);
  return m;
}

void save_weights(const torch::nn::Module& net, const std::string& path) {
  write_tensor_dict(path, official_state_dict(net));
}

std::map<std::string, torch::Tensor> read_weights(const std::string& path) {
  TorchFileOptions options;
  options.strict = true;
  TorchFile file = read_torch_file(path, options);
  return tensor_dict(file.root, path);
}

nlohmann::json write_model_folder(const std::string& dir, const NetworkConfig& config,
                                  const std::map<std::string, const SegmentationNetwork*>& folds,
                                  const nlohmann::json& plans, const nlohmann::json& dataset,
                                  const nlohmann::json& extra) {
  UMAMBA_CHECK(!folds.empty(), "write_model_folder: no folds to write");
  const fs::path root(dir);
  require_empty_dir(root);
  const ResolvedNetwork layout = resolve(config);
  nlohmann::json meta;
  meta["format"] = "umamba-model";
  meta["format_version"] = kFormatVersion;
  meta["created"] = utc_now();
  meta["created_by"] = {{"umamba", build_info::kVersion},
                        {"git_revision", build_info::kGitRevision},
                        {"libtorch", TORCH_VERSION}};
  meta["architecture"] = to_string(config.architecture);
  meta["hyperparams"] = layout.hyperparams();
  nlohmann::json folds_json = nlohmann::json::object();
  for (const auto& [fold, net] : folds) {
    UMAMBA_CHECK(net != nullptr, "write_model_folder: fold {} has no network", fold);
    const fs::path fold_dir = root / ("fold_" + fold);
    fs::create_directories(fold_dir);
    const fs::path weights = fold_dir / "weights.pt";
    save_weights(*net, weights.string());
    folds_json[fold] = {{"weights", ("fold_" + fold + "/weights.pt")},
                        {"sha256", sha256_file(weights.string())},
                        {"parameters", net->parameter_count()},
                        {"tensors", canonical_state_dict(*net).size()}};
  }
  meta["folds"] = folds_json;
  for (const auto& [k, v] : extra.items()) meta[k] = v;
  write_json(root / "network.json", config.to_json());
  if (!plans.is_null()) write_json(root / "plans.json", plans);
  if (!dataset.is_null()) write_json(root / "dataset.json", dataset);
  write_json(root / "metadata.json", meta);  // last: a folder without it is incomplete
  return meta;
}

std::shared_ptr<SegmentationNetwork> load_network(const ModelFolder& folder,
                                                  const std::string& fold_in,
                                                  torch::Device device) {
  const std::string fold = fold_in.empty() ? folder.folds.front() : fold_in;
  UMAMBA_CHECK(folder.metadata["folds"].contains(fold), "{}: no fold '{}' (folds: {})", folder.path,
               fold, fmt::join(folder.folds, ", "));
  const std::string path = folder.weights_path(fold);
  const std::string expected = folder.metadata["folds"][fold].value("sha256", "");
  if (!expected.empty()) {
    const std::string actual = sha256_file(path);
    if (actual != expected) {
      fail_file(path, "SHA-256 {} differs from metadata.json ({}); the weights were changed",
                actual, expected);
    }
  }
  auto net = make_network(folder.network);
  load_state_dict(*net, read_weights(path), path, /*strict=*/true);
  net->to(device);
  return net;
}

nlohmann::json import_nnunet_results(const std::string& results_dir, const std::string& out_dir,
                                     const ImportOptions& options) {
  const fs::path root(results_dir);
  UMAMBA_CHECK(fs::is_directory(root), "{}: no such results folder", results_dir);
  const nlohmann::json plans = read_json(root / "plans.json");
  const nlohmann::json dataset = read_json(root / "dataset.json");

  // Folds: fold_<f>/<checkpoint>.
  std::vector<std::string> folds;
  for (const auto& entry : fs::directory_iterator(root)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_directory() && name.rfind("fold_", 0) == 0 &&
        fs::exists(entry.path() / options.checkpoint)) {
      folds.push_back(name.substr(5));
    }
  }
  std::sort(folds.begin(), folds.end());
  if (!options.folds.empty()) {
    for (const auto& f : options.folds) {
      UMAMBA_CHECK(std::find(folds.begin(), folds.end(), f) != folds.end(),
                   "{}: fold_{}/{} not found", results_dir, f, options.checkpoint);
    }
    folds = options.folds;
  }
  UMAMBA_CHECK(!folds.empty(), "{}: no fold_*/{} found", results_dir, options.checkpoint);

  // `<Trainer>__<Plans>__<configuration>` when the folder is named as nnU-Net names it.
  std::string dir_trainer, dir_plans, dir_configuration;
  {
    const std::string name = fs::weakly_canonical(root).filename().string();
    const size_t a = name.find("__"), b = name.rfind("__");
    if (a != std::string::npos && b != a) {
      dir_trainer = name.substr(0, a);
      dir_plans = name.substr(a + 2, b - a - 2);
      dir_configuration = name.substr(b + 2);
    }
  }

  const int in_channels = channels_from_dataset(dataset, results_dir);
  const int heads = heads_from_dataset(dataset, results_dir);
  std::map<std::string, std::shared_ptr<SegmentationNetwork>> nets;
  nlohmann::json sources = nlohmann::json::object();
  std::optional<NetworkConfig> config;
  std::string trainer, configuration;
  for (const std::string& fold : folds) {
    const fs::path ckpt = root / ("fold_" + fold) / options.checkpoint;
    // Lenient: the strict allow-list plus numpy arrays and sets (torch_file.h); any other global
    // is refused.
    TorchFile file = read_torch_file(ckpt.string());
    UMAMBA_CHECK(file.root && file.root->kind == PyValue::Kind::Dict,
                 "{}: not an nnU-Net checkpoint (not a dict)", ckpt.string());
    const PyValuePtr weights_value = file.root->get("network_weights");
    if (!weights_value) fail_file(ckpt.string(), "has no 'network_weights'");
    const auto weights = tensor_dict(weights_value, ckpt.string() + " 'network_weights'");
    const std::string fold_trainer = str_or(file.root->get("trainer_name"), dir_trainer);
    const PyValuePtr init_args = file.root->get("init_args");
    const std::string fold_configuration =
        str_or(init_args ? init_args->get("configuration") : nullptr, dir_configuration);
    if (!config) {
      trainer = fold_trainer;
      configuration = options.configuration.empty() ? fold_configuration : options.configuration;
      if (configuration.empty() && plans.contains("configurations") &&
          plans["configurations"].size() == 1) {
        configuration = plans["configurations"].begin().key();
      }
      UMAMBA_CHECK(!configuration.empty(),
                   "{}: cannot tell the configuration (not in the checkpoint nor the folder name); "
                   "pass it explicitly",
                   results_dir);
      const Architecture arch = options.architecture.empty()
                                    ? architecture_from_trainer(trainer)
                                    : architecture_from_string(options.architecture);
      config = NetworkConfig::from_nnunet_plans(plans, configuration, arch, in_channels, heads);
    } else if (fold_trainer != trainer) {
      fail_file(ckpt.string(), "was trained by {}, fold {} by {}; import them separately",
                fold_trainer, folds.front(), trainer);
    }
    auto net = make_network(*config);
    const LoadReport report = load_state_dict(*net, weights, ckpt.string(), /*strict=*/true);
    nlohmann::json src = {{"checkpoint", fs::absolute(ckpt).string()},
                          {"sha256", sha256_file(ckpt.string())},
                          {"trainer_name", fold_trainer},
                          {"tensors_loaded", report.loaded},
                          {"alias_keys_checked", report.aliases}};
    if (auto epoch = file.root->get("current_epoch"); epoch && epoch->kind == PyValue::Kind::Int) {
      src["current_epoch"] = epoch->i;
    }
    if (!file.opaque_globals.empty()) src["unresolved_python_globals"] = file.opaque_globals;
    sources[fold] = src;
    nets[fold] = net;
  }
  std::map<std::string, const SegmentationNetwork*> fold_nets;
  for (const auto& [f, n] : nets) fold_nets[f] = n.get();
  nlohmann::json extra = {
      {"configuration", configuration},
      {"trainer", trainer},
      {"plans_name", plans.value("plans_name", dir_plans)},
      {"source",
       {{"kind", "nnunet_results"}, {"path", fs::absolute(root).string()}, {"folds", sources}}}};
  return write_model_folder(out_dir, *config, fold_nets, plans, dataset, extra);
}

}  // namespace umamba::model
