// The tiling engine's pipeline (see predictor.h for the semantics, the streaming rule and the
// stages).
#include "engine/predictor.h"

#include <ATen/autocast_mode.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>
#include <fmt/ranges.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/parallel_pipeline.h>
#include <tbb/task_arena.h>

#if defined(UMAMBA_TORCH_HAS_CUDA)
#include <ATen/cuda/CUDAContextLight.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <optional>

#include "core/error.h"
#include "core/fault_injection.h"
#include "core/log.h"
#include "core/memory.h"
#include "engine/tile_model.h"
#include "io/image_io.h"

namespace umamba::engine {

// ---- sources --------------------------------------------------------------------------------

ImageSource::ImageSource(Image image) : image_(std::move(image)) {
  UMAMBA_CHECK(!image_.empty(), "engine: empty input image");
}

Shape ReaderSource::shape() const {
  return reader_.info().shape;
}
DType ReaderSource::dtype() const {
  return reader_.info().dtype;
}
Geometry ReaderSource::geometry() const {
  return reader_.info().geometry;
}
Image ReaderSource::read(const Box& box) {
  return reader_.read_region(box);
}

ParallelFileSource::ParallelFileSource(const std::filesystem::path& path, int readers) {
  if (readers <= 0) readers = std::min(16, tbb::this_task_arena::max_concurrency());
  for (int i = 0; i < readers; ++i) readers_.push_back(io::open_image(path));
  const auto& m = readers_[0]->info().metadata;
  const auto layout = m.find("tiff.layout");
  if (layout != m.end()) {
    long long a = 0, b = 0;
    if (std::sscanf(layout->second.c_str(), "tiles %lldx%lld", &a, &b) == 2) {
      tile_w_ = a;
      tile_h_ = b;
    } else if (std::sscanf(layout->second.c_str(), "strips of %lld rows", &b) == 1) {
      tile_h_ = b;
    }
  }
}

ParallelFileSource::~ParallelFileSource() = default;
Shape ParallelFileSource::shape() const {
  return readers_[0]->info().shape;
}
DType ParallelFileSource::dtype() const {
  return readers_[0]->info().dtype;
}
Geometry ParallelFileSource::geometry() const {
  return readers_[0]->info().geometry;
}

Image ParallelFileSource::read(const Box& box) {
  const auto n = static_cast<int64_t>(readers_.size());
  // Blocks: columns aligned to the tile width for tiled files, else rows aligned to the strips.
  const bool by_columns = tile_w_ > 0;
  const int64_t extent = by_columns ? box.dx : box.dy;
  const int64_t origin = by_columns ? box.x0 : box.y0;
  const int64_t unit = std::max<int64_t>(1, by_columns ? tile_w_ : tile_h_);
  if (n == 1 || extent < 2 * unit) return readers_[0]->read_region(box);
  // Cut points at multiples of `unit` (in image coordinates), about extent / n apart.
  std::vector<int64_t> cuts{origin};
  const int64_t target = std::max(unit, (extent + n - 1) / n);
  while (cuts.back() < origin + extent) {
    int64_t next = (cuts.back() + target + unit - 1) / unit * unit;
    cuts.push_back(std::min(next, origin + extent));
  }
  const Shape s = shape();
  Image out = Image::zeros(dtype(), Shape{s.c, box.dz, box.dy, box.dx});
  const auto blocks = static_cast<int64_t>(cuts.size()) - 1;
  // Block i goes to reader i % n; blocks of one reader run one after the other.
  tbb::parallel_for(int64_t{0}, std::min(n, blocks), [&](int64_t r) {
    for (int64_t i = r; i < blocks; i += n) {
      Box part = box;
      if (by_columns) {
        part.x0 = cuts[static_cast<size_t>(i)];
        part.dx = cuts[static_cast<size_t>(i + 1)] - part.x0;
      } else {
        part.y0 = cuts[static_cast<size_t>(i)];
        part.dy = cuts[static_cast<size_t>(i + 1)] - part.y0;
      }
      const Image piece = readers_[static_cast<size_t>(r)]->read_region(part);
      out.region(
             Box{part.z0 - box.z0, part.y0 - box.y0, part.x0 - box.x0, part.dz, part.dy, part.dx})
          .copy_from(piece);
    }
  });
  return out;
}

Precision precision_from_name(const std::string& name) {
  if (name == "fp32" || name == "f32" || name == "float32") return Precision::F32;
  if (name == "fp16" || name == "f16" || name == "float16" || name == "half") return Precision::F16;
  if (name == "bf16" || name == "bfloat16") return Precision::BF16;
  fail("engine: unknown precision '{}' (expected fp32, fp16 or bf16)", name);
}

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ---- layout: tiles and lines ------------------------------------------------------------------

// The padded image as a sequence of lines (see predictor.h). A line holds R rows of W columns per
// channel; a tile covers NL consecutive lines, NR rows and NC columns of each.
struct Layout {
  int dims = 2;
  TileGrid grid;
  Shape orig;  // [C, Z, Y, X] of the input
  int64_t C = 1, K = 1;
  int64_t lines = 0, R = 1, W = 1;
  int64_t NL = 1, NR = 1, NC = 1;

  struct Place {
    int64_t line, row, col;
  };
  Place place(int64_t tile) const {
    const auto s = grid.start(tile);
    if (dims == 3) return {s[0], s[1], s[2]};
    return {s[0] * grid.image[1] + s[1], 0, s[2]};
  }
  int64_t tile_elements() const { return NL * NR * NC; }
  int64_t line_pixels() const { return R * W; }
};

Layout make_layout(const Shape& shape, const TileModel& model, const EngineOptions& options) {
  Layout L;
  const std::vector<int64_t> patch = model.patch_size();
  L.dims = static_cast<int>(patch.size());
  L.orig = shape;
  L.C = shape.c;
  L.K = model.num_classes();
  UMAMBA_CHECK(L.C == model.in_channels(),
               "engine: the image has {} channels, the model expects {}", L.C, model.in_channels());
  const std::array<int64_t, 3> p3 = L.dims == 3
                                        ? std::array<int64_t, 3>{patch[0], patch[1], patch[2]}
                                        : std::array<int64_t, 3>{1, patch[0], patch[1]};
  L.grid = make_tile_grid({shape.z, shape.y, shape.x}, p3, L.dims, options.tile_step);
  if (L.dims == 3) {
    L.lines = L.grid.image[0];
    L.R = L.grid.image[1];
    L.W = L.grid.image[2];
    L.NL = p3[0];
    L.NR = p3[1];
    L.NC = p3[2];
  } else {
    L.lines = L.grid.image[0] * L.grid.image[1];
    L.R = 1;
    L.W = L.grid.image[2];
    L.NL = p3[1];
    L.NR = 1;
    L.NC = p3[2];
  }
  return L;
}

// ---- line buffers -----------------------------------------------------------------------------

// Recycles float buffers of one size, so streaming does not hand pages back and forth to the OS.
class BufferPool {
 public:
  explicit BufferPool(size_t size) : size_(size) {}
  std::unique_ptr<float[]> get(bool zero) {
    std::unique_ptr<float[]> b;
    {
      std::lock_guard lock(mutex_);
      if (!free_.empty()) {
        b = std::move(free_.back());
        free_.pop_back();
      }
    }
    if (!b) b.reset(new float[size_]);
    if (zero) std::fill_n(b.get(), size_, 0.0f);
    return b;
  }
  void put(std::unique_ptr<float[]> b) {
    if (!b) return;
    std::lock_guard lock(mutex_);
    free_.push_back(std::move(b));
  }
  size_t size() const { return size_; }

 private:
  size_t size_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<float[]>> free_;
};

struct AccLine {
  int64_t index = 0;
  std::unique_ptr<float[]> acc;  // [K][R][W] sum of weight * logits
};

struct Batch {
  int64_t first_tile = 0, count = 0;
  torch::Tensor input;          // [n, C, spatial...] f32, host (pinned for CUDA)
  torch::Tensor output;         // [n, K, spatial...] f32, host
  torch::Tensor device_output;  // keeps the device result alive until the copy completes
#if defined(UMAMBA_TORCH_HAS_CUDA)
  std::shared_ptr<at::cuda::CUDAEvent> started, done;
#endif
};
using BatchPtr = std::shared_ptr<Batch>;

struct Finished {
  std::vector<Band> bands;  // in image order
  bool last = false;
};
using FinishedPtr = std::shared_ptr<Finished>;

// Autocast for the model stage; autocast state is thread-local, so it is set on the thread that
// runs each call.
class AutocastScope {
 public:
  AutocastScope(Precision p, c10::DeviceType device) : device_(device) {
    if (p == Precision::F32) return;
    enabled_ = true;
    previous_ = at::autocast::is_autocast_enabled(device_);
    previous_dtype_ = at::autocast::get_autocast_dtype(device_);
    at::autocast::set_autocast_enabled(device_, true);
    at::autocast::set_autocast_dtype(device_, p == Precision::F16 ? at::kHalf : at::kBFloat16);
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (!enabled_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(device_, previous_);
    at::autocast::set_autocast_dtype(device_, previous_dtype_);
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  c10::DeviceType device_;
  bool enabled_ = false, previous_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
};

// All non-empty combinations of the mirror axes, shortest first, each in lexicographic order
// (Python's itertools.combinations as nnU-Net enumerates them), as tensor dims (axis + 2).
std::vector<std::vector<int64_t>> mirror_combinations(const std::vector<int>& axes) {
  std::vector<std::vector<int64_t>> out;
  const int n = static_cast<int>(axes.size());
  for (int r = 1; r <= n; ++r) {
    std::vector<int> idx(static_cast<size_t>(r));
    for (int i = 0; i < r; ++i) idx[static_cast<size_t>(i)] = i;
    while (true) {
      std::vector<int64_t> dims;
      for (int i : idx) dims.push_back(axes[static_cast<size_t>(i)] + 2);
      out.push_back(dims);
      int i = r - 1;
      while (i >= 0 && idx[static_cast<size_t>(i)] == n - r + i) --i;
      if (i < 0) break;
      ++idx[static_cast<size_t>(i)];
      for (int j = i + 1; j < r; ++j)
        idx[static_cast<size_t>(j)] = idx[static_cast<size_t>(j - 1)] + 1;
    }
  }
  return out;
}

void validate_options(const EngineOptions& o, const Layout& L) {
  UMAMBA_CHECK(o.tile_step > 0.0 && o.tile_step <= 1.0, "engine: tile step {} must be in (0, 1]",
               o.tile_step);
  UMAMBA_CHECK(o.batch_size >= 1, "engine: batch size {} must be at least 1", o.batch_size);
  UMAMBA_CHECK(o.max_batches_in_flight >= 1, "engine: batches in flight {} must be at least 1",
               o.max_batches_in_flight);
  UMAMBA_CHECK(o.outputs != 0 && (o.outputs & ~7u) == 0,
               "engine: outputs must name classes, probabilities and/or logits");
  for (int a : o.mirror_axes) {
    UMAMBA_CHECK(a >= 0 && a < L.dims, "engine: mirror axis {} outside the model's {} axes", a,
                 L.dims);
  }
  for (size_t i = 0; i < o.mirror_axes.size(); ++i) {
    for (size_t j = i + 1; j < o.mirror_axes.size(); ++j) {
      UMAMBA_CHECK(o.mirror_axes[i] != o.mirror_axes[j], "engine: mirror axis {} given twice",
                   o.mirror_axes[i]);
    }
  }
  UMAMBA_CHECK(o.edge_margin >= 0, "engine: edge margin {} must not be negative", o.edge_margin);
  if (o.edge_margin > 0) {
    for (int a = (L.dims == 2 ? 1 : 0); a < 3; ++a) {
      const int64_t p = L.grid.patch[a];
      // Every voxel must lie deeper than the margin in at least one tile: the largest gap between
      // consecutive tile starts is at most step * patch, so the best tile leaves
      // (p - gap) / 2 voxels of context on either side.
      int64_t gap = 0;
      const auto& s = L.grid.steps[a];
      for (size_t i = 1; i < s.size(); ++i) gap = std::max(gap, s[i] - s[i - 1]);
      UMAMBA_CHECK(2 * o.edge_margin < p - gap,
                   "engine: edge margin {} too wide for patch {} and tile step {} on axis {} "
                   "(largest gap between tiles {}); use at most {}",
                   o.edge_margin, p, o.tile_step, a, gap, std::max<int64_t>(0, (p - gap - 1) / 2));
    }
  }
}

// The engine's buffer memory (see predict_memory_bytes in predictor.h): the input window and the
// accumulator hold the lines of the tiles in flight plus one patch, the batches in flight hold
// their input tiles and (mirroring included) two logit tensors on the host. An estimate from
// above for the window, exact for the batches; computed in floating point so that a crafted
// shape cannot overflow it.
double engine_buffer_bytes(const Layout& L, const EngineOptions& o) {
  const int line_axis = L.dims == 3 ? 0 : 1;
  const double starts = static_cast<double>(L.grid.steps[line_axis].size()) *
                        (L.dims == 2 ? static_cast<double>(L.grid.steps[0].size()) : 1.0);
  const double per_start = std::max(1.0, static_cast<double>(L.grid.count()) / starts);
  int64_t gap = 1;
  const auto& st = L.grid.steps[line_axis];
  for (size_t i = 1; i < st.size(); ++i) gap = std::max(gap, st[i] - st[i - 1]);
  const double window_tiles =
      static_cast<double>(o.batch_size) * static_cast<double>(o.max_batches_in_flight);
  const double spans = std::min(starts, std::ceil(window_tiles / per_start) + 2.0);
  const double lines =
      std::min(static_cast<double>(L.lines), spans * static_cast<double>(gap) + L.NL);
  const double line_bytes = static_cast<double>(L.line_pixels()) * 4.0;
  const double tile_bytes = static_cast<double>(L.tile_elements()) * 4.0;
  double tables = 0;  // tile starts and per-coordinate cover ranges
  for (int a = 0; a < 3; ++a) {
    tables += static_cast<double>(L.grid.steps[a].size()) * 8.0 +
              static_cast<double>(L.grid.image[a]) * 8.0;
  }
  return lines * line_bytes * static_cast<double>(L.C + L.K) +
         window_tiles * tile_bytes * static_cast<double>(L.C + 2 * L.K) + tables;
}

// Before the tile grid exists: the grid's own tables (tile starts and, per padded coordinate, the
// tiles covering it) and one padded line of the input and the accumulator, from the declared
// shape alone, so that a crafted header cannot make make_tile_grid allocate without bound; and
// the tile count, which must stay far inside int64.
void check_geometry_limits(const Shape& s, const TileModel& model, const EngineOptions& o) {
  const std::vector<int64_t> patch = model.patch_size();
  const bool is3d = patch.size() == 3;
  const double sizes[3] = {static_cast<double>(s.z), static_cast<double>(s.y),
                           static_cast<double>(s.x)};
  double tiles = 1, table_bytes = 0, padded[3] = {1, 1, 1};
  for (int a = 0; a < 3; ++a) {
    const double p = a == 0 ? (is3d ? static_cast<double>(patch[0]) : 1.0)
                            : static_cast<double>(patch[is3d ? a : a - 1]);
    padded[a] = std::max(sizes[a], p);
    const double steps = (a == 0 && !is3d)
                             ? sizes[0]
                             : std::ceil((padded[a] - p) / std::max(1.0, p * o.tile_step)) + 1;
    tiles *= steps;
    table_bytes += steps * 8.0 + padded[a] * 8.0;
  }
  if (tiles > 1e15) {
    throw Unsupported(fmt::format(
        "engine: an image of {} would need about {:.3g} tiles; the engine handles at most 1e15",
        to_string(s), tiles));
  }
  const double line = (is3d ? padded[1] * padded[2] : padded[2]) * 4.0 *
                      static_cast<double>(s.c + model.num_classes());
  const double bytes = table_bytes + line;
  const size_t limit = allocation_limit();
  if (bytes > static_cast<double>(limit)) {
    throw Unsupported(fmt::format(
        "engine: an image of {} needs about {:.3g} GB for the tile tables and one line of "
        "buffers, above the allocation limit of {:.3g} GB (UMAMBA_MAX_ALLOC_BYTES)",
        to_string(s), bytes / 1e9, static_cast<double>(limit) / 1e9));
  }
}

void check_engine_memory(const Layout& L, const EngineOptions& o) {
  const double bytes = engine_buffer_bytes(L, o);
  const size_t limit = allocation_limit();
  if (bytes > static_cast<double>(limit)) {
    throw Unsupported(fmt::format(
        "engine: predicting an image of {} needs about {:.3g} GB of buffers (input window, "
        "accumulator of {} classes, {} batches of {} tiles in flight), above the allocation limit "
        "of {:.3g} GB (UMAMBA_MAX_ALLOC_BYTES); lower --batch-size or raise the limit",
        to_string(L.orig), bytes / 1e9, L.K, o.max_batches_in_flight, o.batch_size,
        static_cast<double>(limit) / 1e9));
  }
}

// ---- the engine ------------------------------------------------------------------------------

#if defined(UMAMBA_TORCH_HAS_CUDA)
// Device memory across runs. cuBLAS (the Mamba layers' linear maps) keeps one workspace (32 MiB on
// Hopper) per pair of calling thread's handle and stream for the life of the process, allocated
// through the caching allocator. The model stage runs on whichever TBB thread is free; with a
// fresh pool stream per run, every file or validation added workspaces: a training run's
// per-epoch peak grew by about 32 MiB per validation case (12 GB after 30 epochs) and a
// 1,000-file predict held 19.8 GB. So every run on a device uses one stream, and the workspaces
// are released when the last concurrent run on any device ends.
c10::cuda::CUDAStream engine_stream(c10::DeviceIndex index) {
  static std::mutex mutex;
  static std::map<c10::DeviceIndex, c10::cuda::CUDAStream> streams;
  const std::lock_guard<std::mutex> lock(mutex);
  auto it = streams.find(index);
  if (it == streams.end())
    it =
        streams.emplace(index, c10::cuda::getStreamFromPool(/*isHighPriority=*/false, index)).first;
  return it->second;
}

class CudaRunScope {
 public:
  CudaRunScope() { ++active(); }
  ~CudaRunScope() {
    if (--active() == 0) at::cuda::clearCublasWorkspaces();
  }
  CudaRunScope(const CudaRunScope&) = delete;
  CudaRunScope& operator=(const CudaRunScope&) = delete;

 private:
  static std::atomic<int>& active() {
    static std::atomic<int> n{0};
    return n;
  }
};
#endif

class Engine {
 public:
  Engine(RegionSource& source, TileModel& model, const Normalization& normalization,
         const EngineOptions& options, const BandCallback& on_band)
      : source_(source),
        model_(model),
        options_(options),
        on_band_(on_band),
        L_(make_layout(source.shape(), model, options)),
        in_pool_(static_cast<size_t>(L_.C * L_.line_pixels())),
        acc_pool_(static_cast<size_t>(L_.K * L_.line_pixels())),
        combos_(mirror_combinations(options.mirror_axes)) {
    validate_options(options_, L_);
    UMAMBA_CHECK(L_.K <= 65536, "engine: {} classes do not fit a u16 class map", L_.K);
    check_engine_memory(L_, options_);
    tiles_per_call_ = options_.batch_size;
    device_ = model_.device();
    stats_.device = device_.str();
#if !defined(UMAMBA_TORCH_HAS_CUDA)
    UMAMBA_CHECK(!device_.is_cuda(), "engine: this LibTorch has no CUDA; use the CPU");
#endif
    // Gaussian (or flat) weights of a tile, [NL][NR][NC] in the tile's element order.
    if (options_.use_gaussian) {
      weights_ = gaussian_importance_map(L_.grid.patch, options_.gaussian);
    } else {
      weights_.assign(static_cast<size_t>(L_.tile_elements()), 1.0f);
    }
    // For every padded coordinate of every axis, the range of tile positions that cover it.
    for (int a = 0; a < 3; ++a) {
      const auto& st = L_.grid.steps[a];
      cover_[a].resize(static_cast<size_t>(L_.grid.image[a]));
      size_t lo = 0, hi = 0;
      for (int64_t c = 0; c < L_.grid.image[a]; ++c) {
        while (hi < st.size() && st[hi] <= c) ++hi;
        while (lo < hi && st[lo] + L_.grid.patch[a] <= c) ++lo;
        cover_[a][static_cast<size_t>(c)] = {static_cast<int32_t>(lo), static_cast<int32_t>(hi)};
      }
    }
    // Per-image statistics (z-score, rescale) need a pass over the whole image first.
    const auto t0 = Clock::now();
    std::vector<ChannelStats> image_stats;
    if (Normalizer::needs_image_stats(normalization, L_.C)) {
      image_stats = compute_image_stats(normalization);
    }
    stats_.stats_s = seconds_since(t0);
    stats_.image_stats = image_stats;
    normalizer_.emplace(normalization, L_.C, image_stats);
  }

  EngineStats run() {
    const auto t0 = Clock::now();
    const int64_t tiles = L_.grid.count();
    stats_.tiles = tiles;
    stats_.line_pixels = L_.line_pixels();
#if defined(UMAMBA_TORCH_HAS_CUDA)
    std::optional<c10::cuda::CUDAStream> stream;
    std::optional<CudaRunScope> cuda_run;
    if (device_.is_cuda()) {
      stream.emplace(engine_stream(device_.index()));
      cuda_run.emplace();
    }
#endif
    int64_t next_tile = 0;
    tbb::parallel_pipeline(
        static_cast<size_t>(options_.max_batches_in_flight),
        tbb::make_filter<void, BatchPtr>(tbb::filter_mode::serial_in_order,
                                         [&](tbb::flow_control& fc) -> BatchPtr {
                                           if (next_tile >= tiles) {
                                             fc.stop();
                                             return nullptr;
                                           }
                                           auto b = std::make_shared<Batch>();
                                           b->first_tile = next_tile;
                                           b->count =
                                               std::min(options_.batch_size, tiles - next_tile);
                                           next_tile += b->count;
                                           prepare(*b);
                                           return b;
                                         }) &
            tbb::make_filter<BatchPtr, BatchPtr>(tbb::filter_mode::serial_in_order,
                                                 [&](BatchPtr b) -> BatchPtr {
#if defined(UMAMBA_TORCH_HAS_CUDA)
                                                   if (stream) {
                                                     c10::cuda::CUDAStreamGuard g(*stream);
                                                     infer(*b, &*stream);
                                                     return b;
                                                   }
#endif
                                                   infer(*b, nullptr);
                                                   return b;
                                                 }) &
            tbb::make_filter<BatchPtr, FinishedPtr>(tbb::filter_mode::serial_in_order,
                                                    [&](BatchPtr b) { return accumulate(*b); }) &
            tbb::make_filter<FinishedPtr, void>(tbb::filter_mode::serial_in_order,
                                                [&](FinishedPtr f) {
                                                  if (f) emit(*f);
                                                }));
    UMAMBA_CHECK(acc_.empty() && emitted_all_,
                 "engine: internal error, {} accumulator lines left after the last tile",
                 acc_.size());
    stats_.wall_s = seconds_since(t0) + stats_.stats_s;
    stats_.tiles_per_call = tiles_per_call_;
    return stats_;
  }

 private:
  // ---- statistics pre-pass
  std::vector<ChannelStats> compute_image_stats(const Normalization& normalization) {
    StatsAccumulator acc(L_.C, Normalizer::needs_masked_stats(normalization, L_.C));
    const Shape s = L_.orig;
    // Bands of about 16 M voxels per channel, whole rows.
    const int64_t rows = std::max<int64_t>(1, (int64_t{1} << 24) / std::max<int64_t>(1, s.x));
    for (int64_t z = 0; z < s.z; ++z) {
      for (int64_t y = 0; y < s.y; y += rows) {
        const int64_t dy = std::min(rows, s.y - y);
        acc.add(source_.read(Box{z, y, 0, 1, dy, s.x}));
      }
    }
    if (Normalizer::needs_masked_stats(normalization, L_.C)) {
      // Channels without the mask rule still use every voxel: a second, unmasked pass.
      StatsAccumulator all(L_.C, false);
      bool need_all = false;
      for (int64_t c = 0; c < L_.C; ++c) {
        need_all = need_all || !normalization.channel(c).use_mask_for_norm;
      }
      auto masked = acc.finish();
      if (need_all) {
        for (int64_t z = 0; z < s.z; ++z) {
          for (int64_t y = 0; y < s.y; y += rows) {
            all.add(source_.read(Box{z, y, 0, 1, std::min(rows, s.y - y), s.x}));
          }
        }
        auto plain = all.finish();
        for (int64_t c = 0; c < L_.C; ++c) {
          if (!normalization.channel(c).use_mask_for_norm) {
            masked[static_cast<size_t>(c)] = plain[static_cast<size_t>(c)];
          }
        }
      }
      return masked;
    }
    return acc.finish();
  }

  // ---- stage 1: input window and tiles
  float* in_line(int64_t line) {
    return in_[static_cast<size_t>(line - in_first_)].get();
  }

  // Reads and normalises lines [from, to) (padded coordinates) into the window's buffers.
  void load_lines(int64_t from, int64_t to) {
    const auto& pad = L_.grid.padding;
    const Shape& s = L_.orig;
    // Maps a padded line to (z, y) of the original image, or nullopt for padding.
    auto origin = [&](int64_t line) -> std::optional<std::pair<int64_t, int64_t>> {
      if (L_.dims == 3) {
        const int64_t z = line - pad[0].below;
        if (z < 0 || z >= s.z) return std::nullopt;
        return std::pair<int64_t, int64_t>{z, 0};
      }
      const int64_t z = line / L_.grid.image[1];
      const int64_t y = line % L_.grid.image[1] - pad[1].below;
      if (y < 0 || y >= s.y) return std::nullopt;
      return std::pair<int64_t, int64_t>{z, y};
    };
    int64_t line = from;
    while (line < to) {
      const auto o = origin(line);
      if (!o) {
        in_.push_back(in_pool_.get(/*zero=*/true));
        ++line;
        continue;
      }
      // A run of lines that is one box of the original image.
      int64_t end = line + 1;
      while (end < to) {
        const auto e = origin(end);
        if (!e) break;
        if (L_.dims == 2 && e->first != o->first) break;
        ++end;
      }
      const int64_t n = end - line;
      const Box box =
          L_.dims == 3 ? Box{o->first, 0, 0, n, s.y, s.x} : Box{o->first, o->second, 0, 1, n, s.x};
      auto t0 = Clock::now();
      const Image region = source_.read(box);
      stats_.read_s += seconds_since(t0);
      UMAMBA_CHECK(region.shape() == (Shape{s.c, box.dz, box.dy, box.dx}),
                   "engine: the source returned a region of {} for a request of {}",
                   to_string(region.shape()), to_string(Shape{s.c, box.dz, box.dy, box.dx}));
      t0 = Clock::now();
      const size_t first = in_.size();
      for (int64_t i = 0; i < n; ++i) in_.push_back(in_pool_.get(/*zero=*/true));
      tbb::parallel_for(int64_t{0}, n, [&](int64_t i) {
        float* dst = in_[first + static_cast<size_t>(i)].get();
        const int64_t px = pad[2].below;
        if (L_.dims == 3) {
          const Image plane = region.region(Box{i, 0, 0, 1, s.y, s.x});
          normalizer_->apply(plane, dst + pad[1].below * L_.W + px, L_.line_pixels(), 0, L_.W);
        } else {
          const Image row = region.region(Box{0, i, 0, 1, 1, s.x});
          normalizer_->apply(row, dst + px, L_.line_pixels(), 0, 0);
        }
      });
      stats_.preprocess_s += seconds_since(t0);
      line = end;
    }
  }

  void prepare(Batch& b) {
    const auto first = L_.place(b.first_tile);
    const auto last = L_.place(b.first_tile + b.count - 1);
    const int64_t need_from = first.line, need_to = last.line + L_.NL;
    // Drop lines no later tile needs (tiles start at ascending lines).
    while (!in_.empty() && in_first_ < need_from) {
      in_pool_.put(std::move(in_.front()));
      in_.pop_front();
      ++in_first_;
    }
    if (in_.empty()) in_first_ = need_from;
    const int64_t have_to = in_first_ + static_cast<int64_t>(in_.size());
    if (have_to < need_to) load_lines(std::max(have_to, need_from), need_to);
    stats_.peak_input_lines = std::max(stats_.peak_input_lines, static_cast<int64_t>(in_.size()));

    const auto t0 = Clock::now();
    std::vector<int64_t> sizes{b.count, L_.C};
    for (int64_t p : model_.patch_size()) sizes.push_back(p);
    auto opts = torch::TensorOptions().dtype(torch::kFloat32);
    if (device_.is_cuda()) opts = opts.pinned_memory(true);
    b.input = torch::empty(sizes, opts);
    float* dst = b.input.data_ptr<float>();
    const int64_t te = L_.tile_elements();
    const int64_t units = b.count * L_.C * L_.NL;
    tbb::parallel_for(int64_t{0}, units, [&](int64_t u) {
      const int64_t li = u % L_.NL;
      const int64_t c = (u / L_.NL) % L_.C;
      const int64_t i = u / (L_.NL * L_.C);
      const auto pl = L_.place(b.first_tile + i);
      const float* src = in_line(pl.line + li) + c * L_.line_pixels();
      float* out = dst + (i * L_.C + c) * te + li * L_.NR * L_.NC;
      for (int64_t r = 0; r < L_.NR; ++r) {
        std::copy_n(src + (pl.row + r) * L_.W + pl.col, L_.NC, out + r * L_.NC);
      }
    });
    stats_.preprocess_s += seconds_since(t0);
  }

  // ---- stage 2: the model
  torch::Tensor run_model(const torch::Tensor& x) {
    auto checked = [&](torch::Tensor y) {
      UMAMBA_CHECK(y.dim() == x.dim() && y.size(0) == x.size(0) && y.size(1) == L_.K &&
                       std::equal(y.sizes().begin() + 2, y.sizes().end(), x.sizes().begin() + 2),
                   "engine: the model returned {} for a batch of {}; expected [N, {}, spatial] at "
                   "the input's resolution",
                   c10::str(y.sizes()), c10::str(x.sizes()), L_.K);
      ++stats_.model_calls;
      return y.to(torch::kFloat32);
    };
    torch::Tensor pred = checked(model_.forward(x));
    for (const auto& dims : combos_) {
      pred += checked(model_.forward(x.flip(dims))).flip(dims);
    }
    if (!combos_.empty()) pred /= static_cast<double>(combos_.size() + 1);
    return pred;
  }

  // One model call attempt on `host` tiles: the copy to the device and the model's own
  // allocations are where an out-of-memory shows, and where the test hook injects one
  // (core/fault_injection.h, kind "alloc").
  torch::Tensor call_model(const torch::Tensor& host, bool non_blocking) {
    if (fault::should_fail(fault::Kind::Alloc)) {
      TORCH_CHECK_WITH(OutOfMemoryError, false,
                       "injected fault (UMAMBA_FAULT_INJECT alloc): out of memory on ",
                       device_.str());
    }
    return run_model(host.to(device_, non_blocking));
  }

  // After a model call of `tried` tiles ran out of memory: halve the tiles per call, or give up
  // at one tile.
  void reduce_after_oom(int64_t tried, const c10::OutOfMemoryError& e) {
    ++stats_.oom_retries;
#if defined(UMAMBA_TORCH_HAS_CUDA)
    if (device_.is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
    std::string reason = e.what_without_backtrace();
    if (const size_t nl = reason.find('\n'); nl != std::string::npos) reason.resize(nl);
    if (tried <= 1) {
      throw DeviceOutOfMemory(fmt::format(
          "engine: out of memory on {} even with one tile per model call (patch {}, {} "
          "channel(s), {} pass(es) per tile): {}",
          device_.str(), fmt::join(model_.patch_size(), "x"), L_.C, combos_.size() + 1, reason));
    }
    tiles_per_call_ = std::max<int64_t>(1, tried / 2);
    log::warn("engine: out of memory on {} with {} tile(s) per model call; retrying with {}",
              device_.str(), tried, tiles_per_call_);
  }

  void infer(Batch& b, [[maybe_unused]] void* stream_ptr) {
    c10::InferenceMode guard;
    const auto t0 = Clock::now();
    AutocastScope autocast(options_.precision, device_.type());
    if (tiles_per_call_ >= b.count) {
      try {
#if defined(UMAMBA_TORCH_HAS_CUDA)
        if (stream_ptr) {
          auto& stream = *static_cast<c10::cuda::CUDAStream*>(stream_ptr);
          b.started = std::make_shared<at::cuda::CUDAEvent>(cudaEventDefault);
          b.done = std::make_shared<at::cuda::CUDAEvent>(cudaEventDefault);
          b.started->record(stream);
          b.device_output = call_model(b.input, /*non_blocking=*/true).contiguous();
          b.output =
              torch::empty(b.device_output.sizes(),
                           torch::TensorOptions().dtype(torch::kFloat32).pinned_memory(true));
          b.output.copy_(b.device_output, /*non_blocking=*/true);
          b.done->record(stream);
          stats_.infer_s += seconds_since(t0);
          return;
        }
#endif
        b.output = call_model(b.input, /*non_blocking=*/false).to(torch::kCPU).contiguous();
        stats_.infer_s += seconds_since(t0);
        return;
      } catch (const c10::OutOfMemoryError& e) {
        b.output = torch::Tensor();
        b.device_output = torch::Tensor();
#if defined(UMAMBA_TORCH_HAS_CUDA)
        b.started.reset();
        b.done.reset();
#endif
        reduce_after_oom(b.count, e);
      }
    }
    // Fewer tiles per call: part by part, each copied back before the next one starts.
    std::vector<torch::Tensor> parts;
    int64_t from = 0;
    while (from < b.count) {
      const int64_t n = std::min(tiles_per_call_, b.count - from);
      try {
        parts.push_back(call_model(b.input.narrow(0, from, n), /*non_blocking=*/false)
                            .to(torch::kCPU)
                            .contiguous());
        from += n;
      } catch (const c10::OutOfMemoryError& e) {
        reduce_after_oom(n, e);
      }
    }
    b.output = parts.size() == 1 ? parts.front() : torch::cat(parts).contiguous();
    stats_.infer_s += seconds_since(t0);
  }

  // ---- stage 3: accumulation
  AccLine& acc_line(int64_t line) {
    return acc_[static_cast<size_t>(line - acc_first_)];
  }

  FinishedPtr accumulate(Batch& b) {
    const auto t0 = Clock::now();
#if defined(UMAMBA_TORCH_HAS_CUDA)
    if (b.done) {
      b.done->synchronize();
      stats_.device_s += b.started->elapsed_time(*b.done) / 1000.0;
      b.device_output = torch::Tensor();
    }
#endif
    b.input = torch::Tensor();  // the host copy is no longer needed
    const float* out = b.output.data_ptr<float>();
    const int64_t te = L_.tile_elements();
    const auto last = L_.place(b.first_tile + b.count - 1);
    if (acc_.empty()) acc_first_ = L_.place(b.first_tile).line;
    while (acc_first_ + static_cast<int64_t>(acc_.size()) < last.line + L_.NL) {
      AccLine a;
      a.index = acc_first_ + static_cast<int64_t>(acc_.size());
      a.acc = acc_pool_.get(/*zero=*/true);
      acc_.push_back(std::move(a));
    }
    stats_.peak_accumulator_lines =
        std::max(stats_.peak_accumulator_lines, static_cast<int64_t>(acc_.size()));
    const int64_t margin = options_.edge_margin;
    for (int64_t i = 0; i < b.count; ++i) {
      const int64_t tile = b.first_tile + i;
      const auto pl = L_.place(tile);
      const auto start = L_.grid.start(tile);
      // Valid ranges in tile coordinates (edge margin: only edges inside the padded image).
      auto range = [&](int axis, int64_t extent) -> std::pair<int64_t, int64_t> {
        if (margin == 0 || (axis == 0 && L_.dims == 2)) return {0, extent};
        const int64_t lo = start[axis] > 0 ? margin : 0;
        const int64_t hi = start[axis] + extent < L_.grid.image[axis] ? extent - margin : extent;
        return {lo, hi};
      };
      const auto [l_lo, l_hi] = range(L_.dims == 3 ? 0 : 1, L_.NL);
      const auto [r_lo, r_hi] = L_.dims == 3 ? range(1, L_.NR) : std::pair<int64_t, int64_t>{0, 1};
      const auto [c_lo, c_hi] = range(2, L_.NC);
      const float* tile_out = out + i * L_.K * te;
      tbb::parallel_for(l_lo, l_hi, [&](int64_t li) {
        AccLine& a = acc_line(pl.line + li);
        for (int64_t r = r_lo; r < r_hi; ++r) {
          const int64_t t_off = (li * L_.NR + r) * L_.NC;
          const int64_t a_off = (pl.row + r) * L_.W + pl.col;
          const float* g = weights_.data() + t_off;
          for (int64_t k = 0; k < L_.K; ++k) {
            const float* src = tile_out + k * te + t_off;
            float* dst = a.acc.get() + k * L_.line_pixels() + a_off;
            for (int64_t c = c_lo; c < c_hi; ++c) dst[c] += src[c] * g[c];
          }
        }
      });
    }
    b.output = torch::Tensor();
    ++stats_.batches;
    stats_.accumulate_s += seconds_since(t0);
    // Lines before the next tile's first line are final: finish them here, so their accumulator
    // memory is released before the next batch arrives.
    const int64_t next = b.first_tile + b.count;
    const int64_t done_to = next < L_.grid.count() ? L_.place(next).line : L_.lines;
    FinishedPtr f;
    if (!acc_.empty() && acc_first_ < done_to) {
      std::vector<AccLine> lines;
      while (!acc_.empty() && acc_first_ < done_to) {
        lines.push_back(std::move(acc_.front()));
        acc_.pop_front();
        ++acc_first_;
      }
      f = std::make_shared<Finished>();
      f->bands = finish(lines);
    }
    if (next >= L_.grid.count()) {
      UMAMBA_CHECK(acc_.empty(), "engine: internal error, lines left after the last tile");
      if (!f) f = std::make_shared<Finished>();
      f->last = true;
    }
    return f;
  }

  // ---- stage 4: the band callback
  void emit(Finished& f) {
    for (const Band& band : f.bands) {
      const auto t1 = Clock::now();
      on_band_(band);
      stats_.callback_s += seconds_since(t1);
      ++stats_.bands;
      if (band.last) emitted_all_ = true;
    }
    if (f.last) {
      UMAMBA_CHECK(emitted_all_, "engine: internal error, the last band was not emitted");
    }
  }

  // ---- finishing lines into bands (in stage 3)
  std::vector<Band> finish(std::vector<AccLine>& lines) {
    std::vector<Band> bands;
    const auto& pad = L_.grid.padding;
    const Shape& s = L_.orig;
    // Split the finished lines into bands: runs of lines inside the original image and, for 2D
    // models, inside one slice.
    struct Run {
      size_t first, count;
      int64_t z, y;
    };
    std::vector<Run> runs;
    for (size_t i = 0; i < lines.size(); ++i) {
      const int64_t line = lines[i].index;
      int64_t z, y;
      if (L_.dims == 3) {
        z = line - pad[0].below;
        y = 0;
        if (z < 0 || z >= s.z) continue;
      } else {
        z = line / L_.grid.image[1];
        y = line % L_.grid.image[1] - pad[1].below;
        if (y < 0 || y >= s.y) continue;
      }
      if (!runs.empty()) {
        Run& r = runs.back();
        const bool follows = r.first + r.count == i &&
                             (L_.dims == 3 ? z == r.z + static_cast<int64_t>(r.count)
                                           : z == r.z && y == r.y + static_cast<int64_t>(r.count));
        if (follows) {
          ++r.count;
          continue;
        }
      }
      runs.push_back({i, 1, z, y});
    }
    for (const Run& r : runs) {
      const auto t0 = Clock::now();
      Band band;
      const auto n = static_cast<int64_t>(r.count);
      if (L_.dims == 3) {
        band.z0 = r.z;
        band.dz = n;
        band.y0 = 0;
        band.dy = s.y;
        band.last = r.z + n == s.z;
      } else {
        band.z0 = r.z;
        band.dz = 1;
        band.y0 = r.y;
        band.dy = n;
        band.last = r.z == s.z - 1 && r.y + n == s.y;
      }
      const Shape one{1, band.dz, band.dy, s.x}, all{L_.K, band.dz, band.dy, s.x};
      if (options_.outputs & kClasses) {
        band.classes = Image::zeros(L_.K <= 256 ? DType::U8 : DType::U16, one);
      }
      if (options_.outputs & kProbabilities) band.probabilities = Image::zeros(DType::F32, all);
      if (options_.outputs & kLogits) band.logits = Image::zeros(DType::F32, all);
      // Rows of the band: (line, row within line); for 2D lines that is one row each.
      const int64_t rows_per_line = L_.dims == 3 ? s.y : 1;
      tbb::parallel_for(int64_t{0}, n * rows_per_line, [&](int64_t u) {
        const int64_t li = u / rows_per_line;
        const int64_t yr = u % rows_per_line;
        const AccLine& a = lines[r.first + static_cast<size_t>(li)];
        const int64_t row_in_line = L_.dims == 3 ? yr + pad[1].below : 0;
        // Padded (z, y) of the row, for its weights.
        const int64_t cz = L_.dims == 3 ? a.index : a.index / L_.grid.image[1];
        const int64_t cy = L_.dims == 3 ? row_in_line : a.index % L_.grid.image[1];
        // Output position: z index within band, y within band.
        const int64_t bz = L_.dims == 3 ? li : 0;
        const int64_t by = L_.dims == 3 ? yr : li;
        finish_row(a, row_in_line * L_.W + pad[2].below, cz, cy, band, bz, by);
      });
      stats_.finish_s += seconds_since(t0);
      bands.push_back(std::move(band));
    }
    for (AccLine& a : lines) acc_pool_.put(std::move(a.acc));
    return bands;
  }

  // Is offset `o` of tile position `i` on `axis` weighted (edge margin)?
  bool weighted(int axis, size_t i, int64_t o) const {
    const int64_t m = options_.edge_margin;
    if (m == 0 || (axis == 0 && L_.dims == 2)) return true;
    const int64_t start = L_.grid.steps[axis][i], p = L_.grid.patch[axis];
    const int64_t lo = start > 0 ? m : 0;
    const int64_t hi = start + p < L_.grid.image[axis] ? p - m : p;
    return o >= lo && o < hi;
  }

  // The summed tile weights of the row at padded (cz, cy), columns pad .. pad + X, added in tile
  // raster order: the same float sums the accumulation of the weights themselves would give.
  void row_weights(int64_t cz, int64_t cy, std::vector<float>& w) const {
    const int64_t X = L_.orig.x, px0 = L_.grid.padding[2].below;
    const int64_t py = L_.grid.patch[1], px = L_.grid.patch[2];
    const auto& sz = L_.grid.steps[0];
    const auto& sy = L_.grid.steps[1];
    const auto& sx = L_.grid.steps[2];
    const auto [z_lo, z_hi] = cover_[0][static_cast<size_t>(cz)];
    const auto [y_lo, y_hi] = cover_[1][static_cast<size_t>(cy)];
    w.assign(static_cast<size_t>(X), 0.0f);
    for (int64_t x = 0; x < X; ++x) {
      const int64_t cx = x + px0;
      const auto [x_lo, x_hi] = cover_[2][static_cast<size_t>(cx)];
      float sum = 0.0f;
      for (int32_t iz = z_lo; iz < z_hi; ++iz) {
        const int64_t oz = cz - sz[static_cast<size_t>(iz)];
        if (!weighted(0, static_cast<size_t>(iz), oz)) continue;
        for (int32_t iy = y_lo; iy < y_hi; ++iy) {
          const int64_t oy = cy - sy[static_cast<size_t>(iy)];
          if (!weighted(1, static_cast<size_t>(iy), oy)) continue;
          const float* g = weights_.data() + (oz * py + oy) * px;
          for (int32_t ix = x_lo; ix < x_hi; ++ix) {
            const int64_t ox = cx - sx[static_cast<size_t>(ix)];
            if (!weighted(2, static_cast<size_t>(ix), ox)) continue;
            sum += g[ox];
          }
        }
      }
      w[static_cast<size_t>(x)] = sum;
    }
  }

  void finish_row(const AccLine& a, int64_t off, int64_t cz, int64_t cy, Band& band, int64_t bz,
                  int64_t by) {
    const int64_t X = L_.orig.x, K = L_.K;
    const int64_t lp = L_.line_pixels();
    std::vector<float> logit(static_cast<size_t>(K)), prob(static_cast<size_t>(K)), weight;
    row_weights(cz, cy, weight);
    auto out_index = [&](const Image& img, int64_t k, int64_t x) {
      const Shape& st = img.strides();
      return k * st.c + bz * st.z + by * st.y + x * st.x;
    };
    float* lg = band.logits.empty() ? nullptr : band.logits.data_as<float>();
    float* pr = band.probabilities.empty() ? nullptr : band.probabilities.data_as<float>();
    for (int64_t x = 0; x < X; ++x) {
      const float w = weight[static_cast<size_t>(x)];
      if (!(w > 0.0f)) {
        fail("engine: voxel (row {} of band at z {}, y {}, x {}) received no tile weight", by,
             band.z0, band.y0, x);
      }
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t k = 0; k < K; ++k) {
        const float v = a.acc[static_cast<size_t>(k * lp + off + x)] / w;
        if (!std::isfinite(v)) {
          throw NonFiniteOutput(fmt::format(
              "engine: non-finite logit {} for class {} at z {}, y {}, x {} (model overflow? try "
              "--precision fp32)",
              v, k, band.z0 + bz, band.y0 + by, x));
        }
        logit[static_cast<size_t>(k)] = v;
        mx = std::max(mx, v);
      }
      if (lg) {
        for (int64_t k = 0; k < K; ++k)
          lg[out_index(band.logits, k, x)] = logit[static_cast<size_t>(k)];
      }
      if (!pr && band.classes.empty()) continue;
      float sum = 0.0f;
      for (int64_t k = 0; k < K; ++k) {
        prob[static_cast<size_t>(k)] = std::exp(logit[static_cast<size_t>(k)] - mx);
        sum += prob[static_cast<size_t>(k)];
      }
      int64_t best = 0;
      for (int64_t k = 0; k < K; ++k) {
        prob[static_cast<size_t>(k)] /= sum;
        if (prob[static_cast<size_t>(k)] > prob[static_cast<size_t>(best)]) best = k;
      }
      if (pr) {
        for (int64_t k = 0; k < K; ++k)
          pr[out_index(band.probabilities, k, x)] = prob[static_cast<size_t>(k)];
      }
      if (!band.classes.empty()) {
        const int64_t i = out_index(band.classes, 0, x);
        if (band.classes.dtype() == DType::U8) {
          band.classes.data_as<uint8_t>()[i] = static_cast<uint8_t>(best);
        } else {
          band.classes.data_as<uint16_t>()[i] = static_cast<uint16_t>(best);
        }
      }
    }
  }

  RegionSource& source_;
  TileModel& model_;
  const EngineOptions& options_;
  const BandCallback& on_band_;
  Layout L_;
  torch::Device device_{torch::kCPU};
  std::optional<Normalizer> normalizer_;
  std::vector<float> weights_;
  BufferPool in_pool_, acc_pool_;
  std::array<std::vector<std::pair<int32_t, int32_t>>, 3> cover_;  // tiles covering a coordinate
  std::vector<std::vector<int64_t>> combos_;
  std::deque<std::unique_ptr<float[]>> in_;  // input window, lines [in_first_, ...)
  int64_t in_first_ = 0;
  std::deque<AccLine> acc_;  // accumulator window, lines [acc_first_, ...)
  int64_t acc_first_ = 0;
  bool emitted_all_ = false;
  int64_t tiles_per_call_ = 1;  // lowered after an out-of-memory
  EngineStats stats_;
};

}  // namespace

EngineStats predict_bands(RegionSource& source, TileModel& model,
                          const Normalization& normalization, const EngineOptions& options,
                          const BandCallback& on_band) {
  UMAMBA_CHECK(static_cast<bool>(on_band), "engine: no band callback");
  const Shape s = source.shape();
  UMAMBA_CHECK(s.c >= 1 && s.z >= 1 && s.y >= 1 && s.x >= 1, "engine: input shape {} is empty",
               to_string(s));
  UMAMBA_CHECK(options.tile_step > 0.0 && options.tile_step <= 1.0,
               "engine: tile step {} must be in (0, 1]", options.tile_step);
  check_geometry_limits(s, model, options);
  Engine engine(source, model, normalization, options, on_band);
  return engine.run();
}

uint64_t predict_memory_bytes(const Shape& shape, const TileModel& model,
                              const EngineOptions& options) {
  UMAMBA_CHECK(shape.c >= 1 && shape.z >= 1 && shape.y >= 1 && shape.x >= 1,
               "engine: input shape {} is empty", to_string(shape));
  check_geometry_limits(shape, model, options);
  const Layout L = make_layout(shape, model, options);
  validate_options(options, L);
  check_engine_memory(L, options);
  return static_cast<uint64_t>(engine_buffer_bytes(L, options));
}

Prediction predict_image(const Image& image, TileModel& model, const Normalization& normalization,
                         const EngineOptions& options) {
  ImageSource source(image);
  const Shape s = image.shape();
  const int64_t K = model.num_classes();
  Prediction p;
  Geometry geometry = image.geometry();
  if (options.outputs & kClasses) {
    p.classes = Image::zeros(K <= 256 ? DType::U8 : DType::U16, Shape{1, s.z, s.y, s.x}, geometry);
  }
  if (options.outputs & kProbabilities) {
    p.probabilities = Image::zeros(DType::F32, Shape{K, s.z, s.y, s.x}, geometry);
  }
  if (options.outputs & kLogits) {
    p.logits = Image::zeros(DType::F32, Shape{K, s.z, s.y, s.x}, geometry);
  }
  auto place = [](Image& whole, const Image& part, const Band& b) {
    if (whole.empty() || part.empty()) return;
    whole.region(Box{b.z0, b.y0, 0, b.dz, b.dy, whole.width()}).copy_from(part);
  };
  p.stats = predict_bands(source, model, normalization, options, [&](const Band& b) {
    place(p.classes, b.classes, b);
    place(p.probabilities, b.probabilities, b);
    place(p.logits, b.logits, b);
  });
  return p;
}

// ---- RowRebander ------------------------------------------------------------------------------

RowRebander::RowRebander(int64_t rows, int64_t height, Output which, Sink sink)
    : rows_(rows), height_(height), which_(which), sink_(std::move(sink)) {
  UMAMBA_CHECK(rows_ >= 1, "rebander: {} rows per chunk", rows_);
  UMAMBA_CHECK(height_ >= 1, "rebander: image height {}", height_);
  UMAMBA_CHECK(static_cast<bool>(sink_), "rebander: no sink");
}

void RowRebander::add(const Band& band) {
  const Image& img = which_ == kClasses         ? band.classes
                     : which_ == kProbabilities ? band.probabilities
                                                : band.logits;
  UMAMBA_CHECK(!img.empty(), "rebander: the band lacks the requested output");
  for (int64_t z = 0; z < band.dz; ++z) {
    // A 3D-model band holds whole slices; a 2D-model band holds rows of one slice.
    const int64_t zz = band.z0 + z;
    int64_t y = 0;
    while (y < band.dy) {
      const int64_t yy = band.y0 + y;
      if (filled_ == 0) {
        if (buffer_.empty() || buffer_.dtype() != img.dtype() ||
            buffer_.channels() != img.channels() || buffer_.width() != img.width()) {
          buffer_ = Image::zeros(img.dtype(), Shape{img.channels(), 1, rows_, img.width()});
        }
        z_ = zz;
        y0_ = yy;
      }
      UMAMBA_CHECK(zz == z_ && yy == y0_ + filled_,
                   "rebander: band at slice {} row {} does not follow slice {} row {}", zz, yy, z_,
                   y0_ + filled_);
      const int64_t n = std::min(band.dy - y, rows_ - filled_);
      buffer_.region(Box{0, filled_, 0, 1, n, img.width()})
          .copy_from(img.region(Box{z, y, 0, 1, n, img.width()}));
      filled_ += n;
      y += n;
      if (filled_ == rows_ || y0_ + filled_ == height_) flush();
    }
  }
}

void RowRebander::flush() {
  if (filled_ == 0) return;
  sink_(buffer_.region(Box{0, 0, 0, 1, filled_, buffer_.width()}), z_, y0_);
  filled_ = 0;
}

}  // namespace umamba::engine
