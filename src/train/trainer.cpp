// The training run: setup, epochs, validation, checkpoints, logs and the model folder (see
// trainer.h for the recipe and the files).
#include "train/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <sstream>

#include "core/error.h"
#include "core/log.h"
#include "engine/normalization.h"
#include "engine/predictor.h"
#include "engine/tile_model.h"
#include "io/image_io.h"
#include "io/json_file.h"
#include "metrics/instance_f1.h"
#include "metrics/label_scores.h"
#include "model/model_folder.h"
#include "model/model_io.h"
#include "model/networks.h"
#include "model/plans_configuration.h"
#include "postprocess/targets.h"
#include "train/augment.h"
#include "train/data_parallel.h"
#include "train/dataset.h"
#include "train/device.h"
#include "train/distributed.h"
#include "train/loss.h"
#include "train/plot.h"
#include "train/sampler.h"
#include "train/step.h"

namespace umamba::train {
namespace fs = std::filesystem;

namespace {

constexpr int kCheckpointVersion = 1;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void write_text(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.parent_path() / ("." + path.filename().string() + ".tmp");
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail_file(tmp.string(), "cannot be created");
    out << text;
    out.close();
    if (!out) fail_file(tmp.string(), "write failed (disk full?)");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) fail_file(path.string(), "cannot be renamed into place: {}", ec.message());
}

torch::Device resolve_device(const std::string& spec) {
  const bool gpu = torch::cuda::is_available();
  if (spec == "auto") return gpu ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  if (spec == "cpu") return torch::kCPU;
  if (spec == "cuda" || spec.rfind("cuda:", 0) == 0) {
    UMAMBA_CHECK(gpu, "--device {}: LibTorch sees no CUDA device", spec);
    torch::Device d(spec == "cuda" ? "cuda:0" : spec);
    UMAMBA_CHECK(d.index() < static_cast<int>(torch::cuda::device_count()),
                 "--device {}: only {} GPU(s) visible", spec, torch::cuda::device_count());
    return d;
  }
  fail("--device '{}': expected auto, cpu, cuda or cuda:N", spec);
}

// Several processes: each takes GPU LOCAL_RANK ("auto" and "cuda"; the only GPU when a process
// sees one), or the CPU.
torch::Device resolve_device_for_rank(const std::string& spec, const Rendezvous& r) {
  if (!r.distributed()) return resolve_device(spec);
  const bool gpu = torch::cuda::is_available();
  if (spec == "auto" && !gpu) return torch::kCPU;
  if (spec == "auto" || spec == "cuda") {
    UMAMBA_CHECK(gpu, "--device {}: LibTorch sees no CUDA device", spec);
    const auto n = static_cast<int>(torch::cuda::device_count());
    // One visible GPU per process (srun --gpus-per-task=1, CUDA_VISIBLE_DEVICES set per rank).
    if (n == 1) return torch::Device(torch::kCUDA, 0);
    UMAMBA_CHECK(r.local_rank < n,
                 "rank {} has local rank {} but this node shows {} GPU(s); start at most one "
                 "process per GPU (or pass --device cuda:N)",
                 r.rank, r.local_rank, n);
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(r.local_rank));
  }
  return resolve_device(spec);
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_file(path.string(), "cannot be opened");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (!in && !in.eof()) fail_file(path.string(), "read failed");
  return ss.str();
}

nlohmann::json record_json(const EpochRecord& r) {
  return {{"epoch", r.epoch},
          {"train_loss", r.train_loss},
          {"train_ce", r.train_ce},
          {"train_dice", r.train_dice},
          {"val_metric", r.val_metric},
          {"val_metric_ema", r.val_metric_ema},
          {"lr", r.lr},
          {"seconds", r.seconds},
          {"val_seconds", r.val_seconds},
          {"data_wait_seconds", r.data_wait_seconds},
          {"steps", r.steps},
          {"skipped_steps", r.skipped_steps},
          {"loss_scale", r.loss_scale},
          {"peak_gpu_memory_gb", r.peak_gpu_memory_gb}};
}

EpochRecord record_from_json(const nlohmann::json& j) {
  EpochRecord r;
  r.epoch = j.at("epoch").get<int64_t>();
  r.train_loss = j.at("train_loss").get<double>();
  r.train_ce = j.at("train_ce").get<double>();
  r.train_dice = j.at("train_dice").get<double>();
  r.val_metric = j.at("val_metric").get<double>();
  r.val_metric_ema = j.at("val_metric_ema").get<double>();
  r.lr = j.at("lr").get<double>();
  r.seconds = j.at("seconds").get<double>();
  r.val_seconds = j.value("val_seconds", 0.0);
  r.data_wait_seconds = j.value("data_wait_seconds", 0.0);
  r.steps = j.at("steps").get<int64_t>();
  r.skipped_steps = j.at("skipped_steps").get<int64_t>();
  r.loss_scale = j.value("loss_scale", 1.0);
  r.peak_gpu_memory_gb = j.value("peak_gpu_memory_gb", 0.0);
  return r;
}

// Running sums of the epoch in progress (part of the checkpoint, for exact resume).
struct EpochSums {
  double loss = 0, ce = 0, dice = 0, seconds = 0, data_wait = 0;
  int64_t steps = 0, skipped = 0;
  nlohmann::json to_json() const {
    return {{"loss", loss},           {"ce", ce},       {"dice", dice},      {"seconds", seconds},
            {"data_wait", data_wait}, {"steps", steps}, {"skipped", skipped}};
  }
  static EpochSums from_json(const nlohmann::json& j) {
    EpochSums s;
    s.loss = j.at("loss").get<double>();
    s.ce = j.at("ce").get<double>();
    s.dice = j.at("dice").get<double>();
    s.seconds = j.at("seconds").get<double>();
    s.data_wait = j.at("data_wait").get<double>();
    s.steps = j.at("steps").get<int64_t>();
    s.skipped = j.at("skipped").get<int64_t>();
    return s;
  }
};

struct RunState {
  int64_t epoch = 0, iteration = 0;
  EpochSums sums;
  std::vector<EpochRecord> history;
  double metric_ema = -1, best_metric_ema = -1;
  int consecutive_nonfinite = 0;
};

void save_checkpoint(const fs::path& path, Optimization& opt, const RunState& state,
                     const nlohmann::json& fixed, int64_t epochs, torch::Device device,
                     int world_size) {
  torch::serialize::OutputArchive ar;
  opt.save(ar);
  ar.write("rng_cpu", at::detail::getDefaultCPUGenerator().get_state());
  if (device.is_cuda()) {
    ar.write("rng_device", at::globalContext().defaultGenerator(device).get_state());
  }
  nlohmann::json j;
  j["format"] = "umamba-train-checkpoint";
  j["version"] = kCheckpointVersion;
  j["epoch"] = state.epoch;
  j["iteration"] = state.iteration;
  j["epochs"] = epochs;
  j["epoch_sums"] = state.sums.to_json();
  nlohmann::json h = nlohmann::json::array();
  for (const auto& r : state.history) h.push_back(record_json(r));
  j["history"] = h;
  j["metric_ema"] = state.metric_ema;
  j["best_metric_ema"] = state.best_metric_ema;
  j["consecutive_nonfinite"] = state.consecutive_nonfinite;
  j["fixed"] = fixed;
  j["world_size"] = world_size;
  ar.write("state_json", c10::IValue(j.dump()));
  const fs::path tmp = path.parent_path() / ("." + path.filename().string() + ".tmp");
  ar.save_to(tmp.string());
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) fail_file(path.string(), "cannot be renamed into place: {}", ec.message());
}

// `bytes`: the file's content (rank 0 reads it and broadcasts it in data-parallel runs); `path`
// names it in messages.
RunState load_checkpoint(const fs::path& path, const std::string& bytes, Optimization& opt,
                         const nlohmann::json& fixed, torch::Device device) {
  torch::serialize::InputArchive ar;
  try {
    ar.load_from(bytes.data(), bytes.size(), device);
  } catch (const c10::Error& e) {
    fail_file(path.string(), "is not a readable checkpoint: {}",
              std::string(e.what_without_backtrace()));
  }
  c10::IValue text;
  ar.read("state_json", text);
  const nlohmann::json j = nlohmann::json::parse(text.toStringRef());
  if (j.value("format", "") != "umamba-train-checkpoint" ||
      j.value("version", 0) > kCheckpointVersion) {
    fail_file(path.string(), "is not a umamba training checkpoint of a version this build reads");
  }
  const nlohmann::json& was = j.at("fixed");
  for (const auto& [k, v] : fixed.items()) {
    if (!was.contains(k) || was[k] != v) {
      fail_file(path.string(),
                "was made with {} = {}, this run asks for {}; resume with the same settings or "
                "train into a new folder",
                k, was.contains(k) ? was[k].dump() : std::string("(absent)"), v.dump());
    }
  }
  opt.load(ar);
  torch::Tensor rng;
  ar.read("rng_cpu", rng);
  {
    at::Generator g = at::detail::getDefaultCPUGenerator();  // a handle on the global generator
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_state(rng.cpu());
  }
  if (device.is_cuda()) {
    torch::Tensor drng;
    ar.read("rng_device", drng);
    at::Generator g = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_state(drng.cpu());
  }
  RunState s;
  s.epoch = j.at("epoch").get<int64_t>();
  s.iteration = j.at("iteration").get<int64_t>();
  s.sums = EpochSums::from_json(j.at("epoch_sums"));
  for (const auto& r : j.at("history")) s.history.push_back(record_from_json(r));
  s.metric_ema = j.at("metric_ema").get<double>();
  s.best_metric_ema = j.at("best_metric_ema").get<double>();
  s.consecutive_nonfinite = j.at("consecutive_nonfinite").get<int>();
  return s;
}

// Whole-image validation through the engine (see trainer.h).
struct Validation {
  double mean = -1;
  std::vector<double> per_case;
  double seconds = 0;
};

Validation validate(model::SegmentationNetwork& net, const std::vector<const TrainCase*>& cases,
                    bool instances, int64_t num_classes, const std::vector<int64_t>& patch,
                    torch::Device device, Precision precision, int64_t batch_size) {
  const auto t0 = Clock::now();
  Validation v;
  if (cases.empty()) return v;
  const bool ds = net.deep_supervision();
  net.set_deep_supervision(false);
  net.eval();
  engine::TileModelSpec spec;
  spec.in_channels = cases.front()->data.channels();
  spec.num_classes = num_classes;
  spec.patch_size = patch;
  engine::FunctionTileModel tile_model(
      [&](const torch::Tensor& batch) {
        torch::NoGradGuard no_grad;
        return net.forward(batch).front();
      },
      spec, device);
  engine::Normalization none;
  none.channels = {engine::ChannelNormalization{engine::NormScheme::NoNorm, false, {}}};
  engine::EngineOptions eo;
  eo.tile_step = 0.5;
  eo.batch_size = batch_size;
  eo.precision = precision == Precision::F32    ? engine::Precision::F32
                 : precision == Precision::BF16 ? engine::Precision::BF16
                                                : engine::Precision::F16;
  eo.outputs = engine::kClasses;
  double sum = 0;
  try {
    for (const TrainCase* c : cases) {
      const engine::Prediction p = engine::predict_image(c->data, tile_model, none, eo);
      double score = 0;
      if (instances) {
        const Image pred =
            postprocess::classes_to_instances(p.classes, postprocess::InstanceOptions{});
        score = metrics::instance_f1(c->instances, pred).f1;
      } else {
        metrics::LabelScoreOptions lo;
        for (int64_t k = 1; k < num_classes; ++k) lo.labels.push_back(k);
        const auto scores = metrics::dice_per_label(c->labels, p.classes, lo);
        double s = 0;
        for (const auto& sc : scores) s += sc.dsc;
        score = scores.empty() ? 0 : s / static_cast<double>(scores.size());
      }
      v.per_case.push_back(score);
      sum += score;
    }
  } catch (...) {
    net.set_deep_supervision(ds);
    net.train();
    throw;
  }
  net.set_deep_supervision(ds);
  net.train();
  v.mean = sum / static_cast<double>(cases.size());
  v.seconds = seconds_since(t0);
  return v;
}

void write_logs(const fs::path& dir, const std::vector<EpochRecord>& history,
                const std::string& metric, bool* plot_warned) {
  std::string csv =
      "epoch,train_loss,train_ce,train_dice,val_metric,val_metric_ema,lr,seconds,val_seconds,"
      "data_wait_seconds,steps,skipped_steps,loss_scale,peak_gpu_memory_gb\n";
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& r : history) {
    csv += fmt::format(
        "{},{:.6g},{:.6g},{:.6g},{:.6g},{:.6g},{:.6g},{:.3f},{:.3f},{:.3f},{},{},{:.6g},{:.4f}\n",
        r.epoch, r.train_loss, r.train_ce, r.train_dice, r.val_metric, r.val_metric_ema, r.lr,
        r.seconds, r.val_seconds, r.data_wait_seconds, r.steps, r.skipped_steps, r.loss_scale,
        r.peak_gpu_memory_gb);
    arr.push_back(record_json(r));
  }
  write_text(dir / "training_log.csv", csv);
  write_text(dir / "training_log.json",
             nlohmann::json({{"metric", metric}, {"history", arr}}).dump(1) + "\n");
  const fs::path png = dir / "progress.png";
  if (!io::is_supported_image(png)) {
    if (plot_warned && !*plot_warned) {
      log::warn(
          "this build has no PNG writer (UMAMBA_OPENCV=OFF): progress.png is not drawn; "
          "the curves are in training_log.csv");
      *plot_warned = true;
    }
    return;
  }
  PlotPanel loss{"LOSS", {}, false}, val{metric, {}, false}, lr{"LR", {}, true};
  PlotSeries tl{"TRAIN", {31, 119, 180}, {}}, ce{"CE", {255, 127, 14}, {}},
      dc{"-DICE", {44, 160, 44}, {}};
  PlotSeries vm{"VAL", {214, 39, 40}, {}}, ve{"EMA", {148, 103, 189}, {}};
  PlotSeries lrs{"LR", {0, 0, 0}, {}};
  for (const auto& r : history) {
    const auto x = static_cast<double>(r.epoch);
    if (r.epoch >= 0) {
      tl.points.emplace_back(x, r.train_loss);
      ce.points.emplace_back(x, r.train_ce);
      dc.points.emplace_back(x, r.train_dice);
      lrs.points.emplace_back(x, r.lr);
    }
    if (r.val_metric >= 0) vm.points.emplace_back(x, r.val_metric);
    if (r.val_metric_ema >= 0) ve.points.emplace_back(x, r.val_metric_ema);
  }
  loss.series = {tl, ce, dc};
  val.series = {vm, ve};
  lr.series = {lrs};
  io::write_image(png, render_plot({loss, val, lr}));
}

nlohmann::json model_dataset_json(const plan::DatasetDescription& d, const PreprocessSettings& s) {
  nlohmann::json j =
      d.dataset_json.is_object() ? nlohmann::json(d.dataset_json) : nlohmann::json::object();
  j["name"] = d.name;
  nlohmann::json ch = nlohmann::json::object();
  if (d.channel_names.empty()) {
    // NeurIPS layout before channel resolution: from the settings.
    for (int64_t i = 0; i < s.channels; ++i)
      ch[std::to_string(i)] = s.channels == 3 ? std::string(1, "RGB"[i]) : std::string("grey");
  } else {
    for (size_t i = 0; i < d.channel_names.size(); ++i) ch[std::to_string(i)] = d.channel_names[i];
  }
  if (static_cast<int64_t>(ch.size()) != s.channels) {
    ch = nlohmann::json::object();
    for (int64_t i = 0; i < s.channels; ++i)
      ch[std::to_string(i)] = s.channels == 3 ? std::string(1, "RGB"[i]) : std::string("grey");
  }
  j["channel_names"] = ch;
  if (s.instance_labels) {
    j["labels"] = {{"background", 0}, {"interior", 1}, {"boundary", 2}};
    j["label_kind"] = "three-class (from instances)";
  } else if (!j.contains("labels")) {
    nlohmann::json l = nlohmann::json::object();
    for (const auto& [name, value] : d.labels) l[name] = value;
    j["labels"] = l;
  }
  j["numTraining"] = static_cast<int64_t>(d.cases.size());
  if (!j.contains("file_ending")) j["file_ending"] = d.file_ending;
  return j;
}

// Writes the model folder files for `fold` into `output`, keeping other folds that belong to the
// same network (see trainer.h).
nlohmann::json export_model(const fs::path& output, const std::string& fold,
                            const model::NetworkConfig& config,
                            const model::SegmentationNetwork& net, const nlohmann::json& plans,
                            const nlohmann::json& dataset_json, const nlohmann::json& extra) {
  const fs::path staging = output / (".export_fold_" + fold + ".tmp");
  model::remove_tree(staging.string());
  nlohmann::json meta = model::write_model_folder(staging.string(), config, {{fold, &net}}, plans,
                                                  dataset_json, extra);
  // Folds trained before into this folder stay listed when their network is the same.
  const fs::path old_meta = output / "metadata.json", old_net = output / "network.json";
  if (fs::exists(old_meta) && fs::exists(old_net)) {
    try {
      const nlohmann::json prev = io::read_json_file(old_meta);
      const bool same = io::read_json_file(old_net) == io::read_json_file(staging / "network.json");
      if (same && prev.contains("folds")) {
        for (const auto& [f, info] : prev["folds"].items()) {
          if (f != fold && fs::exists(output / ("fold_" + f) / "weights.pt"))
            meta["folds"][f] = info;
        }
      } else if (!same) {
        log::warn(
            "{}: the folder held folds of another network; metadata.json now lists fold {} "
            "only",
            output.string(), fold);
      }
    } catch (const std::exception& e) {
      log::warn("{}: previous metadata.json unreadable ({}); it is replaced", output.string(),
                e.what());
    }
  }
  std::error_code ec;
  fs::create_directories(output / ("fold_" + fold), ec);
  for (const char* name : {"network.json", "plans.json", "dataset.json"}) {
    if (fs::exists(staging / name)) {
      fs::rename(staging / name, output / name, ec);
      if (ec) fail_file((output / name).string(), "cannot be renamed into place: {}", ec.message());
    }
  }
  fs::rename(staging / ("fold_" + fold) / "weights.pt", output / ("fold_" + fold) / "weights.pt",
             ec);
  if (ec)
    fail_file((output / ("fold_" + fold) / "weights.pt").string(), "cannot be renamed: {}",
              ec.message());
  write_text(output / "metadata.json", meta.dump(2) + "\n");
  model::remove_tree(staging.string());
  return meta;
}

// Peak device memory of tensors since the last reset. With a captured step the activations live
// in the graph's pool, whose blocks count as free between replays, so the memory the caching
// allocator holds (reserved) is reported when it is larger.
double peak_gpu_gb(const torch::Device& device, bool graph_captured) {
  const DeviceMemory m = device_memory(device);
  return graph_captured ? std::max(m.peak_gb, m.reserved_gb) : m.peak_gb;
}

// --stages, --base-features, --max-features on the configuration built from the plans.
void apply_network_overrides(model::NetworkConfig& c, const TrainOptions& o) {
  const int n = c.n_stages();
  if (o.stages > 0) {
    UMAMBA_CHECK(o.stages >= 2 && o.stages <= n,
                 "--stages {}: expected 2..{} (the plans' configuration has {} stages)", o.stages,
                 n, n);
    // The first stages stay; decoder lists run from the deepest stage (index 0), so the deepest
    // decoder stages go with the deepest encoder stages.
    const auto drop = static_cast<std::ptrdiff_t>(n - o.stages);
    c.kernel_sizes.resize(static_cast<size_t>(o.stages));
    c.strides.resize(static_cast<size_t>(o.stages));
    c.features_per_stage.resize(static_cast<size_t>(o.stages));
    c.n_conv_per_stage_encoder.resize(static_cast<size_t>(o.stages));
    c.n_conv_per_stage_decoder.erase(c.n_conv_per_stage_decoder.begin(),
                                     c.n_conv_per_stage_decoder.begin() + drop);
  }
  UMAMBA_CHECK(o.base_features >= 0, "--base-features {}: expected 0 (plans) or more",
               o.base_features);
  UMAMBA_CHECK(o.max_features >= 0, "--max-features {}: expected 0 (plans) or more",
               o.max_features);
  if (o.base_features > 0 || o.max_features > 0) {
    const int base = o.base_features > 0 ? o.base_features : c.features_per_stage.front();
    const int cap = o.max_features > 0 ? o.max_features
                                       : *std::max_element(c.features_per_stage.begin(),
                                                           c.features_per_stage.end());
    UMAMBA_CHECK(cap >= base, "--max-features {} is below the first stage's {} features", cap,
                 base);
    for (int i = 0; i < c.n_stages(); ++i) {
      const int64_t f = static_cast<int64_t>(base) << std::min(i, 30);
      c.features_per_stage[static_cast<size_t>(i)] = static_cast<int>(std::min<int64_t>(f, cap));
    }
  }
}

}  // namespace

std::string default_configuration(const nlohmann::json& plans) {
  UMAMBA_CHECK(plans.contains("configurations"), "plans.json has no 'configurations'");
  const auto& c = plans["configurations"];
  if (c.contains("3d_fullres")) return "3d_fullres";
  UMAMBA_CHECK(c.contains("2d"), "plans.json has neither a '2d' nor a '3d_fullres' configuration");
  return "2d";
}

TrainResult train(const plan::DatasetDescription& dataset, const nlohmann::json& plans,
                  const TrainOptions& options, const TrainCallbacks& cb) {
  const Rendezvous rdv = resolve_rendezvous(options.distributed);
  const int world = rdv.world_size;
  const bool is0 = rdv.rank == 0;
  auto message = [&](const std::string& m) {
    if (!is0) return;  // rank 0 reports for everyone
    if (cb.on_message) {
      cb.on_message(m);
    } else {
      log::info("{}", m);
    }
  };
  TrainResult result;
  UMAMBA_CHECK(!options.output.empty(), "train: no output folder (-o)");
  UMAMBA_CHECK(options.epochs >= 1, "--epochs {}: at least 1", options.epochs);
  UMAMBA_CHECK(options.iterations >= 1, "--iterations {}: at least 1", options.iterations);
  UMAMBA_CHECK(options.save_every >= 1, "--save-every {}: at least 1", options.save_every);
  UMAMBA_CHECK(options.val_every >= 0, "--val-every {}: 0 (never) or more", options.val_every);
  UMAMBA_CHECK(options.export_weights == "final" || options.export_weights == "best",
               "--export '{}': expected final or best", options.export_weights);
  UMAMBA_CHECK(options.oversample_foreground >= 0 && options.oversample_foreground <= 1,
               "--oversample {}: expected a fraction in [0, 1]", options.oversample_foreground);

  const std::string configuration =
      options.configuration.empty() ? default_configuration(plans) : options.configuration;
  const nlohmann::json cfg = model::resolve_plans_configuration(plans, configuration);
  const model::Architecture arch = model::architecture_from_string(options.architecture);
  UMAMBA_CHECK(options.dist_sampling == "per-rank" || options.dist_sampling == "global-slice",
               "--dist-sampling '{}': expected per-rank or global-slice", options.dist_sampling);
  (void)parse_bucket_order(options.dist_bucket_order);  // a bad value fails before any work
  UMAMBA_CHECK(
      options.cuda_graph == "auto" || options.cuda_graph == "on" || options.cuda_graph == "off",
      "--cuda-graph '{}': expected auto, on or off", options.cuda_graph);
  const torch::Device device = resolve_device_for_rank(options.device, rdv);
  result.rank = rdv.rank;
  result.world_size = world;
  const std::string precision_text =
      options.precision == "auto" ? (device.is_cuda() ? "bf16" : "fp32") : options.precision;
  const Precision precision = precision_from_name(precision_text);
  result.device = device.str();
  result.precision = precision_text;

  // Data settings and the network.
  PreprocessSettings settings = PreprocessSettings::from_plans(plans, configuration, dataset);
  model::NetworkConfig net_config = model::NetworkConfig::from_nnunet_plans(
      plans, configuration, arch, static_cast<int>(settings.channels),
      static_cast<int>(settings.num_classes));
  if (!options.patch_size.empty()) {
    UMAMBA_CHECK(options.patch_size.size() == net_config.patch_size.size(),
                 "--patch-size has {} axes, configuration '{}' is {}D", options.patch_size.size(),
                 configuration, net_config.patch_size.size());
    net_config.patch_size.assign(options.patch_size.begin(), options.patch_size.end());
  }
  apply_network_overrides(net_config, options);
  net_config.deep_supervision = options.deep_supervision;
  std::vector<int64_t> patch(net_config.patch_size.begin(), net_config.patch_size.end());
  for (size_t a = 0; a < patch.size(); ++a) {
    int64_t div = 1;
    for (const auto& s : net_config.strides) div *= s[a];
    UMAMBA_CHECK(patch[a] % div == 0,
                 "patch edge {} (axis {}) is not divisible by {}, the network's total pooling on "
                 "that axis; choose a multiple of {}",
                 patch[a], a, div, div);
  }
  net_config.validate();
  const int64_t batch_size =
      options.batch_size > 0 ? options.batch_size : cfg.value("batch_size", int64_t{2});
  UMAMBA_CHECK(batch_size >= 1, "batch size {}: at least 1", batch_size);
  UMAMBA_CHECK(batch_size % world == 0,
               "batch size {} (the global batch) does not split evenly over {} processes; choose "
               "a multiple of {}",
               batch_size, world, world);
  const int64_t local_batch = batch_size / world;

  // The process group (a world of 1 has none: the plain path).
  std::unique_ptr<ProcessGroup> group;
  if (rdv.distributed()) {
    const std::string backend = options.distributed.backend == "auto"
                                    ? (device.is_cuda() ? "nccl" : "gloo")
                                    : options.distributed.backend;
    group = std::make_unique<ProcessGroup>(
        rdv, backend, device,
        std::chrono::minutes(std::max(1, options.distributed.timeout_minutes)));
    result.dist_backend = backend;
    message(
        fmt::format("data parallel: {} processes ({}, {} backend, rendezvous {}:{}), {} "
                    "patches per process, {} sampling",
                    world, rdv.source, backend, rdv.master_addr, rdv.master_port, local_batch,
                    options.dist_sampling));
  }
  // Runs fn on rank 0 only; an exception there stops every rank (the others with a pointer to
  // rank 0's message) instead of leaving them waiting at the next collective.
  auto on_rank0 = [&](const std::function<void()>& fn) {
    std::exception_ptr error;
    if (is0) {
      try {
        fn();
      } catch (...) {
        error = std::current_exception();
      }
    }
    if (group) {
      const bool ok = group->all_true(!error);
      if (error) std::rethrow_exception(error);
      if (!ok) fail("rank {}: rank 0 failed (see its message); stopping", rdv.rank);
    } else if (error) {
      std::rethrow_exception(error);
    }
  };
  DiceCEOptions loss_options;
  loss_options.batch_dice = cfg.value("batch_dice", true);
  const int n_outputs = options.deep_supervision ? net_config.n_stages() - 1 : 1;
  const std::vector<double> ds_weights = deep_supervision_weights(std::max(1, n_outputs));
  std::vector<std::vector<int64_t>> ds_scales;
  if (options.deep_supervision) ds_scales = deep_supervision_scales(net_config.strides);

  // Folders.
  const fs::path fold_dir = options.output / ("fold_" + options.fold);
  result.fold_dir = fold_dir;
  const fs::path latest = fold_dir / "checkpoint_latest.pt";
  const fs::path best = fold_dir / "checkpoint_best.pt";
  const fs::path final_ckpt = fold_dir / "checkpoint_final.pt";
  on_rank0([&] {
    std::error_code ec;
    fs::create_directories(fold_dir, ec);
    if (ec) fail_file(fold_dir.string(), "cannot be created: {}", ec.message());
    if (!options.resume && (fs::exists(latest) || fs::exists(final_ckpt))) {
      fail(
          "{} already holds a training run of fold {}; pass --resume to continue it, or train "
          "into another output folder",
          options.output.string(), options.fold);
    }
  });

  // Cases (cache) and split.
  const fs::path cache_dir = options.cache_dir.empty()
                                 ? options.output / "preprocessed" / configuration
                                 : options.cache_dir;
  CacheReport cache;
  message(fmt::format("preprocessing {} cases of {} for configuration '{}' (cache {})",
                      dataset.cases.size(), dataset.name, configuration, cache_dir.string()));
  // Rank 0 fills the cache first; the others then read it.
  std::vector<TrainCase> cases;
  on_rank0([&] { cases = load_cases(dataset, settings, cache_dir, &cache); });
  if (!is0) cases = load_cases(dataset, settings, cache_dir, &cache);
  result.cache_reused = cache.reused;
  result.cache_built = cache.built;
  result.cache_seconds = cache.seconds;
  message(fmt::format("cases ready in {:.1f} s: {} from the cache, {} preprocessed", cache.seconds,
                      cache.reused, cache.built));
  std::vector<std::string> ids;
  for (const auto& c : cases) ids.push_back(c.id);
  Split split = options.val_list.empty()
                    ? make_split(ids, options.fold, options.folds, options.seed)
                    : split_from_list(ids, options.val_list);
  result.split_how = split.how;
  on_rank0([&] {
    write_text(
        fold_dir / "split.json",
        nlohmann::json({{"train", split.train}, {"val", split.val}, {"how", split.how}}).dump(1) +
            "\n");
    if (options.val_list.empty() && options.fold != "all" &&
        static_cast<int>(ids.size()) >= options.folds) {
      write_text(options.output / "splits.json",
                 splits_json(ids, options.folds, options.seed).dump(1) + "\n");
    }
  });
  std::vector<const TrainCase*> train_cases, val_cases;
  {
    std::map<std::string, const TrainCase*> by_id;
    for (const auto& c : cases) by_id[c.id] = &c;
    for (const auto& id : split.train) train_cases.push_back(by_id.at(id));
    for (const auto& id : split.val) val_cases.push_back(by_id.at(id));
    if (options.val_max_cases > 0 && static_cast<int64_t>(val_cases.size()) > options.val_max_cases)
      val_cases.resize(static_cast<size_t>(options.val_max_cases));
  }
  UMAMBA_CHECK(!train_cases.empty(), "no training case left after the split ({})", split.how);
  result.train_cases = static_cast<int64_t>(train_cases.size());
  result.val_cases = static_cast<int64_t>(val_cases.size());
  bool any_instances = settings.instance_labels;
  for (const auto* c : val_cases) any_instances = any_instances && !c->instances.empty();
  const std::string metric_name = settings.instance_labels ? "F1" : "DICE";

  // Network and optimiser.
  torch::manual_seed(options.seed);
  auto net = model::make_network(net_config);
  StepOptions step_options;
  step_options.precision = precision;
  step_options.initial_lr = options.initial_lr;
  step_options.weight_decay = options.weight_decay;
  step_options.momentum = options.momentum;
  step_options.grad_clip = options.grad_clip;
  step_options.loss = loss_options;
  step_options.ds_weights = ds_weights;
  step_options.max_nonfinite = options.max_nonfinite;
  step_options.cuda_graph =
      options.cuda_graph == "on" || (options.cuda_graph == "auto" && device.is_cuda());
  if (group && loss_options.batch_dice) {
    ProcessGroup* g = group.get();
    step_options.loss.reduce_batch_stats = [g](const torch::Tensor& stats) {
      return all_reduce_with_grad(stats, *g);
    };
  }
  Optimization opt(net, step_options, device);

  // What a resume must agree on.
  nlohmann::json fixed = {{"configuration", configuration},
                          {"network", net_config.to_json()},
                          {"fold", options.fold},
                          {"seed", options.seed},
                          {"batch_size", batch_size},
                          {"iterations", options.iterations},
                          {"precision", precision_text},
                          {"learning_rate", options.initial_lr},
                          {"weight_decay", options.weight_decay},
                          {"momentum", options.momentum},
                          {"oversample_foreground", options.oversample_foreground},
                          {"augment", options.augment},
                          {"train_cases", split.train}};
  RunState state;
  // Rank 0 reads the checkpoint; every rank loads the same bytes.
  std::string checkpoint_bytes;
  on_rank0([&] {
    if (options.resume && fs::exists(latest)) checkpoint_bytes = read_bytes(latest);
  });
  if (group) checkpoint_bytes = group->broadcast_bytes(checkpoint_bytes);
  if (options.resume && !checkpoint_bytes.empty()) {
    state = load_checkpoint(latest, checkpoint_bytes, opt, fixed, device);
    checkpoint_bytes.clear();
    opt.set_consecutive_nonfinite(state.consecutive_nonfinite);
    message(fmt::format("resuming fold {} at epoch {}, iteration {} from {}", options.fold,
                        state.epoch, state.iteration, latest.string()));
  } else if (options.resume) {
    message(fmt::format("--resume: {} has no checkpoint_latest.pt; starting fold {} from scratch",
                        fold_dir.string(), options.fold));
  }
  message(fmt::format(
      "training {} ({}) on {} in {}: {} train / {} validation cases ({}), batch {} × patch {}, "
      "{} epochs × {} iterations, {} stages with {} features, {} parameters",
      model::to_string(arch), configuration, device.str(), precision_text, train_cases.size(),
      val_cases.size(), split.how, batch_size, fmt::join(patch, "×"), options.epochs,
      options.iterations, net_config.n_stages(), fmt::join(net_config.features_per_stage, "/"),
      net->parameter_count()));
  if (step_options.cuda_graph)
    message(fmt::format(
        "the training step is captured in a CUDA graph at iteration {} of this run and replayed "
        "from then on (--cuda-graph off launches it op by op)",
        step_options.graph_warmup_steps + 1));

  // Data parallelism: rank 0's weights everywhere, gradients averaged in buckets.
  std::unique_ptr<GradientReducer> reducer;
  if (group) {
    broadcast_module_state(*group, net->parameters(), net->buffers());
    reducer = std::make_unique<GradientReducer>(net->parameters(), *group,
                                                GradientReducer::kDefaultBucketBytes,
                                                parse_bucket_order(options.dist_bucket_order));
    opt.set_data_parallel(group.get(), reducer.get());
    message(fmt::format(
        "gradients all-reduced in {} bucket(s) of about {} MB during backward, {} order",
        reducer->bucket_count(), GradientReducer::kDefaultBucketBytes >> 20,
        options.dist_bucket_order == "observed" ? "the observed (from the second step)"
                                                : "reverse registration"));
  }

  // Loader.
  LoaderOptions lo;
  lo.sampler.dims = static_cast<int>(patch.size());
  lo.sampler.patch = patch;
  const bool global_slice = group && options.dist_sampling == "global-slice";
  lo.sampler.batch_size = global_slice ? batch_size : local_batch;
  if (global_slice) {
    lo.shard_rank = rdv.rank;
    lo.shard_count = world;
  }
  // Per-rank streams: rank r forces the foreground samples of its share of the global batch.
  lo.sampler.oversample_foreground =
      global_slice ? options.oversample_foreground
                   : rank_oversample(batch_size, world, rdv.rank, options.oversample_foreground);
  lo.augment = default_augment_config(patch);
  lo.augment.enabled = options.augment;
  if (!options.augment) lo.augment.initial_patch = patch;
  lo.sampler.initial_patch = lo.augment.initial_patch;
  lo.ds_scales = ds_scales;
  lo.device = device;
  lo.workers = std::max(1, options.workers);
  lo.queue_depth = std::max(1, options.queue_depth);
  lo.num_classes = settings.num_classes;
  lo.seed = global_slice ? options.seed : rank_seed(options.seed, rdv.rank, world);

  bool plot_warned = false;
  auto run_validation = [&]() {
    return validate(opt.network(), val_cases, any_instances, settings.num_classes, patch, device,
                    precision, options.val_batch_size);
  };
  if (options.validate_untrained && state.epoch == 0 && state.iteration == 0 &&
      state.history.empty() && !val_cases.empty() && !is0) {
    group->barrier();  // rank 0 validates
  }
  if (options.validate_untrained && state.epoch == 0 && state.iteration == 0 &&
      state.history.empty() && !val_cases.empty() && is0) {
    const Validation v = run_validation();
    EpochRecord r;
    r.epoch = -1;
    r.val_metric = v.mean;
    r.val_seconds = v.seconds;
    r.seconds = v.seconds;
    r.lr = options.initial_lr;
    state.history.push_back(r);
    if (cb.on_epoch) {
      cb.on_epoch(r);  // the caller reports it with the epochs
    } else {
      message(fmt::format("untrained network: validation {} {:.4f} ({} cases, {:.1f} s)",
                          metric_name, v.mean, val_cases.size(), v.seconds));
    }
    if (group) group->barrier();
  }

  // Testing aid (options.debug_dump): every rank's losses and final parameters.
  std::vector<std::pair<int64_t, double>> dump_losses;
  auto write_dump = [&]() {
    if (options.debug_dump.empty()) return;
    std::error_code dec;
    fs::create_directories(options.debug_dump, dec);
    std::string text;
    for (const auto& [i, l] : dump_losses) text += fmt::format("{} {:.9g}\n", i, l);
    const std::string tag = "rank" + std::to_string(rdv.rank);
    write_text(options.debug_dump / (tag + "_losses.txt"), text);
    std::vector<torch::Tensor> params;
    for (const auto& p : opt.network().parameters()) params.push_back(p.detach().cpu().clone());
    torch::save(params, (options.debug_dump / (tag + "_params.pt")).string());
  };

  auto fill_result = [&]() {
    result.next_epoch = state.epoch;
    result.next_iteration = state.iteration;
    result.history = state.history;
    result.best_metric_ema = state.best_metric_ema;
  };

  int64_t run_iterations = 0;
  {
    BatchLoader loader(train_cases, lo, state.epoch * options.iterations + state.iteration);
    reset_peak_device_memory(device);
    while (state.epoch < options.epochs) {
      const double lr =
          poly_lr(options.initial_lr, state.epoch, options.epochs, options.poly_exponent);
      opt.set_lr(lr);
      auto epoch_t0 = Clock::now();
      const double seconds_before = state.sums.seconds;
      const double wait_before = loader.wait_seconds();
      while (state.iteration < options.iterations) {
        bool stop_now = (options.stop_after_iterations >= 0 &&
                         run_iterations >= options.stop_after_iterations) ||
                        (options.stop_flag && options.stop_flag->load());
        // A signal reaches the ranks at different moments: they stop together when any saw it.
        if (group) stop_now = !group->all_true(!stop_now);
        if (stop_now) {
          state.sums.seconds = seconds_before + seconds_since(epoch_t0);
          state.sums.data_wait += loader.wait_seconds() - wait_before;
          state.consecutive_nonfinite = opt.consecutive_nonfinite();
          on_rank0([&] {
            save_checkpoint(latest, opt, state, fixed, options.epochs, device, world);
            write_logs(fold_dir, state.history, metric_name, &plot_warned);
          });
          write_dump();
          message(
              fmt::format("stopped at epoch {}, iteration {}; {} holds the state (rerun with "
                          "--resume to continue)",
                          state.epoch, state.iteration, latest.string()));
          result.stopped = true;
          fill_result();
          return result;
        }
        Batch batch = loader.next();
        const StepResult s = opt.step(batch.data, batch.targets);
        if (!options.debug_dump.empty())
          dump_losses.emplace_back(state.epoch * options.iterations + state.iteration, s.loss);
        ++state.iteration;
        ++run_iterations;
        ++state.sums.steps;
        if (s.skipped) {
          ++state.sums.skipped;
        } else {
          state.sums.loss += s.loss;
          state.sums.ce += s.ce;
          state.sums.dice += s.dice;
        }
        if (cb.on_iteration && is0)
          cb.on_iteration(state.epoch, state.iteration, options.iterations, s.loss);
      }
      // End of the epoch.
      EpochRecord r;
      r.epoch = state.epoch;
      const int64_t good = state.sums.steps - state.sums.skipped;
      const double nan = std::numeric_limits<double>::quiet_NaN();
      r.train_loss = good > 0 ? state.sums.loss / static_cast<double>(good) : nan;
      r.train_ce = good > 0 ? state.sums.ce / static_cast<double>(good) : nan;
      r.train_dice = good > 0 ? state.sums.dice / static_cast<double>(good) : nan;
      r.lr = lr;
      r.steps = state.sums.steps;
      r.skipped_steps = state.sums.skipped;
      r.loss_scale = opt.loss_scale();
      r.data_wait_seconds = state.sums.data_wait + loader.wait_seconds() - wait_before;
      const bool last = state.epoch + 1 == options.epochs;
      const bool do_val = !val_cases.empty() && options.val_every > 0 &&
                          ((state.epoch + 1) % options.val_every == 0 || last);
      bool improved = false;
      if (do_val && !is0) group->barrier();  // rank 0 validates
      if (do_val && is0) {
        const Validation v = run_validation();
        r.val_metric = v.mean;
        r.val_seconds = v.seconds;
        state.metric_ema = state.metric_ema < 0 ? v.mean : 0.9 * state.metric_ema + 0.1 * v.mean;
        r.val_metric_ema = state.metric_ema;
        if (state.metric_ema > state.best_metric_ema) {
          state.best_metric_ema = state.metric_ema;
          improved = true;
        }
        result.final_metric = v.mean;
        if (group) group->barrier();
      }
      r.peak_gpu_memory_gb = peak_gpu_gb(device, opt.graph_captures() > 0);
      reset_peak_device_memory(device);
      r.seconds = seconds_before + seconds_since(epoch_t0);
      state.history.push_back(r);
      ++state.epoch;
      state.iteration = 0;
      state.sums = EpochSums{};
      state.consecutive_nonfinite = opt.consecutive_nonfinite();
      if (improved && is0) save_checkpoint(best, opt, state, fixed, options.epochs, device, world);
      on_rank0([&] {
        if (state.epoch % options.save_every == 0 || state.epoch == options.epochs) {
          save_checkpoint(latest, opt, state, fixed, options.epochs, device, world);
        }
        write_logs(fold_dir, state.history, metric_name, &plot_warned);
      });
      if (cb.on_epoch && is0) cb.on_epoch(r);
    }
  }
  write_dump();
  if (!is0) {
    // Rank 0 writes the final checkpoint and the model folder.
    group->barrier();
    result.completed = true;
    fill_result();
    return result;
  }
  // (rank 0; the others wait at the barrier at the end)
  struct ReleaseOthers {  // even when the export fails, so that they do not wait for the timeout
    ProcessGroup* group;
    ~ReleaseOthers() {
      if (group) {
        try {
          group->barrier();
        } catch (...) {
        }
      }
    }
  } release_others{group.get()};
  save_checkpoint(final_ckpt, opt, state, fixed, options.epochs, device, world);

  // The model folder.
  std::shared_ptr<model::SegmentationNetwork> export_net = opt.network_ptr();
  std::string exported = "final";
  if (options.export_weights == "best" && fs::exists(best)) {
    torch::manual_seed(options.seed);
    auto best_net = model::make_network(net_config);
    Optimization best_opt(best_net, step_options, device);
    load_checkpoint(best, read_bytes(best), best_opt, fixed, device);
    export_net = best_net;
    exported = "best";
  }
  export_net->to(torch::kCPU);
  nlohmann::json training = {{"configuration", configuration},
                             {"fold", options.fold},
                             {"split", split.how},
                             {"train_cases", split.train.size()},
                             {"val_cases", split.val.size()},
                             {"epochs", options.epochs},
                             {"iterations", options.iterations},
                             {"batch_size", batch_size},
                             {"patch_size", patch},
                             {"features_per_stage", net_config.features_per_stage},
                             {"network_overrides",
                              {{"stages", options.stages},
                               {"base_features", options.base_features},
                               {"max_features", options.max_features}}},
                             {"initial_patch_size", lo.augment.initial_patch},
                             {"precision", precision_text},
                             {"device", device.str()},
                             {"cuda_graph", step_options.cuda_graph},
                             {"learning_rate", options.initial_lr},
                             {"weight_decay", options.weight_decay},
                             {"momentum", options.momentum},
                             {"nesterov", true},
                             {"poly_exponent", options.poly_exponent},
                             {"grad_clip", options.grad_clip},
                             {"batch_dice", loss_options.batch_dice},
                             {"deep_supervision_weights", ds_weights},
                             {"oversample_foreground", options.oversample_foreground},
                             {"augment", options.augment},
                             {"seed", options.seed},
                             {"metric", metric_name},
                             {"final_metric", result.final_metric},
                             {"best_metric_ema", state.best_metric_ema},
                             {"exported_weights", exported},
                             {"preprocessing", settings.to_json()}};
  nlohmann::json extra = {{"configuration", configuration},
                          {"source", {{"kind", "umamba train"}, {"dataset", dataset.name}}},
                          {"training", {{options.fold, training}}}};
  // Keep the training records of other folds.
  if (fs::exists(options.output / "metadata.json")) {
    try {
      const nlohmann::json prev = io::read_json_file(options.output / "metadata.json");
      if (prev.contains("training") && prev["training"].is_object()) {
        for (const auto& [f, t] : prev["training"].items())
          if (f != options.fold) extra["training"][f] = t;
      }
    } catch (const std::exception&) {
    }
  }
  result.metadata = export_model(options.output, options.fold, net_config, *export_net, plans,
                                 model_dataset_json(dataset, settings), extra);
  export_net->to(device);
  message(fmt::format("model folder written: {} (fold {}, {} weights)", options.output.string(),
                      options.fold, exported));
  result.completed = true;
  fill_result();
  return result;
}

}  // namespace umamba::train
