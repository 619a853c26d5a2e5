// `umamba predict` (see predict.h).
#include "pipeline/predict.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "core/build_info.h"
#include "core/error.h"
#include "core/fault_injection.h"
#include "core/log.h"
#include "core/memory.h"
#include "io/atomic_file.h"
#include "io/image_io.h"
#include "pipeline/manifest.h"
#include "pipeline/progress.h"

#if defined(UMAMBA_WITH_TORCH)
#include <tbb/global_control.h>

#include "engine/predictor.h"
#include "pipeline/predict_model.h"
#include "postprocess/band_merger.h"
#include "postprocess/ccl.h"
#include "postprocess/measure.h"
#include "postprocess/outlines.h"
#include "postprocess/targets.h"
#include "volumetric/resample.h"
#endif

namespace umamba::pipeline {

namespace fs = std::filesystem;

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool is_nifti_name(const fs::path& p) {
  const std::string ext = lower(split_image_name(p).second);
  return ext == ".nii" || ext == ".nii.gz";
}

bool is_tiff_ext(const std::string& ext) {
  const std::string e = lower(ext);
  return e == ".tif" || e == ".tiff";
}

std::string label_extension(const PredictJob& job, const InputFile& input) {
  if (job.extension != "auto") return job.extension;
  return is_nifti_name(input.path) ? ".nii.gz" : ".tiff";
}

}  // namespace

PredictOutputs predict_outputs(const PredictJob& job, const InputFile& input) {
  const std::string stem = split_image_name(input.relative).first;
  const fs::path dir = job.output / input.relative.parent_path();
  PredictOutputs out;
  out.labels = dir / (stem + job.suffix + label_extension(job, input));
  if (job.probabilities) out.probabilities = dir / (stem + "_prob.tiff");
  if (job.measurements) out.measurements = dir / (stem + "_objects.csv");
  if (job.geojson) out.geojson = dir / (stem + ".geojson");
  if (job.overlay) {
    out.overlay = dir / (stem + (build_info::kOpenCV ? "_overlay.png" : "_overlay.tiff"));
  }
  return out;
}

std::string manifest_name(const Shard& shard) {
  if (!shard.active()) return "umamba_predict.json";
  return fmt::format("umamba_predict.shard-{}-of-{}.json", shard.index, shard.count);
}

int PredictSummary::exit_code() const {
  if (interrupted) return kPredictInterruptedStatus;
  if (failed > 0) return static_cast<int>(std::min<int64_t>(failed, kPredictMaxFailedStatus));
  return 0;
}

std::string format_predict_summary(const PredictSummary& s) {
  std::string text = fmt::format(
      "predict: {} input(s){}: {} segmented, {} already done, {} failed", s.selected,
      s.shard.active() ? fmt::format(" in part {} of {} found", s.shard.name(), s.discovered)
                       : std::string(),
      s.done, s.skipped, s.failed);
  if (s.interrupted)
    text += fmt::format(", {} not started (stopped by a signal; rerun to continue)", s.not_started);
  text += fmt::format("\nmanifest: {}\n", s.manifest.string());
  return text;
}

#if !defined(UMAMBA_WITH_TORCH)

PredictSummary run_predict(const PredictJob&) {
  throw Unsupported("umamba predict needs a build with LibTorch (configure with UMAMBA_TORCH=ON)");
}

#else

namespace {

// ---- signals ---------------------------------------------------------------------------------

std::atomic<int> g_stop_signal{0};

extern "C" void on_stop_signal(int sig) {
  g_stop_signal.store(sig);
}

// Installs the handlers for the duration of a run and restores the previous ones.
class StopSignals {
 public:
  explicit StopSignals(bool install) : installed_(install) {
    g_stop_signal.store(0);
    if (!installed_) return;
    for (size_t i = 0; i < kSignals.size(); ++i) {
      struct sigaction sa {};
      sa.sa_handler = on_stop_signal;
      sigemptyset(&sa.sa_mask);
      // A second Ctrl-C ends the process at once (default action restored by the first).
      sa.sa_flags = kSignals[i] == SIGINT ? SA_RESETHAND : 0;
      ::sigaction(kSignals[i], &sa, &previous_[i]);
    }
  }
  ~StopSignals() {
    if (!installed_) return;
    for (size_t i = 0; i < kSignals.size(); ++i) ::sigaction(kSignals[i], &previous_[i], nullptr);
  }
  static bool requested() { return g_stop_signal.load() != 0; }

 private:
  static constexpr std::array<int, 3> kSignals{SIGTERM, SIGUSR1, SIGINT};
  bool installed_;
  std::array<struct sigaction, 3> previous_{};
};

// ---- files -----------------------------------------------------------------------------------

std::vector<fs::path> output_list(const PredictOutputs& o) {
  std::vector<fs::path> v;
  for (const fs::path* p : {&o.probabilities, &o.measurements, &o.geojson, &o.overlay, &o.labels}) {
    if (!p->empty()) v.push_back(*p);
  }
  return v;  // labels last: the order they are written in
}

nlohmann::json path_list(const std::vector<fs::path>& paths) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& p : paths) j.push_back(p.string());
  return j;
}

bool path_exists(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

// Removes ".<name>.tmp-<pid>-<n>" left beside `final_path` by processes that no longer run on
// this host (a killed run). Temporaries of live processes are left alone.
void remove_stale_temporaries(const fs::path& final_path) {
  const fs::path dir = final_path.has_parent_path() ? final_path.parent_path() : fs::path(".");
  const std::string prefix = "." + final_path.filename().string() + ".tmp-";
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return;
  for (const auto& entry : it) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
    if (pid <= 0 || pid == static_cast<long>(::getpid())) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    fs::remove(entry.path(), ec);
    if (!ec) log::debug("removed stale temporary {}", entry.path().string());
  }
}

// Why the outputs of `input` would leave the output folder `root`, or "" when every one stays
// inside: a relative name that is absolute or climbs with "..", or a folder (or file) in the
// output tree that is a symbolic link leading outside it. Symbolic links are resolved as they
// are now; the check runs again before each file.
std::string output_escape(const fs::path& root, const InputFile& input, const PredictOutputs& o) {
  const fs::path rel = input.relative.lexically_normal();
  if (rel.empty() || rel.has_root_path()) {
    return fmt::format("its output name '{}' is not a relative path inside the output folder",
                       input.relative.string());
  }
  for (const auto& part : rel) {
    if (part == "..") {
      return fmt::format("its output name '{}' climbs out of the output folder with '..'",
                         input.relative.string());
    }
  }
  std::error_code ec;
  const fs::path base = fs::weakly_canonical(fs::absolute(root, ec), ec);
  if (ec) return fmt::format("the output folder {} cannot be resolved", root.string());
  for (const fs::path* p : {&o.labels, &o.probabilities, &o.measurements, &o.geojson, &o.overlay}) {
    if (p->empty()) continue;
    const fs::path real = fs::weakly_canonical(fs::absolute(*p, ec), ec);
    const fs::path inside = real.lexically_relative(base);
    if (ec || inside.empty() || *inside.begin() == ".." || inside.is_absolute()) {
      return fmt::format(
          "output {} resolves to {}, outside the output folder {} (a symbolic link in the output "
          "tree?); nothing written",
          p->string(), real.string(), base.string());
    }
  }
  return {};
}

void write_text(const fs::path& path, const std::string& text) {
  io::AtomicOutput out(path);
  {
    std::ofstream f(out.temporary_path(), std::ios::binary);
    f.write(text.data(), static_cast<std::streamsize>(text.size()));
    f.close();
    if (!f) fail_file(path.string(), "cannot be written (disk full?)");
  }
  out.commit();
}

// Adapts the image's channels to the model's: equal counts pass through, a grey image is repeated
// for an RGB model, RGBA drops alpha for an RGB model; anything else is refused.
class ChannelAdapter : public engine::RegionSource {
 public:
  ChannelAdapter(engine::RegionSource& base, int64_t want, const std::string& path)
      : base_(base), want_(want) {
    const int64_t have = base.shape().c;
    if (have == want) {
      mode_ = Mode::Same;
    } else if (have == 1) {
      mode_ = Mode::Repeat;
    } else if (have == 4 && want == 3) {
      mode_ = Mode::DropAlpha;
    } else {
      fail_file(path, "has {} channel(s) but the model expects {}; convert the image first", have,
                want);
    }
  }
  Shape shape() const override {
    Shape s = base_.shape();
    s.c = want_;
    return s;
  }
  DType dtype() const override { return base_.dtype(); }
  Geometry geometry() const override { return base_.geometry(); }
  Image read(const Box& box) override {
    Image img = base_.read(box);
    switch (mode_) {
      case Mode::Same:
        return img;
      case Mode::DropAlpha:
        return img.channels(0, 3);
      case Mode::Repeat: {
        Shape s = img.shape();
        s.c = want_;
        Image out = Image::zeros(img.dtype(), s, img.geometry());
        for (int64_t c = 0; c < want_; ++c) out.channel(c).copy_from(img.channel(0));
        return out;
      }
    }
    return img;
  }

 private:
  enum class Mode { Same, Repeat, DropAlpha };
  engine::RegionSource& base_;
  int64_t want_;
  Mode mode_ = Mode::Same;
};

// A temporary file of raw uint32 labels in TMPDIR, removed when done.
class SpillFile {
 public:
  SpillFile() {
    static std::atomic<unsigned> counter{0};
    path_ = fs::temp_directory_path() /
            fmt::format("umamba-predict-{}-{}.u32", static_cast<long>(::getpid()), counter++);
    file_ = std::fopen(path_.c_str(), "w+b");
    if (file_ == nullptr)
      fail_file(path_.string(), "cannot create a temporary file (TMPDIR full?)");
  }
  ~SpillFile() {
    if (file_ != nullptr) std::fclose(file_);
    std::error_code ec;
    fs::remove(path_, ec);
  }
  void write(const uint32_t* data, int64_t n) {
    if (std::fwrite(data, sizeof(uint32_t), static_cast<size_t>(n), file_) !=
        static_cast<size_t>(n))
      fail_file(path_.string(), "temporary label file cannot be written (TMPDIR full?)");
  }
  void rewind() {
    if (std::fflush(file_) != 0 || std::fseek(file_, 0, SEEK_SET) != 0)
      fail_file(path_.string(), "temporary label file cannot be read back");
  }
  void read(uint32_t* data, int64_t n) {
    if (std::fread(data, sizeof(uint32_t), static_cast<size_t>(n), file_) != static_cast<size_t>(n))
      fail_file(path_.string(), "temporary label file is short");
  }

 private:
  fs::path path_;
  std::FILE* file_ = nullptr;
};

// ---- the run ---------------------------------------------------------------------------------

struct Item {
  InputFile input;
  PredictOutputs outputs;
  std::string key;     // relative path: the manifest key
  int64_t tiles = 0;   // estimated tiles (0 when the header could not be read)
  std::string escape;  // why an output would leave the output folder; "" when none does
};

struct FileResult {
  bool ok = false;
  nlohmann::json record;
};

enum class PostMode { Reclaim, Plain, None };

struct Context {
  const PredictJob& job;
  const ModelInfo& model;
  PostMode post = PostMode::None;
  engine::EngineOptions engine;
  RunManifest& manifest;
  Progress& progress;
  std::atomic<bool> warned_stop{false};
};

PostMode post_mode(const PredictJob& job, const ModelInfo& model) {
  const bool three_class = model.num_classes == 3;
  if (job.postprocess == "auto") return three_class ? PostMode::Reclaim : PostMode::None;
  if (job.postprocess == "none") return PostMode::None;
  UMAMBA_CHECK(job.postprocess == "reclaim" || job.postprocess == "plain",
               "--postprocess '{}': expected auto, reclaim, plain or none", job.postprocess);
  UMAMBA_CHECK(three_class,
               "--postprocess {}: instances come from three-class models (background, interior, "
               "boundary); this model has {} classes; use --postprocess none",
               job.postprocess, model.num_classes);
  return job.postprocess == "reclaim" ? PostMode::Reclaim : PostMode::Plain;
}

const char* post_name(PostMode m) {
  switch (m) {
    case PostMode::Reclaim:
      return "reclaim";
    case PostMode::Plain:
      return "plain";
    case PostMode::None:
      return "none";
  }
  return "?";
}

int64_t estimate_tiles(const Shape& s, const ModelInfo& m, double step) {
  std::array<int64_t, 3> patch{1, 1, 1};
  const int dims = m.spatial_dims();
  for (int a = 0; a < dims; ++a)
    patch[static_cast<size_t>(3 - dims + a)] = m.patch_size[static_cast<size_t>(a)];
  // Padded sizes are at least the patch; the grid needs them.
  const std::array<int64_t, 3> shape{s.z, s.y, s.x};
  return engine::make_tile_grid(shape, patch, dims, step).count();
}

// Reports the band's progress as tiles (lines finished × tiles per line). A line is a slice under a
// 3D model (its bands are whole slices) and a row of a slice under a 2D model.
class TileMeter {
 public:
  TileMeter(Progress& p, int64_t tiles) : p_(&p), tiles_(tiles) {}
  // The grid the bands come from: `slices` slices of `rows` rows.
  void set_grid(bool model3d, int64_t slices, int64_t rows) {
    model3d_ = model3d;
    rows_ = rows;
    lines_ = model3d ? slices : slices * rows;
  }
  void band_done(const engine::Band& b) {
    lines_done(model3d_ ? b.z0 + b.dz : b.z0 * rows_ + b.y0 + b.dy);
  }
  int64_t left() const { return std::max<int64_t>(0, tiles_ - reported_); }

 private:
  void lines_done(int64_t done) {
    const int64_t t = lines_ > 0 ? tiles_ * done / lines_ : 0;
    if (t > reported_) p_->tiles_done(t - reported_);
    reported_ = std::max(reported_, t);
  }

  Progress* p_;
  int64_t tiles_, lines_ = 1, rows_ = 1, reported_ = 0;
  bool model3d_ = false;
};

nlohmann::json engine_json(const engine::EngineStats& s) {
  return {{"tiles", s.tiles},
          {"batches", s.batches},
          {"model_calls", s.model_calls},
          {"bands", s.bands},
          {"wall_s", s.wall_s},
          {"read_s", s.read_s},
          {"infer_s", s.infer_s},
          {"accumulate_s", s.accumulate_s},
          {"finish_s", s.finish_s},
          {"callback_s", s.callback_s},
          {"device_s", s.device_s},
          {"peak_input_lines", s.peak_input_lines},
          {"peak_accumulator_lines", s.peak_accumulator_lines}};
}

io::WriteOptions write_options(const PredictOutputs& out, const InputFile& input) {
  io::WriteOptions w;
  w.overwrite = true;
  if (is_nifti_name(out.labels) && is_nifti_name(input.path)) w.reference = input.path;
  return w;
}

void finish_whole(Context& ctx, const Item& item, io::ImageReader& reader, const Image& classes,
                  nlohmann::json& rec);

// Whole-image mode: classes in memory, instances with the full post-processing, every extra.
void predict_whole(Context& ctx, const Item& item, io::ImageReader& reader,
                   engine::RegionSource& source, engine::TileModel& model, TileMeter& meter,
                   nlohmann::json& rec) {
  const Shape s = source.shape();
  const int64_t K = ctx.model.num_classes;
  const Geometry geometry = source.geometry();
  const bool want_intensity =
      !item.outputs.measurements.empty() || (!item.outputs.overlay.empty() && s.z == 1);
  {
    // Whole-image mode holds the class map, the instance labels (with the labelling's own
    // buffer of the same size) and, for measurements and overlays, the image itself: check their
    // sum against the allocation limit before the first of them is allocated.
    const double px = static_cast<double>(s.pixels());
    const double bytes =
        px * (K <= 256 ? 1.0 : 2.0) + (ctx.post != PostMode::None ? px * 8.0 : 0.0) +
        (want_intensity
             ? static_cast<double>(s.elements()) * static_cast<double>(dtype_size(source.dtype()))
             : 0.0);
    const size_t limit = allocation_limit();
    if (bytes > static_cast<double>(limit)) {
      fail_file(item.input.path.string(),
                "whole-image prediction of {} needs about {:.3g} GB (class map{}{}), above the "
                "allocation limit of {:.3g} GB (UMAMBA_MAX_ALLOC_BYTES); use --stream always "
                "(TIFF labels; 2D images or 3D models) or raise the limit",
                to_string(s), bytes / 1e9, ctx.post != PostMode::None ? ", instance labels" : "",
                want_intensity ? ", the image for measurements/overlay" : "",
                static_cast<double>(limit) / 1e9);
    }
  }
  Image classes = Image::zeros(K <= 256 ? DType::U8 : DType::U16, {1, s.z, s.y, s.x}, geometry);
  std::unique_ptr<io::TiffBandWriter> prob;
  engine::EngineOptions eo = ctx.engine;
  if (!item.outputs.probabilities.empty()) {
    eo.outputs |= engine::kProbabilities;
    prob = std::make_unique<io::TiffBandWriter>(item.outputs.probabilities, Shape{K, s.z, s.y, s.x},
                                                DType::F32, geometry);
  }
  const engine::EngineStats st =
      engine::predict_bands(source, model, ctx.model.normalization, eo, [&](const engine::Band& b) {
        classes.region(Box{b.z0, b.y0, 0, b.dz, b.dy, s.x}).copy_from(b.classes);
        if (prob) {
          for (int64_t z = 0; z < b.dz; ++z) prob->write_band(b.probabilities.slice(z));
        }
        meter.band_done(b);
      });
  rec["engine"] = engine_json(st);
  if (prob) prob->finish();
  finish_whole(ctx, item, reader, classes, rec);
}

// Whole-image mode after the class map: instances, extras, the label image.
void finish_whole(Context& ctx, const Item& item, io::ImageReader& reader, const Image& classes,
                  nlohmann::json& rec) {
  const Shape s = classes.shape();
  const bool want_intensity =
      !item.outputs.measurements.empty() || (!item.outputs.overlay.empty() && s.z == 1);
  Image labels;
  if (ctx.post == PostMode::None) {
    labels = classes;
  } else {
    postprocess::InstanceOptions opt;
    opt.mode = ctx.post == PostMode::Reclaim ? postprocess::InstanceMode::Reclaim
                                             : postprocess::InstanceMode::Plain;
    opt.min_size = ctx.job.min_size;
    opt.threads = 0;
    uint32_t count = 0;
    labels = postprocess::classes_to_instances(classes, opt, &count);
    rec["instances"] = count;
  }
  rec["postprocess"] = post_name(ctx.post);
  rec["mode"] = "whole";

  Image intensity = want_intensity ? reader.read() : Image();
  if (!item.outputs.measurements.empty()) {
    write_text(item.outputs.measurements,
               postprocess::to_csv(postprocess::region_properties(labels, intensity)));
  }
  nlohmann::json notes = nlohmann::json::array();
  if (!item.outputs.geojson.empty()) {
    if (s.z == 1) {
      write_text(item.outputs.geojson,
                 postprocess::outlines_geojson(postprocess::trace_outlines(labels)));
    } else {
      notes.push_back("geojson: 2D images only, not written for this volume");
    }
  }
  if (!item.outputs.overlay.empty()) {
    if (s.z == 1) {
      io::write_image(item.outputs.overlay, postprocess::overlay_outlines(intensity, labels));
    } else {
      notes.push_back("overlay: 2D images only, not written for this volume");
    }
  }
  if (!notes.empty()) rec["notes"] = notes;
  io::write_labels(item.outputs.labels, labels, write_options(item.outputs, item.input));
}

// ---- resampling to the plans' spacing (3D models; see predict.h) ------------------------------

// "z,y,x" or one value for every axis, positive numbers.
volumetric::Spacing3 parse_spacing(const std::string& text) {
  std::vector<double> v;
  std::string item;
  std::stringstream list(text);
  while (std::getline(list, item, ',')) {
    char* end = nullptr;
    const double d = std::strtod(item.c_str(), &end);
    UMAMBA_CHECK(end != item.c_str() && *end == '\0' && std::isfinite(d) && d > 0,
                 "--spacing '{}': '{}' is not a positive number (expected z,y,x or one value)",
                 text, item);
    v.push_back(d);
  }
  UMAMBA_CHECK(v.size() == 1 || v.size() == 3,
               "--spacing '{}': expected three values z,y,x or one for every axis, got {}", text,
               v.size());
  if (v.size() == 1) return {v[0], v[0], v[0]};
  return {v[0], v[1], v[2]};
}

// The input's voxel size [Z,Y,X]: --spacing, else the file's (NIfTI always has one; a TIFF has
// one when it carries resolution tags, ImageJ or JSON spacing); nullopt when unknown.
std::optional<volumetric::Spacing3> input_spacing(const PredictJob& job,
                                                  const io::ImageInfo& info) {
  if (!job.spacing.empty()) return parse_spacing(job.spacing);
  if (info.format == "nifti" || !info.geometry.unit.empty()) return info.geometry.spacing;
  return std::nullopt;
}

// [C,Z,Y,X] with the spatial axes permuted (new axis i = old axis perm[i], nnU-Net's transpose),
// contiguous; the spacing follows its axes.
Image transpose_spatial(const Image& image, const std::array<int64_t, 3>& perm) {
  if (perm == std::array<int64_t, 3>{0, 1, 2}) return image;
  const Shape& s = image.shape();
  const Shape& st = image.strides();
  const std::array<int64_t, 3> sizes{s.z, s.y, s.x}, strides{st.z, st.y, st.x};
  const Shape ns{s.c, sizes[static_cast<size_t>(perm[0])], sizes[static_cast<size_t>(perm[1])],
                 sizes[static_cast<size_t>(perm[2])]};
  const Shape nst{st.c, strides[static_cast<size_t>(perm[0])],
                  strides[static_cast<size_t>(perm[1])], strides[static_cast<size_t>(perm[2])]};
  Geometry g = image.geometry();
  for (size_t i = 0; i < 3; ++i)
    g.spacing[i] = image.geometry().spacing[static_cast<size_t>(perm[i])];
  auto owner = std::make_shared<Image>(image);
  Image out =
      Image::wrap(const_cast<void*>(image.data()), image.dtype(), ns, nst, owner, g).clone();
  out.geometry() = g;
  return out;
}

// Softmax over channels of a float32 [K,Z,Y,X] image.
Image softmax_channels(const Image& logits) {
  const Shape s = logits.shape();
  Image out = Image::zeros(DType::F32, s, logits.geometry());
  const float* in = logits.data_as<float>();
  float* p = out.data_as<float>();
  const int64_t n = s.pixels();
  for (int64_t i = 0; i < n; ++i) {
    float mx = in[i];
    for (int64_t c = 1; c < s.c; ++c) mx = std::max(mx, in[c * n + i]);
    double sum = 0;
    for (int64_t c = 0; c < s.c; ++c) sum += std::exp(static_cast<double>(in[c * n + i] - mx));
    for (int64_t c = 0; c < s.c; ++c)
      p[c * n + i] = static_cast<float>(std::exp(static_cast<double>(in[c * n + i] - mx)) / sum);
  }
  return out;
}

// Prediction on another grid than the input's: the image transposed by `fwd`, resampled from
// `shape_t` to `there` (data order 3, `axis_there` predicted separately with order 0 as nnU-Net's
// separate-Z rule, -1: none), the sliding window there, the blended logits back to `shape_t`
// (order 1, `axis_back`), transposed back, arg-maxed; then the whole-image post-processing.
struct OtherGrid {
  std::array<int64_t, 3> fwd{0, 1, 2};  // transpose to the grid's axis order
  volumetric::Shape3 shape_t{};         // the transposed input's shape
  volumetric::Shape3 there{};           // the shape predicted at
  int axis_there = -1, axis_back = -1;
  const char* why = "";   // for the memory error: what the new grid is
  const char* undo = "";  // ... and the option that avoids it
  nlohmann::json record;  // the manifest's description of the grid
};

void predict_on_grid(Context& ctx, const Item& item, io::ImageReader& reader,
                     engine::RegionSource& source, engine::TileModel& model, TileMeter& meter,
                     const OtherGrid& g, nlohmann::json& rec) {
  const Shape s = source.shape();
  const int64_t K = ctx.model.num_classes;
  const int64_t C = s.c;
  std::array<int64_t, 3> bwd{};
  for (size_t i = 0; i < 3; ++i) bwd[static_cast<size_t>(g.fwd[i])] = static_cast<int64_t>(i);
  const volumetric::Shape3& there = g.there;
  {
    // The volume, normalised, resampled, its logits there and back (float32), the class map.
    const double n_in = static_cast<double>(s.pixels());
    const double n_out = static_cast<double>(there[0] * there[1] * there[2]);
    const double bytes = 4.0 * (2.0 * C * n_in + 2.0 * C * n_out + K * n_out + 2.0 * K * n_in) +
                         n_in * (K <= 256 ? 1.0 : 2.0);
    const size_t limit = allocation_limit();
    if (bytes > static_cast<double>(limit)) {
      fail_file(item.input.path.string(),
                "{} {} ({}x{}x{} voxels) needs about {:.3g} GB, above the allocation limit of "
                "{:.3g} GB (UMAMBA_MAX_ALLOC_BYTES); raise the limit, or {}",
                g.why, to_string(s), there[0], there[1], there[2], bytes / 1e9,
                static_cast<double>(limit) / 1e9, g.undo);
    }
  }
  // Read, transpose, normalise (nnU-Net normalises before resampling).
  Image image = transpose_spatial(source.read(Box{0, 0, 0, s.z, s.y, s.x}).contiguous(), g.fwd);
  std::vector<engine::ChannelStats> stats;
  const engine::Normalization& norm = ctx.model.normalization;
  if (engine::Normalizer::needs_image_stats(norm, C)) {
    engine::StatsAccumulator acc(C, engine::Normalizer::needs_masked_stats(norm, C));
    acc.add(image);
    stats = acc.finish();
  }
  const engine::Normalizer normalizer(norm, C, stats);
  Image data = Image::zeros(DType::F32, image.shape(), image.geometry());
  normalizer.apply(image, data.data_as<float>(), data.strides().c, data.strides().z,
                   data.strides().y);
  image = Image();
  volumetric::ResampleOptions to_target;
  to_target.order = 3;
  to_target.order_z = 0;
  to_target.separate_axis = g.axis_there;
  const Image resampled = volumetric::resample_data(data, there, to_target);
  data = Image();

  // Sliding window on the new grid (already normalised).
  engine::Normalization none;
  none.channels = {engine::ChannelNormalization{engine::NormScheme::NoNorm, false, {}}};
  engine::EngineOptions eo = ctx.engine;
  eo.outputs = engine::kLogits;
  Image logits = Image::zeros(DType::F32, {K, there[0], there[1], there[2]}, resampled.geometry());
  engine::ImageSource there_source(resampled);
  meter.set_grid(ctx.model.spatial_dims() == 3, there[0], there[1]);
  const engine::EngineStats st =
      engine::predict_bands(there_source, model, none, eo, [&](const engine::Band& b) {
        logits.region(Box{b.z0, b.y0, 0, b.dz, b.dy, there[2]}).copy_from(b.logits);
        meter.band_done(b);
      });
  rec["engine"] = engine_json(st);

  // Logits back to the input grid (nnU-Net: order 1, order_z 0), then the original axis order.
  volumetric::ResampleOptions back;
  back.order = 1;
  back.order_z = 0;
  back.separate_axis = g.axis_back;
  Image logits_back = transpose_spatial(volumetric::resample_data(logits, g.shape_t, back), bwd);
  logits = Image();
  logits_back.geometry() = source.geometry();
  Image classes = volumetric::argmax_channels(logits_back, K <= 256 ? DType::U8 : DType::U16);
  classes.geometry() = source.geometry();
  if (!item.outputs.probabilities.empty()) {
    io::write_image(item.outputs.probabilities, softmax_channels(logits_back));
  }
  logits_back = Image();
  rec.update(g.record);
  finish_whole(ctx, item, reader, classes, rec);
}

// nnU-Net's path for a volume at another spacing (reference §4.3-4.4): transpose, normalise,
// resample (order 3, separate-Z rule), sliding window, logits back (order 1, separate-Z rule),
// transpose back, arg-max; then the whole-image post-processing and outputs.
void predict_resampled(Context& ctx, const Item& item, io::ImageReader& reader,
                       engine::RegionSource& source, engine::TileModel& model, TileMeter& meter,
                       const volumetric::Spacing3& spacing, nlohmann::json& rec) {
  const Shape s = source.shape();
  OtherGrid g;
  g.fwd = {ctx.model.transpose_forward[0], ctx.model.transpose_forward[1],
           ctx.model.transpose_forward[2]};
  const std::array<int64_t, 3> dims{s.z, s.y, s.x};
  volumetric::Spacing3 spacing_t{}, target{};
  for (size_t i = 0; i < 3; ++i) {
    g.shape_t[i] = dims[static_cast<size_t>(g.fwd[i])];
    spacing_t[i] = spacing[static_cast<size_t>(g.fwd[i])];
    target[i] = ctx.model.spacing[i];
  }
  g.there = volumetric::target_shape(g.shape_t, spacing_t, target);
  g.axis_there = volumetric::separate_z_axis(spacing_t, target);
  g.axis_back = volumetric::separate_z_axis(target, spacing_t);
  g.why = "resampling to the model's spacing:";
  g.undo = "pass --no-resample to predict the volume at its own spacing";
  g.record["resampling"] = {{"input_spacing", spacing},
                            {"target_spacing", ctx.model.spacing},
                            {"transpose_forward", ctx.model.transpose_forward},
                            {"shape_at_target", g.there},
                            {"separate_axis_to_target", g.axis_there},
                            {"separate_axis_back", g.axis_back},
                            {"orders", "data 3 (order_z 0), logits back 1 (order_z 0)"}};
  predict_on_grid(ctx, item, reader, source, model, meter, g, rec);
}

// A plane's side of n pixels at --scale f (at least 1).
int64_t scaled_size(int64_t n, double f) {
  return std::max<int64_t>(1, std::llround(static_cast<double>(n) * f));
}

// --scale (2D models): every plane resized by the factor in Y and X (Z, the plane index, kept:
// order 0 along it), predicted there, the logits back to the input's plane size.
void predict_scaled(Context& ctx, const Item& item, io::ImageReader& reader,
                    engine::RegionSource& source, engine::TileModel& model, TileMeter& meter,
                    nlohmann::json& rec) {
  const Shape s = source.shape();
  const double f = ctx.job.scale;
  OtherGrid g;
  g.shape_t = {s.z, s.y, s.x};
  g.there = {s.z, scaled_size(s.y, f), scaled_size(s.x, f)};
  g.axis_there = g.axis_back = 0;  // planes one by one
  g.why = "scaling";
  g.undo = "choose a smaller --scale";
  g.record["scaling"] = {
      {"scale", f}, {"shape_scaled", g.there}, {"orders", "data 3, logits back 1, each plane"}};
  predict_on_grid(ctx, item, reader, source, model, meter, g, rec);
}

void predict_streamed(Context& ctx, const Item& item, engine::RegionSource& source,
                      engine::TileModel& model, TileMeter& meter, nlohmann::json& rec) {
  const Shape s = source.shape();
  const int64_t K = ctx.model.num_classes;
  const Geometry geometry = source.geometry();
  const bool instances = ctx.post != PostMode::None;
  engine::EngineOptions eo = ctx.engine;
  std::unique_ptr<io::TiffBandWriter> prob;
  if (!item.outputs.probabilities.empty()) {
    eo.outputs |= engine::kProbabilities;
    prob = std::make_unique<io::TiffBandWriter>(item.outputs.probabilities, Shape{K, s.z, s.y, s.x},
                                                DType::F32, geometry);
  }
  const io::WriteOptions wopt = write_options(item.outputs, item.input);
  nlohmann::json notes = nlohmann::json::array();
  for (const fs::path* p :
       {&item.outputs.measurements, &item.outputs.geojson, &item.outputs.overlay}) {
    if (!p->empty()) notes.push_back(p->filename().string() + ": not written for streamed images");
  }
  if (ctx.post == PostMode::Reclaim) {
    notes.push_back("reclaim needs the whole image; streamed with plain instances");
  }

  if (!instances) {
    // The class map goes straight to the writer.
    io::TiffBandWriter writer(item.outputs.labels, {1, s.z, s.y, s.x}, DType::U16, geometry, wopt);
    const auto st = engine::predict_bands(
        source, model, ctx.model.normalization, eo, [&](const engine::Band& b) {
          for (int64_t z = 0; z < b.dz; ++z) {
            if (prob) prob->write_band(b.probabilities.slice(z));
            writer.write_band(b.classes.slice(z).cast(DType::U16));
          }
          meter.band_done(b);
        });
    rec["engine"] = engine_json(st);
    if (prob) prob->finish();
    writer.finish();
    rec["postprocess"] = "none";
    rec["mode"] = "streamed";
    if (!notes.empty()) rec["notes"] = notes;
    return;
  }

  // Pass 1: label each band's interior, join the bands, spill the local labels.
  const bool is3d = s.z > 1;
  const postprocess::Connectivity conn = postprocess::full_connectivity(is3d);
  postprocess::BandMerger merger({s.z, s.y, s.x}, conn);
  SpillFile spill;
  struct BandInfo {
    int64_t z0, dz, y0, dy;
    uint32_t count;
  };
  std::vector<BandInfo> bands;
  std::vector<std::vector<uint64_t>> local_sizes;
  std::vector<uint8_t> mask;
  std::vector<uint32_t> local;
  postprocess::CclOptions ccl;
  ccl.connectivity = conn;
  ccl.threads = 0;
  const auto st =
      engine::predict_bands(source, model, ctx.model.normalization, eo, [&](const engine::Band& b) {
        if (prob) {
          for (int64_t z = 0; z < b.dz; ++z) prob->write_band(b.probabilities.slice(z));
        }
        const Image cls = b.classes.cast(DType::U8);  // contiguous [1, dz, dy, X]
        const uint8_t* c = cls.data_as<uint8_t>();
        const postprocess::Extents e{b.dz, b.dy, s.x};
        const int64_t n = e.pixels();
        mask.resize(static_cast<size_t>(n));
        local.resize(static_cast<size_t>(n));
        for (int64_t p = 0; p < n; ++p)
          mask[static_cast<size_t>(p)] = c[p] == postprocess::kInterior;
        const uint32_t count = postprocess::label_components(mask.data(), e, local.data(), ccl);
        merger.add_band(local.data(), is3d ? b.dz : b.dy, count);
        std::vector<uint64_t> sizes(static_cast<size_t>(count) + 1, 0);
        for (int64_t p = 0; p < n; ++p) ++sizes[local[static_cast<size_t>(p)]];
        local_sizes.push_back(std::move(sizes));
        bands.push_back({b.z0, b.dz, b.y0, b.dy, count});
        spill.write(local.data(), n);
        meter.band_done(b);
      });
  rec["engine"] = engine_json(st);
  if (prob) prob->finish();
  const uint32_t merged = merger.finish();

  // Whole-object sizes, the size filter, consecutive numbering (raster order is kept).
  std::vector<uint64_t> size(static_cast<size_t>(merged) + 1, 0);
  for (size_t bi = 0; bi < bands.size(); ++bi) {
    for (uint32_t l = 1; l <= bands[bi].count; ++l)
      size[merger.final_label(bi, l)] += local_sizes[bi][l];
  }
  std::vector<uint32_t> renumber(static_cast<size_t>(merged) + 1, 0);
  uint32_t kept = 0;
  for (uint32_t f = 1; f <= merged; ++f) {
    if (ctx.job.min_size <= 1 || size[f] >= static_cast<uint64_t>(ctx.job.min_size))
      renumber[f] = ++kept;
  }

  // Pass 2: final labels, band by band, into the label TIFF.
  spill.rewind();
  io::TiffBandWriter writer(item.outputs.labels, {1, s.z, s.y, s.x},
                            kept <= 65535 ? DType::U16 : DType::U32, geometry, wopt);
  for (size_t bi = 0; bi < bands.size(); ++bi) {
    const BandInfo& b = bands[bi];
    const int64_t n = b.dz * b.dy * s.x;
    local.resize(static_cast<size_t>(n));
    spill.read(local.data(), n);
    std::vector<uint32_t> map(static_cast<size_t>(b.count) + 1, 0);
    for (uint32_t l = 1; l <= b.count; ++l) map[l] = renumber[merger.final_label(bi, l)];
    for (auto& v : local) v = map[v];
    const Image band = Image::wrap(local.data(), DType::U32, {1, b.dz, b.dy, s.x},
                                   Image::contiguous_strides({1, b.dz, b.dy, s.x}), nullptr);
    for (int64_t z = 0; z < b.dz; ++z) {
      writer.write_band(kept <= 65535 ? band.slice(z).cast(DType::U16) : band.slice(z));
    }
  }
  writer.finish();
  rec["instances"] = kept;
  rec["postprocess"] = "plain";
  rec["mode"] = "streamed";
  if (!notes.empty()) rec["notes"] = notes;
}

// Runs one input. Out of device memory at one tile per call (engine::DeviceOutOfMemory) on a GPU:
// the file is run again on the CPU (`cpu_model` loads the worker's CPU copy of the networks on
// first use) with a warning, recorded as "fallback" in the manifest.
FileResult process(Context& ctx, const Item& item, engine::TileModel& model,
                   const std::string& device, int worker,
                   const std::function<engine::TileModel&()>& cpu_model) {
  const auto t0 = std::chrono::steady_clock::now();
  nlohmann::json rec = {{"input", item.input.path.string()},
                        {"outputs", path_list(output_list(item.outputs))},
                        {"device", device},
                        {"worker", worker},
                        {"model_hash", ctx.model.hash}};
  TileMeter meter(ctx.progress, item.tiles);
  FileResult result;
  // Nothing is created, replaced or removed for an input whose outputs would leave the folder
  // (checked again here: links may have changed since the run started).
  std::string escape = item.escape;
  try {
    if (escape.empty()) escape = output_escape(ctx.job.output, item.input, item.outputs);
    if (!escape.empty()) fail_file(item.input.path.string(), "{}", escape);
    for (const auto& p : output_list(item.outputs)) remove_stale_temporaries(p);
    for (const auto& p : output_list(item.outputs)) {
      UMAMBA_CHECK(fs::weakly_canonical(p) != fs::weakly_canonical(item.input.path),
                   "{}: the output would replace the input; choose another --output or --suffix",
                   item.input.path.string());
    }
    auto reader = io::open_image(item.input.path);
    const io::ImageInfo& info = reader->info();
    const Shape& s = info.shape;
    rec["shape"] = {s.c, s.z, s.y, s.x};
    if (s.elements() <= 0) fail_file(item.input.path.string(), "is empty (shape {})", to_string(s));
    engine::ReaderSource file_source(*reader);
    ChannelAdapter source(file_source, ctx.model.in_channels, item.input.path.string());
    const bool model3d = ctx.model.spatial_dims() == 3;
    meter.set_grid(model3d, s.z, s.y);
    const bool streamable =
        (s.z == 1 || model3d) && is_tiff_ext(item.outputs.labels.extension().string());
    // Resampling to the plans' spacing (3D models whose plans give one; see predict.h).
    std::optional<volumetric::Spacing3> spacing;
    const bool resample = ctx.job.resample && model3d && !ctx.model.spacing.empty();
    if (resample) {
      spacing = input_spacing(ctx.job, info);
      if (!spacing) {
        fail_file(item.input.path.string(),
                  "the model was trained at spacing {} (plans.json, Z,Y,X) but this file gives "
                  "no voxel size (no resolution tags or ImageJ spacing); pass --spacing z,y,x, "
                  "or --no-resample to predict it as it is",
                  fmt::join(ctx.model.spacing, ","));
      }
      if (ctx.job.stream == "always") {
        fail_file(item.input.path.string(),
                  "--stream always: a volume resampled to the model's spacing is predicted "
                  "whole; pass --no-resample to stream it at its own spacing");
      }
    }
    const bool scaled = ctx.job.scale != 1.0;  // 2D models only (checked at setup)
    if (scaled && ctx.job.stream == "always") {
      fail_file(item.input.path.string(),
                "--stream always: an image predicted at --scale {} is predicted whole; drop "
                "--scale or --stream always",
                ctx.job.scale);
    }
    bool stream = false;
    if (resample || scaled) {
      stream = false;
    } else if (ctx.job.stream == "always") {
      if (!streamable) {
        fail_file(item.input.path.string(),
                  "--stream always: streaming needs a TIFF label output and a 2D image (or a 3D "
                  "model)");
      }
      stream = true;
    } else if (ctx.job.stream == "auto") {
      stream = streamable && s.pixels() > ctx.job.stream_above;
    }
    auto run_on = [&](engine::TileModel& m) {
      if (resample) {
        predict_resampled(ctx, item, *reader, source, m, meter, *spacing, rec);
      } else if (scaled) {
        predict_scaled(ctx, item, *reader, source, m, meter, rec);
      } else if (stream) {
        predict_streamed(ctx, item, source, m, meter, rec);
      } else {
        predict_whole(ctx, item, *reader, source, m, meter, rec);
      }
    };
    try {
      run_on(model);
    } catch (const engine::DeviceOutOfMemory& e) {
      if (device == "cpu") throw;
      // The failed attempt's temporaries are gone (their writers unwound); start over on the CPU.
      ctx.progress.message(
          fmt::format("WARNING {}: {}; running this file on the CPU instead", item.key, e.what()));
      rec["fallback"] = {{"device", "cpu"}, {"reason", e.what()}};
      run_on(cpu_model());
    }
    rec["status"] = "done";
    result.ok = true;
  } catch (const std::exception& e) {
    rec["status"] = "failed";
    if (dynamic_cast<const engine::NonFiniteOutput*>(&e) != nullptr) {
      rec["error"] = fmt::format(
          "{}: model {} (folds {}) produced NaN or infinite logits; no labels written ({})",
          item.input.path.string(), ctx.job.model.string(), fmt::join(ctx.model.folds, ","),
          e.what());
    } else {
      rec["error"] = e.what();
    }
    // A failed input leaves no outputs: remove what this attempt (or an older, incomplete one)
    // committed, never the input itself, and nothing at all outside the output folder.
    std::error_code ec;
    const fs::path input = fs::weakly_canonical(item.input.path, ec);
    if (escape.empty()) {
      for (const auto& p : output_list(item.outputs)) {
        if (path_exists(p) && fs::weakly_canonical(p, ec) != input) fs::remove(p, ec);
      }
    }
  }
  rec["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  rec["finished"] = utc_timestamp();
  ctx.progress.file_finished(result.ok, meter.left());
  result.record = std::move(rec);
  return result;
}

// Done when every requested output exists. GeoJSON and overlays exist only for 2D images, so
// when they are the only ones missing the header decides.
bool outputs_complete(const Item& item) {
  if (!item.escape.empty() || !path_exists(item.outputs.labels)) return false;
  for (const fs::path* p : {&item.outputs.probabilities, &item.outputs.measurements}) {
    if (!p->empty() && !path_exists(*p)) return false;
  }
  bool missing_2d_only = false;
  for (const fs::path* p : {&item.outputs.geojson, &item.outputs.overlay}) {
    if (!p->empty() && !path_exists(*p)) missing_2d_only = true;
  }
  if (!missing_2d_only) return true;
  try {
    return io::open_image(item.input.path)->info().shape.z > 1;
  } catch (const std::exception&) {
    return false;
  }
}

nlohmann::json job_parameters(const PredictJob& job, const ModelInfo& m, PostMode post,
                              const engine::EngineOptions& eo,
                              const std::vector<std::string>& devices) {
  nlohmann::json mirror = nlohmann::json::array();
  for (int a : eo.mirror_axes) mirror.push_back(a);
  return {{"inputs", job.inputs},
          {"list", job.list_file.string()},
          {"recursive", job.recursive},
          {"output", job.output.string()},
          {"suffix", job.suffix},
          {"extension", job.extension},
          {"overwrite", job.overwrite},
          {"probabilities", job.probabilities},
          {"measurements", job.measurements},
          {"geojson", job.geojson},
          {"overlay", job.overlay},
          {"device", job.device},
          {"devices", devices},
          {"workers_per_device", job.workers_per_device},
          {"batch_size", eo.batch_size},
          {"tile_step", eo.tile_step},
          {"mirror_axes", mirror},
          {"precision", job.precision},
          {"postprocess", post_name(post)},
          {"min_size", job.min_size},
          {"stream", job.stream},
          {"stream_above", job.stream_above},
          {"resample", job.resample},
          {"spacing", job.spacing},
          {"scale", job.scale},
          {"model_spacing", m.spacing},
          {"normalization", m.normalization_source}};
}

}  // namespace

PredictSummary run_predict(const PredictJob& job) {
  fault::init_from_environment();  // a malformed UMAMBA_FAULT_INJECT is a setup error
  // ---- options and model
  UMAMBA_CHECK(!job.output.empty(), "predict: no output folder given (--output)");
  UMAMBA_CHECK(!job.model.empty(), "predict: no model folder given (--model)");
  UMAMBA_CHECK(!job.inputs.empty() || !job.list_file.empty(),
               "predict: no inputs given (files, folders, globs or --list)");
  UMAMBA_CHECK(job.workers_per_device >= 1, "--workers must be at least 1, got {}",
               job.workers_per_device);
  UMAMBA_CHECK(job.batch_size >= 1, "--batch-size must be at least 1, got {}", job.batch_size);
  UMAMBA_CHECK(job.tile_step > 0 && job.tile_step <= 1, "--tile-step must lie in (0, 1], got {}",
               job.tile_step);
  UMAMBA_CHECK(job.min_size >= 0, "--min-size must be >= 0, got {}", job.min_size);
  UMAMBA_CHECK(job.stream == "auto" || job.stream == "always" || job.stream == "never",
               "--stream '{}': expected auto, always or never", job.stream);
  UMAMBA_CHECK(job.extension == "auto" || (!job.extension.empty() && job.extension[0] == '.'),
               "--ext '{}': expected auto or an extension such as .tiff", job.extension);
  if (job.extension != "auto") {
    UMAMBA_CHECK(io::is_supported_image("x" + job.extension),
                 "--ext {}: this build cannot write that format", job.extension);
  }
  UMAMBA_CHECK(job.suffix.find('/') == std::string::npos, "--suffix '{}': must not contain '/'",
               job.suffix);
  for (const std::string fixed : {"_prob", "_overlay", "_objects"}) {
    UMAMBA_CHECK(job.suffix != fixed, "--suffix {} is taken by another output", job.suffix);
  }
  if (!job.spacing.empty()) parse_spacing(job.spacing);  // a malformed value is a setup error
  const ProgressMode progress_mode = progress_mode_from_name(job.progress);
  const ModelInfo model = inspect_model(job.model.string(), job.folds);
  UMAMBA_CHECK(job.scale > 0 && std::isfinite(job.scale), "--scale must be positive, got {}",
               job.scale);
  UMAMBA_CHECK(job.scale == 1.0 || model.spatial_dims() == 2,
               "--scale {}: scaling applies to 2D models; a 3D model is resampled to its plans' "
               "spacing instead (--spacing, --resample)",
               job.scale);
  const PostMode post = post_mode(job, model);
  engine::EngineOptions eo;
  eo.tile_step = job.tile_step;
  eo.batch_size = job.batch_size;
  eo.precision = engine::precision_from_name(job.precision);
  if (job.mirror) {
    for (int a = 0; a < model.spatial_dims(); ++a) eo.mirror_axes.push_back(a);
  }
  eo.outputs = engine::kClasses;

  // ---- inputs and shard
  const GetEnv getenv =
      job.getenv ? job.getenv : GetEnv([](const char* n) { return std::getenv(n); });
  PredictSummary summary;
  summary.shard = resolve_shard(job.shard, getenv);
  DiscoveryOptions dopt;
  dopt.recursive = job.recursive;
  dopt.list_file = job.list_file;
  dopt.skip_stem_suffixes = {"_prob", "_overlay"};
  if (!job.suffix.empty()) dopt.skip_stem_suffixes.push_back(job.suffix);
  dopt.skip_dir = job.output;
  const std::vector<InputFile> all = discover_inputs(job.inputs, dopt);
  UMAMBA_CHECK(!all.empty(),
               "predict: no input images found (supported: .tif/.tiff, .nii/.nii.gz{})",
               build_info::kOpenCV ? ", .png/.jpg/.bmp" : "");
  const std::vector<InputFile> mine = select_shard(all, summary.shard);
  summary.discovered = static_cast<int64_t>(all.size());
  summary.selected = static_cast<int64_t>(mine.size());
  if (summary.shard.active()) {
    log::info("shard {} ({}): {} of {} inputs", summary.shard.name(), summary.shard.source,
              mine.size(), all.size());
  }
  std::error_code ec;
  fs::create_directories(job.output, ec);
  if (ec) fail("{}: the output folder cannot be created: {}", job.output.string(), ec.message());

  // ---- what is left to do
  std::vector<Item> items;
  std::vector<Item> skipped;
  for (const auto& in : mine) {
    Item it{in, predict_outputs(job, in), in.relative.generic_string(), 0, {}};
    it.escape = output_escape(job.output, in, it.outputs);
    if (!job.overwrite && outputs_complete(it)) {
      skipped.push_back(std::move(it));
    } else {
      try {
        const io::ImageInfo info = io::open_image(in.path)->info();
        Shape shape = info.shape;
        // Resampled volumes are tiled at the plans' spacing (progress counts those tiles).
        if (job.resample && model.spatial_dims() == 3 && !model.spacing.empty()) {
          if (const auto sp = input_spacing(job, info)) {
            const std::array<int64_t, 3> d{shape.z, shape.y, shape.x};
            for (size_t i = 0; i < 3; ++i) {
              const size_t a = static_cast<size_t>(model.transpose_forward[i]);
              const int64_t n = volumetric::target_shape({d[a], 1, 1}, {(*sp)[a], 1, 1},
                                                         {model.spacing[i], 1, 1})[0];
              (i == 0 ? shape.z : i == 1 ? shape.y : shape.x) = n;
            }
          }
        }
        if (job.scale != 1.0 && model.spatial_dims() == 2) {  // tiled at the scaled size
          shape.y = scaled_size(shape.y, job.scale);
          shape.x = scaled_size(shape.x, job.scale);
        }
        it.tiles = estimate_tiles(shape, model, job.tile_step);
      } catch (const std::exception&) {
        it.tiles = 0;  // it fails properly when processed
      }
      items.push_back(std::move(it));
    }
  }

  // ---- devices and workers
  const std::vector<std::string> devices = resolve_devices(job.device);
  summary.manifest = job.output / manifest_name(summary.shard);
  RunManifest manifest(summary.manifest, "predict");
  nlohmann::json shard_json = {{"index", summary.shard.index},
                               {"count", summary.shard.count},
                               {"source", summary.shard.source}};
  manifest.begin_run({{"model",
                       {{"path", fs::absolute(job.model).string()},
                        {"architecture", model.architecture},
                        {"configuration", model.configuration},
                        {"folds", model.folds},
                        {"fold_sha256", model.fold_sha256},
                        {"metadata_sha256", model.hash},
                        {"in_channels", model.in_channels},
                        {"num_classes", model.num_classes},
                        {"patch_size", model.patch_size}}},
                      {"runtime", inference_runtime()},
                      {"parameters", job_parameters(job, model, post, eo, devices)},
                      {"shard", shard_json},
                      {"inputs",
                       {{"discovered", all.size()},
                        {"selected", mine.size()},
                        {"to_do", items.size()},
                        {"already_done", skipped.size()}}}});
  for (const auto& it : skipped) {
    const nlohmann::json prev = manifest.file(it.key);
    if (prev.is_object() && prev.value("status", "") == "done") {
      if (prev.value("model_hash", model.hash) != model.hash) {
        log::warn(
            "{}: outputs exist from another model (metadata SHA-256 {}); kept; pass "
            "--overwrite to redo them",
            it.key, prev.value("model_hash", std::string("?")));
      }
      continue;  // its record stays as the run that made it left it
    }
    manifest.record(it.key,
                    {{"input", it.input.path.string()},
                     {"outputs", path_list(output_list(it.outputs))},
                     {"status", "skipped"},
                     {"reason", "outputs exist (made before this manifest recorded them)"}});
  }
  summary.skipped = static_cast<int64_t>(skipped.size());
  manifest.save();

  int64_t tiles_total = 0;
  for (const auto& it : items) tiles_total += it.tiles;
  Progress progress(static_cast<int64_t>(mine.size()), tiles_total, progress_mode,
                    job.progress_interval);
  for (size_t i = 0; i < skipped.size(); ++i) progress.file_skipped(0);
  if (!skipped.empty()) {
    progress.message(
        fmt::format("{} input(s) already done (outputs exist); skipped", skipped.size()));
  }
  if (items.empty()) {
    progress.finish();
    manifest.finish_run("complete");
    return summary;
  }

  // One worker per device × workers_per_device, each with its own networks.
  struct Worker {
    std::string device;
    std::shared_ptr<engine::TileModel> model;
    std::shared_ptr<engine::TileModel> cpu_model;  // loaded on the first out-of-memory fallback
  };
  std::vector<Worker> workers;
  for (const auto& d : devices) {
    for (int w = 0; w < job.workers_per_device; ++w) workers.push_back({d, nullptr, nullptr});
  }
  const size_t n_workers = std::min(workers.size(), items.size());
  workers.resize(n_workers);
  {
    int cpu_workers = 0;
    for (const auto& w : workers) cpu_workers += w.device == "cpu";
    const int threads = static_cast<int>(
        tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism));
    if (cpu_workers > 0) set_inference_threads(std::max(1, threads / cpu_workers));
  }
  for (auto& w : workers) w.model = load_tile_model(model, w.device);
  log::info("model {} ({}, folds {}), {} worker(s) on {}", job.model.string(), model.architecture,
            fmt::format("{}", fmt::join(model.folds, ",")), workers.size(),
            fmt::format("{}", fmt::join(devices, ",")));

  Context ctx{job, model, post, eo, manifest, progress};
  StopSignals signals(job.handle_signals);
  std::atomic<size_t> next{0};
  std::atomic<int64_t> done{0}, failed{0};
  std::mutex error_mutex;
  std::string worker_error;
  auto run_worker = [&](int index) {
    Worker& w = workers[static_cast<size_t>(index)];
    try {
      for (;;) {
        if (StopSignals::requested()) {
          if (!ctx.warned_stop.exchange(true)) {
            progress.message(
                fmt::format("signal {} received: finishing the current file(s), "
                            "then stopping",
                            g_stop_signal.load()));
          }
          return;
        }
        const size_t i = next.fetch_add(1);
        if (i >= items.size()) return;
        const Item& item = items[i];
        progress.file_started(item.key);
        FileResult r = process(ctx, item, *w.model, w.device, index, [&]() -> engine::TileModel& {
          if (!w.cpu_model) w.cpu_model = load_tile_model(model, "cpu");
          return *w.cpu_model;
        });
        if (r.ok) {
          ++done;
          std::string what = r.record.contains("instances")
                                 ? fmt::format("{} instances", r.record["instances"].get<int64_t>())
                                 : std::string("classes");
          progress.message(fmt::format("done {} ({}, {:.1f} s)", item.key, what,
                                       r.record["seconds"].get<double>()));
        } else {
          ++failed;
          progress.message(
              fmt::format("FAILED {}: {}", item.key, r.record["error"].get<std::string>()));
        }
        manifest.record(item.key, std::move(r.record));
        manifest.save_if_due(std::chrono::duration<double>(job.manifest_interval));
      }
    } catch (const std::exception& e) {
      std::lock_guard lock(error_mutex);
      if (worker_error.empty()) worker_error = e.what();
    }
  };
  if (workers.size() == 1) {
    run_worker(0);
  } else {
    std::vector<std::thread> threads;
    for (size_t i = 0; i < workers.size(); ++i)
      threads.emplace_back(run_worker, static_cast<int>(i));
    for (auto& t : threads) t.join();
  }
  progress.finish();
  summary.done = done.load();
  summary.failed = failed.load();
  const size_t taken = std::min(next.load(), items.size());
  summary.not_started = static_cast<int64_t>(items.size() - taken);
  summary.interrupted = summary.not_started > 0;
  manifest.finish_run(summary.interrupted     ? "interrupted"
                      : !worker_error.empty() ? "failed"
                                              : "complete");
  if (!worker_error.empty()) fail("predict: a worker stopped: {}", worker_error);
  return summary;
}

#endif

}  // namespace umamba::pipeline
