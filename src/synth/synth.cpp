// Parameters, the generator object and whole-image rendering (bands in parallel with TBB).
#include "synth/synth.h"

#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "synth/cells.h"
#include "synth/random.h"
#include "synth/render.h"

namespace umamba::synth {

namespace {

void check_range(const char* name, double value, double lo, double hi) {
  UMAMBA_CHECK(std::isfinite(value) && value >= lo && value <= hi,
               "synth: {} = {} is outside [{}, {}]", name, value, lo, hi);
}

}  // namespace

void validate(const SynthParams& p) {
  UMAMBA_CHECK(p.depth >= 1 && p.height >= 1 && p.width >= 1,
               "synth: image size {}x{}x{} must be positive (Z x Y x X)", p.depth, p.height,
               p.width);
  UMAMBA_CHECK(
      p.height < (int64_t{1} << 31) && p.width < (int64_t{1} << 31) && p.depth < (int64_t{1} << 20),
      "synth: image size {}x{}x{} is too large", p.depth, p.height, p.width);
  UMAMBA_CHECK(p.channels == 1 || p.channels == 3, "synth: channels = {} must be 1 or 3",
               p.channels);
  UMAMBA_CHECK(p.dtype == DType::U8 || p.dtype == DType::U16 || p.dtype == DType::F32,
               "synth: dtype {} must be u8, u16 or f32", dtype_name(p.dtype));
  check_range("spacing_xy", p.spacing_xy, 1e-9, 1e9);
  check_range("spacing_z", p.spacing_z, 1e-9, 1e9);
  UMAMBA_CHECK(p.cells >= 0 && p.cells < (int64_t{1} << 31) - 1,
               "synth: cells = {} must be in [0, 2^31 - 1)", p.cells);
  check_range("density", p.density, 0.0, 0.9);
  check_range("diameter", p.diameter, 1.0, 1e5);
  check_range("diameter_spread", p.diameter_spread, 0.0, 1.0);
  check_range("elongation", p.elongation, 1.0, 10.0);
  check_range("irregularity", p.irregularity, 0.0, 0.45);
  check_range("touching", p.touching, 0.0, 1.0);
  check_range("overlap", p.overlap, 0.02, 0.6);
  UMAMBA_CHECK(p.max_cluster >= 2 && p.max_cluster <= 1000,
               "synth: max_cluster = {} must be in [2, 1000]", p.max_cluster);
  check_range("gap", p.gap, 0.0, 1e5);
  check_range("background", p.background, 0.0, 1e3);
  check_range("contrast", p.contrast, -1e3, 1e3);
  check_range("intensity_spread", p.intensity_spread, 0.0, 3.0);
  check_range("texture", p.texture, 0.0, 1.0);
  check_range("texture_scale", p.texture_scale, 0.0, 1e5);
  check_range("edge_falloff", p.edge_falloff, 0.0, 1.0);
  check_range("illumination", p.illumination, 0.0, 1.0);
  check_range("nucleus_ratio", p.nucleus_ratio, 0.05, 0.95);
  check_range("offset", p.offset, -1e3, 1e3);
  check_range("blur", p.blur, 0.0, 100.0);
  UMAMBA_CHECK(std::isfinite(p.blur_z) && p.blur_z <= 100.0,
               "synth: blur_z = {} must be at most 100 (negative: automatic)", p.blur_z);
  check_range("photons", p.photons, 0.0, 1e9);
  check_range("noise", p.noise, 0.0, 1e3);
  check_range("full_scale", p.full_scale, 0.0, 1e30);
}

DiameterRange diameter_range(const SynthParams& p) {
  const double s = p.diameter_spread;
  return {p.diameter * rng::exp(-2.0 * s - s * s / 2.0),
          p.diameter * rng::exp(2.0 * s - s * s / 2.0)};
}

int64_t cells_for_density(const SynthParams& p) {
  const double s2 = p.diameter_spread * p.diameter_spread;
  const double d = p.diameter;
  if (p.depth > 1) {
    const double volume =
        double(p.depth) * (p.spacing_z / p.spacing_xy) * double(p.height) * double(p.width);
    const double cell = rng::kPi / 6.0 * d * d * d * rng::exp(3.0 * s2);
    return static_cast<int64_t>(std::llround(p.density * volume / cell));
  }
  const double cell = rng::kPi / 4.0 * d * d * rng::exp(s2);
  return static_cast<int64_t>(std::llround(p.density * double(p.height) * double(p.width) / cell));
}

double effective_blur_z(const SynthParams& p) {
  if (p.blur_z >= 0.0) return p.blur_z;
  return 2.5 * p.blur * p.spacing_xy / p.spacing_z;
}

double effective_full_scale(const SynthParams& p) {
  if (p.full_scale > 0.0) return p.full_scale;
  switch (p.dtype) {
    case DType::U8:
      return 255.0;
    case DType::U16:
      return 4095.0;
    default:
      return 1.0;
  }
}

struct Generator::Impl {
  SynthParams params;
  Scene scene;
};

Generator::Generator(const SynthParams& params) : impl_(std::make_unique<Impl>()) {
  impl_->params = params;
  impl_->scene = place_cells(params);
}
Generator::~Generator() = default;
Generator::Generator(Generator&&) noexcept = default;
Generator& Generator::operator=(Generator&&) noexcept = default;

const SynthParams& Generator::params() const {
  return impl_->params;
}
Shape Generator::image_shape() const {
  const auto& p = impl_->params;
  return {p.channels, p.depth, p.height, p.width};
}
Shape Generator::label_shape() const {
  const auto& p = impl_->params;
  return {1, p.depth, p.height, p.width};
}
DType Generator::label_dtype() const {
  return cells_placed() > std::numeric_limits<uint16_t>::max() ? DType::U32 : DType::U16;
}
Geometry Generator::geometry() const {
  Geometry g;
  const auto& p = impl_->params;
  g.spacing = {p.depth > 1 ? p.spacing_z : p.spacing_xy, p.spacing_xy, p.spacing_xy};
  g.unit = "um";
  return g;
}
int64_t Generator::cells_requested() const {
  return impl_->scene.requested;
}
int64_t Generator::cells_placed() const {
  return static_cast<int64_t>(impl_->scene.cells.size());
}
int64_t Generator::cells_clustered() const {
  return impl_->scene.clustered;
}
const Scene& Generator::scene() const {
  return impl_->scene;
}

namespace {

// Rows per band: enough bands to keep every thread busy, each band tall compared with the
// cells (the halo rasterised around a band is one cell tall on each side).
int64_t band_rows(const Scene& scene) {
  const int64_t threads = std::max(1, tbb::this_task_arena::max_concurrency());
  const int64_t per_thread = (scene.height + 4 * threads - 1) / (4 * threads);
  const int64_t min_rows = std::max<int64_t>(32, 2 * scene.max_rows);
  return std::clamp<int64_t>(per_thread, min_rows, std::max<int64_t>(min_rows, 512));
}

void render_into(const SynthParams& p, const Scene& scene, int64_t rows, Image& image,
                 Image& labels) {
  const int64_t H = scene.height;
  const int64_t bands = (H + rows - 1) / rows;
  tbb::enumerable_thread_specific<BandScratch> scratch;
  tbb::parallel_for(int64_t{0}, bands, [&](int64_t b) {
    const int64_t y0 = b * rows, y1 = std::min(H, y0 + rows);
    Box box{0, y0, 0, scene.depth, y1 - y0, scene.width};
    Image iv = image.region(box);
    Image lv = labels.region(box);
    render_rows(p, scene, y0, y1, iv, lv, &scratch.local());
  });
}

}  // namespace

Band Generator::render_band(int64_t y0, int64_t y1) const {
  const auto& p = impl_->params;
  UMAMBA_CHECK(y0 >= 0 && y0 < y1 && y1 <= p.height,
               "synth: band rows [{}, {}) must lie in [0, {}) and not be empty", y0, y1, p.height);
  Band band;
  band.y0 = y0;
  band.y1 = y1;
  Geometry g = geometry();
  band.image = Image::zeros(p.dtype, Shape{p.channels, p.depth, y1 - y0, p.width}, g);
  band.labels = Image::zeros(label_dtype(), Shape{1, p.depth, y1 - y0, p.width}, g);
  // Split tall bands too, so that one band still uses every thread.
  const int64_t rows = std::min(y1 - y0, band_rows(impl_->scene));
  const int64_t parts = (y1 - y0 + rows - 1) / rows;
  tbb::enumerable_thread_specific<BandScratch> scratch;
  tbb::parallel_for(int64_t{0}, parts, [&](int64_t b) {
    const int64_t a0 = y0 + b * rows, a1 = std::min(y1, a0 + rows);
    Box box{0, a0 - y0, 0, p.depth, a1 - a0, p.width};
    Image iv = band.image.region(box);
    Image lv = band.labels.region(box);
    render_rows(p, impl_->scene, a0, a1, iv, lv, &scratch.local());
  });
  return band;
}

SynthResult Generator::render(int64_t rows) const {
  const auto& p = impl_->params;
  UMAMBA_CHECK(rows >= 0, "synth: band rows = {} must be >= 0 (0: automatic)", rows);
  SynthResult r;
  r.image = Image::zeros(p.dtype, image_shape(), geometry());
  r.labels = Image::zeros(label_dtype(), label_shape(), geometry());
  render_into(p, impl_->scene, rows > 0 ? rows : band_rows(impl_->scene), r.image, r.labels);
  r.cells_requested = cells_requested();
  r.cells_placed = cells_placed();
  r.cells_clustered = cells_clustered();
  r.image.metadata()["synth.seed"] = std::to_string(p.seed);
  r.labels.metadata()["synth.seed"] = std::to_string(p.seed);
  return r;
}

SynthResult generate(const SynthParams& params) {
  return Generator(params).render();
}

}  // namespace umamba::synth
