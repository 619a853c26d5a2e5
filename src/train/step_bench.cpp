// `umamba bench train-step` (see step_bench.h).
#include "train/step_bench.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>
#if defined(UMAMBA_TORCH_HAS_CUDA)
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/csrc/autograd/profiler_kineto.h>
#endif

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include "core/error.h"
#include "model/networks.h"
#include "plan/network_topology.h"
#include "train/augment.h"
#include "train/device.h"
#include "train/loss.h"
#include "train/step.h"

namespace umamba::train {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

void synchronize(const torch::Device& device) {
#if defined(UMAMBA_TORCH_HAS_CUDA)
  if (device.is_cuda()) at::cuda::getCurrentCUDAStream(device.index()).synchronize();
#endif
  (void)device;
}

// Between runs: the blocks the last run left cached go back to the driver and the peak restarts,
// so each run's figures are its own.
void reset_device_memory(const torch::Device& device) {
  synchronize(device);
#if defined(UMAMBA_TORCH_HAS_CUDA)
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
  reset_peak_device_memory(device);
}

std::string device_name(const torch::Device& device) {
#if defined(UMAMBA_TORCH_HAS_CUDA)
  if (device.is_cuda()) return at::cuda::getDeviceProperties(device.index())->name;
#endif
  return device.str();
}

// Times on the device between marks of one step (CUDA events), or on the host after a
// synchronisation where there are no events (CPU).
class PhaseClock {
 public:
  PhaseClock(torch::Device device, int marks) : device_(device) {
#if defined(UMAMBA_TORCH_HAS_CUDA)
    if (device_.is_cuda())
      for (int i = 0; i < marks; ++i) events_.emplace_back(cudaEventDefault);
#endif
    host_.resize(static_cast<size_t>(marks));
  }
  void mark(int i) {
    host_[static_cast<size_t>(i)] = Clock::now();
#if defined(UMAMBA_TORCH_HAS_CUDA)
    if (device_.is_cuda()) events_[static_cast<size_t>(i)].record();
#endif
  }
  // Milliseconds from mark i to mark i + 1 on the device, and the host's time to launch them.
  std::pair<double, double> span(int i) {
    const auto a = static_cast<size_t>(i), b = a + 1;
    const double host = std::chrono::duration<double, std::milli>(host_[b] - host_[a]).count();
#if defined(UMAMBA_TORCH_HAS_CUDA)
    if (device_.is_cuda()) return {events_[a].elapsed_time(events_[b]), host};
#endif
    return {host, host};
  }

 private:
  torch::Device device_;
  std::vector<Clock::time_point> host_;
#if defined(UMAMBA_TORCH_HAS_CUDA)
  std::vector<at::cuda::CUDAEvent> events_;
#endif
};

struct Batch {
  torch::Tensor data;
  std::vector<torch::Tensor> targets;
};

// A batch of `channels` x patch inputs and uint8 class indices (as the batch loader hands them
// over), with the deep-supervision targets.
Batch random_batch(int64_t n, int channels, const std::vector<int>& patch, int classes,
                   const std::vector<std::vector<int64_t>>& ds, const torch::Device& device) {
  Batch b;
  std::vector<int64_t> data_shape{n, channels}, label_shape{n, 1};
  for (int p : patch) {
    data_shape.push_back(p);
    label_shape.push_back(p);
  }
  b.data = torch::randn(data_shape, torch::TensorOptions().device(device));
  const auto labels = torch::randint(0, classes, label_shape,
                                     torch::TensorOptions().dtype(torch::kUInt8).device(device));
  b.targets = downsample_targets(labels, ds);
  return b;
}

// The step's parts op by op, each between two marks: forward, loss, backward (with the loss
// scaling), the SGD step; device time per part and the host's time to launch it, averaged over
// `reps` steps.
nlohmann::json time_phases(model::SegmentationNetwork& net, Optimization& opt,
                           const StepOptions& so, const Batch& batch, const torch::Device& device,
                           int reps) {
  const char* names[] = {"forward", "loss", "backward", "optimizer"};
  double device_ms[4] = {0, 0, 0, 0}, host_ms[4] = {0, 0, 0, 0};
  PhaseClock clock(device, 5);
  for (int r = 0; r < reps; ++r) {
    for (auto& p : net.parameters()) p.mutable_grad().reset();
    synchronize(device);
    torch::AutoGradMode grad_mode(true);
    clock.mark(0);
    LossTerms loss;
    {
      AutocastScope autocast(so.precision, device.type());
      std::vector<torch::Tensor> out = net.forward(batch.data);
      out.resize(batch.targets.size());
      clock.mark(1);
      loss = deep_supervision_loss(out, batch.targets, so.ds_weights, so.loss);
    }
    clock.mark(2);
    loss.total.backward();
    clock.mark(3);
    sgd_foreach_step(opt.optimizer());
    clock.mark(4);
    synchronize(device);
    for (int k = 0; k < 4; ++k) {
      const auto [d, h] = clock.span(k);
      device_ms[k] += d / reps;
      host_ms[k] += h / reps;
    }
  }
  nlohmann::json ph;
  for (int k = 0; k < 4; ++k)
    ph[names[k]] = {{"device_ms", device_ms[k]}, {"host_launch_ms", host_ms[k]}};
  return ph;
}

// Least-squares line t = a + b·n through (n, t) points; nullopt for fewer than two batch sizes.
std::optional<std::pair<double, double>> fit_line(
    const std::vector<std::pair<double, double>>& pts) {
  double sn = 0, st = 0, snn = 0, snt = 0;
  for (const auto& [n, t] : pts) {
    sn += n;
    st += t;
    snn += n * n;
    snt += n * t;
  }
  const double k = static_cast<double>(pts.size());
  const double den = k * snn - sn * sn;
  if (pts.size() < 2 || den <= 0) return std::nullopt;
  const double b = (k * snt - sn * st) / den;
  return std::make_pair((st - b * sn) / k, b);
}

// GPU activity of `steps` calls of `step` through LibTorch's profiler: per step, the number of
// device events (kernels, copies, fills), their summed duration, the part in events shorter than
// 20 µs, and the names with the largest summed time.
nlohmann::json profile_kernels(const std::function<void()>& step, int steps) {
#if defined(UMAMBA_TORCH_HAS_CUDA)
  namespace prof = torch::autograd::profiler;
  using torch::profiler::impl::ActivityType;
  // CPU operators too (with their input shapes): each kernel is linked to the operator that
  // launched it, which names the largest ones.
  const torch::profiler::impl::ProfilerConfig config(torch::profiler::impl::ProfilerState::KINETO,
                                                     /*report_input_shapes=*/true);
  const std::set<ActivityType> activities{ActivityType::CPU, ActivityType::CUDA};
  prof::prepareProfiler(config, activities);
  prof::enableProfiler(config, activities);
  for (int i = 0; i < steps; ++i) step();
  const auto result = prof::disableProfiler();
  std::map<uint64_t, std::string> op_of;  // correlation id -> "operator [shapes]"
  for (const auto& e : result->events()) {
    if (e.deviceType() != c10::DeviceType::CPU) continue;
    std::string text = e.name();
    if (e.hasShapes()) {
      std::vector<std::string> dims;
      for (const auto& shape : e.shapes())
        if (!shape.empty()) dims.push_back(fmt::format("[{}]", fmt::join(shape, ",")));
      text += " " + fmt::format("{}", fmt::join(dims, " "));
    }
    op_of[e.correlationId()] = text;
  }
  struct Slot {
    int64_t count = 0;
    double us = 0;
    std::map<std::string, int64_t> ops;
  };
  std::map<std::string, Slot> by_name;
  int64_t events = 0, short_events = 0;
  double total_us = 0, short_us = 0;
  for (const auto& e : result->events()) {
    if (e.deviceType() != c10::DeviceType::CUDA) continue;
    const double us = static_cast<double>(e.durationNs()) / 1000.0;
    ++events;
    total_us += us;
    if (us < 20.0) {
      ++short_events;
      short_us += us;
    }
    auto& slot = by_name[e.name()];
    ++slot.count;
    slot.us += us;
    const auto op = op_of.find(e.linkedCorrelationId());
    if (op != op_of.end()) ++slot.ops[op->second];
  }
  std::vector<std::pair<double, std::string>> ranked;
  for (const auto& [name, v] : by_name) ranked.emplace_back(v.us, name);
  std::sort(ranked.rbegin(), ranked.rend());
  nlohmann::json top = nlohmann::json::array();
  for (size_t i = 0; i < ranked.size() && i < 8; ++i) {
    const auto& v = by_name.at(ranked[i].second);
    std::string op;
    int64_t most = 0;
    for (const auto& [text, count] : v.ops)
      if (count > most) {
        most = count;
        op = text;
      }
    top.push_back({{"name", ranked[i].second.substr(0, 90)},
                   {"per_step", static_cast<double>(v.count) / steps},
                   {"ms_per_step", v.us / 1000.0 / steps},
                   {"operator", op.substr(0, 160)}});
  }
  return {{"events_per_step", static_cast<double>(events) / steps},
          {"ms_per_step", total_us / 1000.0 / steps},
          {"short_events_per_step", static_cast<double>(short_events) / steps},
          {"short_ms_per_step", short_us / 1000.0 / steps},
          {"top", top}};
#else
  (void)step;
  (void)steps;
  fail("bench train-step --kernels: this build's LibTorch has no CUDA");
#endif
}

}  // namespace

model::NetworkConfig ct_3d_config(model::Architecture architecture,
                                  const std::vector<int64_t>& patch) {
  UMAMBA_CHECK(patch.size() == 3, "3D CT configuration: the patch needs Z, Y and X, got {} sizes",
               patch.size());
  for (int64_t p : patch)
    UMAMBA_CHECK(p >= 4, "3D CT configuration: patch {} has an edge below 4",
                 fmt::join(patch, "x"));
  const plan::Topology t = plan::pool_and_conv_props({2.5, 0.8, 0.8}, patch);
  const plan::IntVec features = plan::features_per_stage(t.n_stages(), 32, 320);
  model::NetworkConfig c;
  c.architecture = architecture;
  c.input_channels = 1;
  c.num_classes = 14;  // FLARE-like: 13 organs and background
  auto ints = [](const plan::IntVec& v) { return std::vector<int>(v.begin(), v.end()); };
  for (int64_t i = 0; i < t.n_stages(); ++i) {
    c.features_per_stage.push_back(static_cast<int>(features[i]));
    c.kernel_sizes.push_back(ints(t.conv_kernel_sizes[i]));
    c.strides.push_back(ints(t.pool_op_kernel_sizes[i]));
    c.n_conv_per_stage_encoder.push_back(2);
    if (i > 0) c.n_conv_per_stage_decoder.push_back(2);
  }
  c.patch_size = ints(t.patch_size);
  return c;
}

nlohmann::json run_step_bench(const StepBenchOptions& o) {
  UMAMBA_CHECK(o.config == "microscopy-2d" || o.config == "ct-3d",
               "bench train-step: configuration '{}': expected microscopy-2d or ct-3d", o.config);
  const bool ct = o.config == "ct-3d";
  UMAMBA_CHECK(!o.architectures.empty() && !o.batches.empty() && !o.modes.empty(),
               "bench train-step: empty architecture, batch or mode list");
  UMAMBA_CHECK(o.iterations >= 1, "bench train-step: --iterations {} must be positive",
               o.iterations);
  const torch::Device device = with_device_index(torch::Device(o.device));
  for (const auto& m : o.modes) {
    UMAMBA_CHECK(m == "off" || m == "on", "bench train-step: mode '{}': expected off or on", m);
    UMAMBA_CHECK(m == "off" || device.is_cuda(),
                 "bench train-step: the CUDA graph (mode on) needs a CUDA device, not {}",
                 device.str());
  }
  UMAMBA_CHECK(!o.kernels || device.is_cuda(),
               "bench train-step --kernels needs a CUDA device, not {}", device.str());
  for (int64_t b : o.batches)
    UMAMBA_CHECK(b >= 1, "bench train-step: batch size {} must be positive", b);
  StepOptions so;
  so.precision = precision_from_name(o.precision);
  UMAMBA_CHECK(o.warmup >= so.graph_warmup_steps + 1,
               "bench train-step: --warmup {} must cover the graph's {} ordinary steps and its "
               "capture",
               o.warmup, so.graph_warmup_steps);

  nlohmann::json result;
  result["device"] = device_name(device);
  result["precision"] = o.precision;
  result["config"] = o.config;
  result["deep_supervision"] = o.deep_supervision;
  result["iterations"] = o.iterations;
  result["runs"] = nlohmann::json::array();
  result["phases"] = nlohmann::json::array();
  result["fits"] = nlohmann::json::array();
  result["kernels"] = nlohmann::json::array();

  for (const auto& arch_name : o.architectures) {
    const model::Architecture arch = model::architecture_from_string(arch_name);
    model::NetworkConfig config =
        ct ? ct_3d_config(arch, o.volume) : model::microscopy_2d_config(arch, o.patch, 3, 3);
    config.deep_supervision = o.deep_supervision;
    result["patch"] = config.patch_size;
    const int outputs = o.deep_supervision ? config.n_stages() - 1 : 1;
    const auto scales =
        o.deep_supervision
            ? deep_supervision_scales(config.strides)
            : std::vector<std::vector<int64_t>>{std::vector<int64_t>(config.dims(), 1)};
    so.ds_weights = deep_supervision_weights(outputs);
    std::map<std::string, std::vector<std::pair<double, double>>> points;  // mode -> (n, ms)
    for (int64_t n : o.batches) {
      for (const auto& mode : o.modes) {
        torch::manual_seed(1);
        auto net = model::make_network(config);
        so.cuda_graph = mode == "on";
        reset_device_memory(device);
        Optimization opt(net, so, device);
        const Batch batch = random_batch(n, config.input_channels, config.patch_size,
                                         config.num_classes, scales, device);
        for (int i = 0; i < o.warmup; ++i) (void)opt.step(batch.data, batch.targets);
        synchronize(device);
        const auto t0 = Clock::now();
        for (int i = 0; i < o.iterations; ++i) (void)opt.step(batch.data, batch.targets);
        synchronize(device);
        const double ms = ms_since(t0) / o.iterations;
        const DeviceMemory memory = device_memory(device);
        result["runs"].push_back({{"architecture", model::to_string(arch)},
                                  {"batch", n},
                                  {"cuda_graph", mode},
                                  {"ms_per_step", ms},
                                  {"samples_per_s", 1000.0 * static_cast<double>(n) / ms},
                                  {"peak_allocated_gb", memory.peak_gb},
                                  {"reserved_gb", memory.reserved_gb},
                                  {"graph_captures", opt.graph_captures()}});
        points[mode].emplace_back(static_cast<double>(n), ms);

        if (o.kernels && mode == "off") {
          nlohmann::json k = profile_kernels([&] { (void)opt.step(batch.data, batch.targets); }, 3);
          k["architecture"] = model::to_string(arch);
          k["batch"] = n;
          result["kernels"].push_back(k);
        }
        if (o.phases && mode == "off") {
          nlohmann::json ph =
              time_phases(*net, opt, so, batch, device, std::max(1, o.iterations / 2));
          ph["architecture"] = model::to_string(arch);
          ph["batch"] = n;
          result["phases"].push_back(ph);
        }
      }
    }
    // t(n) = a + b·n over the batch sizes, per mode.
    for (const auto& [mode, pts] : points) {
      const auto line = fit_line(pts);
      if (!line) continue;
      result["fits"].push_back({{"architecture", model::to_string(arch)},
                                {"cuda_graph", mode},
                                {"fixed_ms", line->first},
                                {"per_sample_ms", line->second}});
    }
  }
  return result;
}

std::string format_step_bench(const nlohmann::json& r) {
  std::string s = fmt::format(
      "training step alone (batch on the device), U-Mamba {} configuration, patch {}, {}, deep "
      "supervision {}, {} steps timed, on {}\n",
      r.at("config").get<std::string>() == "ct-3d" ? "3D abdomen-CT" : "2D microscopy",
      fmt::join(r.at("patch").get<std::vector<int>>(), "x"), r.at("precision").get<std::string>(),
      r.at("deep_supervision").get<bool>() ? "on" : "off", r.at("iterations").get<int>(),
      r.at("device").get<std::string>());
  s += fmt::format("{:<14} {:>5} {:>6} {:>10} {:>10} {:>10} {:>10}\n", "architecture", "batch",
                   "graph", "ms/step", "samples/s", "peak GiB", "reserved");
  std::map<std::tuple<std::string, std::string, int64_t>, double> ms;
  for (const auto& run : r.at("runs")) {
    const auto arch = run.at("architecture").get<std::string>();
    const auto mode = run.at("cuda_graph").get<std::string>();
    const auto n = run.at("batch").get<int64_t>();
    ms[{arch, mode, n}] = run.at("ms_per_step").get<double>();
    s +=
        fmt::format("{:<14} {:>5} {:>6} {:>10.2f} {:>10.1f} {:>10.2f} {:>10.2f}\n", arch, n, mode,
                    run.at("ms_per_step").get<double>(), run.at("samples_per_s").get<double>(),
                    run.at("peak_allocated_gb").get<double>(), run.at("reserved_gb").get<double>());
  }
  // Graph against ordinary steps, and what a 2-GPU split of the largest batch could reach.
  for (const auto& [key, t] : ms) {
    const auto& [arch, mode, n] = key;
    if (mode == "on" && ms.count({arch, "off", n}))
      s += fmt::format("{} batch {}: CUDA graph {:.2f}x the ordinary step's speed\n", arch, n,
                       ms.at({arch, "off", n}) / t);
    if (n % 2 == 0 && ms.count({arch, mode, n / 2}))
      s += fmt::format(
          "{} graph {}: 2 GPUs at a global batch of {} ({} each) can reach at most {:.2f}x one "
          "GPU (t({}) / t({}))\n",
          arch, mode, n, n / 2, t / ms.at({arch, mode, n / 2}), n, n / 2);
  }
  for (const auto& f : r.at("fits"))
    s += fmt::format("{} graph {}: t(n) = {:.2f} ms + {:.3f} ms x n\n",
                     f.at("architecture").get<std::string>(), f.at("cuda_graph").get<std::string>(),
                     f.at("fixed_ms").get<double>(), f.at("per_sample_ms").get<double>());
  for (const auto& k : r.at("kernels")) {
    s += fmt::format(
        "{} batch {}: {:.0f} GPU kernels/copies per ordinary step, {:.2f} ms in all; {:.0f} of "
        "them shorter than 20 us, {:.2f} ms\n",
        k.at("architecture").get<std::string>(), k.at("batch").get<int64_t>(),
        k.at("events_per_step").get<double>(), k.at("ms_per_step").get<double>(),
        k.at("short_events_per_step").get<double>(), k.at("short_ms_per_step").get<double>());
    for (const auto& t : k.at("top"))
      s += fmt::format("    {:8.2f} ms {:6.0f}x  {}\n                       from {}\n",
                       t.at("ms_per_step").get<double>(), t.at("per_step").get<double>(),
                       t.at("name").get<std::string>(), t.at("operator").get<std::string>());
  }
  if (!r.at("phases").empty()) {
    s += "ordinary step by parts, device ms (host launch ms):\n";
    for (const auto& p : r.at("phases")) {
      s += fmt::format("{:<14} batch {:>3}:", p.at("architecture").get<std::string>(),
                       p.at("batch").get<int64_t>());
      for (const char* k : {"forward", "loss", "backward", "optimizer"})
        s += fmt::format(" {} {:.2f} ({:.2f})", k, p.at(k).at("device_ms").get<double>(),
                         p.at(k).at("host_launch_ms").get<double>());
      s += "\n";
    }
  }
  return s;
}

}  // namespace umamba::train
