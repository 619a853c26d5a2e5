// `umamba bench engine` (see bench.h): synthetic input, the engine end to end, and the model-only
// baseline measured in the same run.
#include "engine/bench.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>
#include <tbb/global_control.h>
#include <tbb/parallel_for.h>
#include <torch/script.h>
#include <torch/torch.h>

#if defined(UMAMBA_TORCH_HAS_CUDA)
#include <ATen/cuda/CUDAContext.h>
#endif

#include <chrono>
#include <fstream>
#include <memory>
#include <thread>

#include "core/error.h"
#include "core/log.h"
#include "core/memory.h"
#include "engine/gpu_monitor.h"
#include "engine/predictor.h"
#include "engine/tile_model.h"
#include "io/image_io.h"
#if defined(UMAMBA_ENGINE_WITH_MODEL)
#include "model/network_config.h"
#include "model/networks.h"
#endif

namespace umamba::engine {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

uint64_t mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A fluorescence-like test pattern: one bright disc (radius 4-9 px) per 24-px grid block at a
// jittered position, background ~20 with noise. Every pixel is a function of its position only.
uint8_t pattern(int64_t y, int64_t x) {
  constexpr int64_t kBlock = 24;
  const int64_t by = y / kBlock, bx = x / kBlock;
  int value =
      20 + static_cast<int>(
               mix(static_cast<uint64_t>(y) * 0x1000193ull ^ static_cast<uint64_t>(x)) % 12);
  for (int64_t dy = -1; dy <= 1; ++dy) {
    for (int64_t dx = -1; dx <= 1; ++dx) {
      const int64_t cy = by + dy, cx = bx + dx;
      if (cy < 0 || cx < 0) continue;
      const uint64_t h = mix(static_cast<uint64_t>(cy) << 32 ^ static_cast<uint64_t>(cx));
      const int64_t py = cy * kBlock + 4 + static_cast<int64_t>(h % 16);
      const int64_t px = cx * kBlock + 4 + static_cast<int64_t>((h >> 8) % 16);
      const int64_t r = 4 + static_cast<int64_t>((h >> 16) % 6);
      if ((y - py) * (y - py) + (x - px) * (x - px) <= r * r) {
        value = std::max(
            value, 110 + static_cast<int>((h >> 24) % 100) +
                       static_cast<int>(
                           mix(static_cast<uint64_t>(x) << 20 ^ static_cast<uint64_t>(y)) % 20));
      }
    }
  }
  return static_cast<uint8_t>(std::min(value, 255));
}

void write_synthetic(const std::filesystem::path& path, int64_t size) {
  const Shape shape{1, 1, size, size};
  io::WriteOptions w;
  w.tile_size = 512;
  io::TiffBandWriter writer(path, shape, DType::U8, Geometry{}, w);
  const int64_t band_rows = 512;
  for (int64_t y0 = 0; y0 < size; y0 += band_rows) {
    const int64_t n = std::min(band_rows, size - y0);
    Image band = Image::zeros(DType::U8, Shape{1, 1, n, size});
    uint8_t* p = band.data_as<uint8_t>();
    tbb::parallel_for(int64_t{0}, n, [&](int64_t r) {
      for (int64_t x = 0; x < size; ++x) p[r * size + x] = pattern(y0 + r, x);
    });
    writer.write_band(band);
  }
  writer.finish();
}

// The first `rows` rows of another source.
class TopRows : public RegionSource {
 public:
  TopRows(RegionSource& inner, int64_t rows) : inner_(inner), rows_(rows) {}
  Shape shape() const override {
    Shape s = inner_.shape();
    s.y = std::min(s.y, rows_);
    return s;
  }
  DType dtype() const override { return inner_.dtype(); }
  Geometry geometry() const override { return inner_.geometry(); }
  Image read(const Box& box) override { return inner_.read(box); }

 private:
  RegionSource& inner_;
  int64_t rows_;
};

// conv3x3(1 -> w) -> ReLU -> conv3x3(w -> K): a small fully convolutional net (receptive field 5).
struct TinyNetImpl : torch::nn::Module {
  torch::nn::Conv2d a{nullptr}, b{nullptr};
  TinyNetImpl(int64_t in, int64_t width, int64_t classes) {
    a = register_module("a", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, width, 3).padding(1)));
    b = register_module("b",
                        torch::nn::Conv2d(torch::nn::Conv2dOptions(width, classes, 3).padding(1)));
  }
  torch::Tensor forward(torch::Tensor x) { return b(torch::relu(a(x))); }
};
TORCH_MODULE(TinyNet);

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto c = line.find(':');
      if (c != std::string::npos) return line.substr(c + 2);
    }
  }
  return "unknown";
}

std::string device_name(const torch::Device& d) {
#if defined(UMAMBA_TORCH_HAS_CUDA)
  if (d.is_cuda()) return at::cuda::getDeviceProperties(d.index())->name;
#endif
  return d.is_cuda() ? "cuda" : cpu_model();
}

void synchronize(const torch::Device& d) {
#if defined(UMAMBA_TORCH_HAS_CUDA)
  if (d.is_cuda()) at::cuda::getCurrentCUDAStream(d.index()).synchronize();
#endif
  (void)d;
}

}  // namespace

nlohmann::json run_engine_bench(const EngineBenchOptions& o) {
  UMAMBA_CHECK(o.size >= 1, "bench engine: --size {} must be positive", o.size);
  UMAMBA_CHECK(o.patch >= 8, "bench engine: --patch {} too small", o.patch);
  UMAMBA_CHECK(o.rows >= 0, "bench engine: --rows {} must not be negative", o.rows);
  nlohmann::json result;
  const auto work = o.work_dir.empty() ? std::filesystem::temp_directory_path() : o.work_dir;
  std::filesystem::create_directories(work);

  // ---- input
  std::filesystem::path input = o.input;
  double generate_s = 0;
  bool generated = false;
  if (input.empty()) {
    input = work / fmt::format("engine_bench_{}.tif", o.size);
    bool reuse = false;
    if (std::filesystem::exists(input)) {
      try {
        const auto info = io::open_image(input)->info();
        reuse = info.shape == (Shape{1, 1, o.size, o.size}) && info.dtype == DType::U8;
      } catch (const Error&) {
        reuse = false;
      }
    }
    if (!reuse) {
      log::info("bench engine: writing a synthetic {}x{} u8 tiled TIFF to {}", o.size, o.size,
                input.string());
      const auto t0 = Clock::now();
      write_synthetic(input, o.size);
      generate_s = seconds_since(t0);
      generated = true;
    }
  }

  // ---- device and model
  const torch::Device device(o.device);
  if (device.is_cuda()) {
    UMAMBA_CHECK(torch::cuda::is_available(),
                 "bench engine: --device {} requested but LibTorch sees no CUDA device", o.device);
    at::globalContext().setBenchmarkCuDNN(true);  // as nnU-Net does
  }
  if (o.torch_threads > 0) at::set_num_threads(o.torch_threads);
  std::unique_ptr<TileModel> model;
  const std::vector<int64_t> patch{o.patch, o.patch};  // tiny and torchscript models
  ParallelFileSource file_source(input, o.readers);
  const int64_t in_channels = file_source.shape().c;
  torch::jit::script::Module script;
  if (o.model == "tiny") {
    torch::manual_seed(1);
    TinyNet net(in_channels, o.width, o.classes);
    model = std::make_unique<ModuleTileModel>(net, TileModelSpec{in_channels, o.classes, patch},
                                              device);
  } else if (o.model == "torchscript") {
    UMAMBA_CHECK(!o.model_file.empty(), "bench engine: --model torchscript needs --model-file");
    script = torch::jit::load(o.model_file.string(), device);
    script.eval();
    model = std::make_unique<FunctionTileModel>(
        [&script](const torch::Tensor& x) {
          const c10::IValue out = script.forward({x});
          if (out.isTensor()) return out.toTensor();
          if (out.isTuple()) return out.toTupleRef().elements()[0].toTensor();
          if (out.isList()) return out.toListRef()[0].toTensor();
          fail("bench engine: the TorchScript model returned neither a tensor nor a list");
        },
        TileModelSpec{in_channels, o.classes, patch}, device);
  } else if (o.model == "umamba-bot" || o.model == "umamba-enc" || o.model == "plain" ||
             o.model == "network") {
#if defined(UMAMBA_ENGINE_WITH_MODEL)
    model::NetworkConfig config;
    if (o.model == "network") {
      UMAMBA_CHECK(!o.network_config.empty(),
                   "bench engine: --model network needs --network-config");
      std::ifstream f(o.network_config);
      UMAMBA_CHECK(f.good(), "bench engine: cannot read {}", o.network_config.string());
      config = model::NetworkConfig::from_json(nlohmann::json::parse(f));
      config.deep_supervision = false;
    } else {
      config = model::microscopy_2d_config(
          o.model == "plain"        ? model::Architecture::PlainConvUNet
          : o.model == "umamba-bot" ? model::Architecture::UMambaBot
                                    : model::Architecture::UMambaEnc,
          static_cast<int>(o.patch), static_cast<int>(in_channels), static_cast<int>(o.classes));
      config.deep_supervision = false;
    }
    UMAMBA_CHECK(config.dims() == 2 && config.input_channels == in_channels,
                 "bench engine: the network must be 2D with {} input channels", in_channels);
    torch::manual_seed(1);
    std::shared_ptr<model::SegmentationNetwork> net = model::make_network(config);
    net->to(device);
    net->eval();
    result["network"] = config.to_json();
    result["network"]["parameters"] = net->parameter_count();
    model = std::make_unique<FunctionTileModel>(
        [net](const torch::Tensor& x) { return net->forward(x)[0]; },
        TileModelSpec{
            in_channels, config.num_classes, {config.patch_size.at(0), config.patch_size.at(1)}},
        device);
#else
    fail("bench engine: --model {} needs umamba::model, which this build lacks", o.model);
#endif
  } else {
    fail(
        "bench engine: unknown --model '{}' (tiny, torchscript, umamba-bot, umamba-enc, plain, "
        "network)",
        o.model);
  }

  EngineOptions eo;
  eo.tile_step = o.step;
  eo.batch_size = o.batch;
  eo.precision = precision_from_name(o.precision);
  eo.max_batches_in_flight = o.in_flight;
  if (o.mirror) eo.mirror_axes = {0, 1};
  eo.outputs = kClasses;

  // ---- baseline: the model alone on batches already on the device
  nlohmann::json baseline;
  if (o.baseline_batches > 0) {
    c10::InferenceMode guard;
    const torch::Tensor x = torch::randn({o.batch, in_channels, o.patch, o.patch},
                                         torch::TensorOptions().device(device));
    auto run = [&] {
      torch::Tensor y;
      if (eo.precision != Precision::F32) {
        // Same autocast as the engine's model stage.
        at::autocast::set_autocast_enabled(device.type(), true);
        at::autocast::set_autocast_dtype(
            device.type(), eo.precision == Precision::F16 ? at::kHalf : at::kBFloat16);
        y = model->forward(x);
        at::autocast::set_autocast_enabled(device.type(), false);
        at::autocast::clear_cache();
      } else {
        y = model->forward(x);
      }
      return y;
    };
    for (int i = 0; i < 2; ++i) run();
    synchronize(device);
    const auto t0 = Clock::now();
    for (int i = 0; i < o.baseline_batches; ++i) run();
    synchronize(device);
    const double s = seconds_since(t0);
    baseline["batches"] = o.baseline_batches;
    baseline["seconds"] = s;
    baseline["tiles_per_s"] = static_cast<double>(o.baseline_batches * o.batch) / s;
  }

  // ---- the engine, end to end
  TopRows source(file_source, o.rows > 0 ? o.rows : file_source.shape().y);
  const Shape shape = source.shape();
  const std::filesystem::path output = work / "engine_bench_classes.tif";
  reset_peak_resident();
  const size_t rss_before = current_resident_bytes();
  io::WriteOptions wo;
  wo.tile_size = 512;
  io::TiffBandWriter writer(output, Shape{1, shape.z, shape.y, shape.x},
                            o.classes <= 256 ? DType::U8 : DType::U16, source.geometry(), wo);
  double write_s = 0;
  RowRebander rebander(512, shape.y, kClasses, [&](const Image& rows, int64_t, int64_t) {
    const auto t0 = Clock::now();
    writer.write_band(rows);
    write_s += seconds_since(t0);
  });
  std::unique_ptr<GpuMonitor> monitor;
  if (device.is_cuda())
    monitor = std::make_unique<GpuMonitor>(device.index() < 0 ? 0 : device.index());
  const auto t0 = Clock::now();
  const EngineStats st =
      predict_bands(source, *model, Normalization{}, eo, [&](const Band& b) { rebander.add(b); });
  auto t1 = Clock::now();
  writer.finish();
  const double finish_write_s = seconds_since(t1);
  const double wall = seconds_since(t0);
  const double nvml = monitor ? monitor->stop() : -1.0;
  const size_t peak = peak_resident_bytes();
  if (!o.keep_output) std::filesystem::remove(output);

  const double mpx = static_cast<double>(shape.pixels()) / 1e6;
  nlohmann::json engine;
  engine["wall_s"] = wall;
  engine["mpixels_per_s"] = mpx / wall;
  engine["tiles"] = st.tiles;
  engine["batches"] = st.batches;
  engine["model_calls"] = st.model_calls;
  engine["bands"] = st.bands;
  engine["stats_pass_s"] = st.stats_s;
  engine["read_s"] = st.read_s;
  engine["preprocess_s"] = st.preprocess_s;
  engine["infer_s"] = st.infer_s;
  engine["accumulate_s"] = st.accumulate_s;
  engine["finish_s"] = st.finish_s;
  engine["write_s"] = write_s + finish_write_s;
  engine["device_s"] = st.device_s;
  engine["peak_rss_bytes"] = peak;
  engine["rss_before_bytes"] = rss_before;
  engine["peak_input_lines"] = st.peak_input_lines;
  engine["peak_accumulator_lines"] = st.peak_accumulator_lines;
  if (device.is_cuda()) {
    engine["gpu_busy_events"] = st.device_s / wall;
    engine["gpu_busy_nvml"] = nvml;
    if (monitor && !monitor->available()) engine["nvml_error"] = monitor->error();
  }
  if (baseline.contains("tiles_per_s")) {
    const double ideal =
        static_cast<double>(st.model_calls * o.batch) / baseline["tiles_per_s"].get<double>();
    baseline["ideal_engine_s"] = ideal;
    baseline["pipeline_efficiency"] = ideal / wall;
  }
  result["machine"] = {{"cpu", cpu_model()},
                       {"cores", std::thread::hardware_concurrency()},
                       {"tbb_threads", tbb::global_control::active_value(
                                           tbb::global_control::max_allowed_parallelism)},
                       {"torch_threads", at::get_num_threads()},
                       {"device", st.device},
                       {"device_name", device_name(device)}};
  result["input"] = {{"path", input.string()},
                     {"shape", to_string(shape)},
                     {"generated", generated},
                     {"generate_s", generate_s}};
  result["options"] = {{"model", o.model},         {"width", o.width},
                       {"classes", o.classes},     {"patch", o.patch},
                       {"batch", o.batch},         {"step", o.step},
                       {"precision", o.precision}, {"mirror", o.mirror},
                       {"in_flight", o.in_flight}, {"readers", file_source.readers()}};
  result["engine"] = engine;
  result["baseline_model_only"] = baseline;
  return result;
}

std::string format_engine_bench(const nlohmann::json& r) {
  const auto& e = r["engine"];
  std::string s;
  s += fmt::format(
      "machine: {} ({} cores, {} TBB threads, {} LibTorch threads), device {} ({})\n",
      r["machine"]["cpu"].get<std::string>(), r["machine"]["cores"].get<int>(),
      r["machine"]["tbb_threads"].get<size_t>(), r["machine"]["torch_threads"].get<int>(),
      r["machine"]["device"].get<std::string>(), r["machine"]["device_name"].get<std::string>());
  s += fmt::format(
      "input: {} {}{}\n", r["input"]["path"].get<std::string>(),
      r["input"]["shape"].get<std::string>(),
      r["input"]["generated"].get<bool>()
          ? fmt::format(" (generated in {:.1f} s)", r["input"]["generate_s"].get<double>())
          : "");
  s += fmt::format(
      "engine: {:.1f} s wall, {:.2f} Mpixel/s, {} tiles in {} batches, peak RSS {:.0f} MiB\n",
      e["wall_s"].get<double>(), e["mpixels_per_s"].get<double>(), e["tiles"].get<int64_t>(),
      e["batches"].get<int64_t>(), e["peak_rss_bytes"].get<double>() / (1 << 20));
  s += fmt::format(
      "  stage time (s, summed per stage; stages overlap): statistics pass {:.1f}, read {:.1f}, "
      "preprocess {:.1f}, infer {:.1f}, accumulate {:.1f}, finish {:.1f}, write {:.1f}\n",
      e["stats_pass_s"].get<double>(), e["read_s"].get<double>(), e["preprocess_s"].get<double>(),
      e["infer_s"].get<double>(), e["accumulate_s"].get<double>(), e["finish_s"].get<double>(),
      e["write_s"].get<double>());
  if (e.contains("gpu_busy_events")) {
    s += fmt::format("  GPU busy: {:.1f} % (CUDA events), {} (NVML samples)\n",
                     100.0 * e["gpu_busy_events"].get<double>(),
                     e["gpu_busy_nvml"].get<double>() < 0
                         ? std::string("n/a")
                         : fmt::format("{:.1f} %", 100.0 * e["gpu_busy_nvml"].get<double>()));
  }
  const auto& b = r["baseline_model_only"];
  if (b.contains("tiles_per_s")) {
    s += fmt::format(
        "baseline (same run): model alone {:.1f} tiles/s -> {:.1f} s for this run's model calls; "
        "pipeline efficiency {:.2f} (model-only time / engine wall time)\n",
        b["tiles_per_s"].get<double>(), b["ideal_engine_s"].get<double>(),
        b["pipeline_efficiency"].get<double>());
  }
  return s;
}

}  // namespace umamba::engine
