// Sliding-window geometry after nnU-Net v2 (see sliding_window.h for the method and its source).
#include "engine/sliding_window.h"

#include <c10/util/Half.h>

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace umamba::engine {

std::vector<int64_t> compute_steps(int64_t size, int64_t tile, double step) {
  UMAMBA_CHECK(tile >= 1, "sliding window: tile size {} must be at least 1", tile);
  UMAMBA_CHECK(size >= tile, "sliding window: image size {} is smaller than the tile {}; pad first",
               size, tile);
  UMAMBA_CHECK(step > 0.0 && step <= 1.0, "sliding window: tile step {} must be in (0, 1]", step);
  // The same double operations, in the same order, as nnU-Net's Python code.
  const double target_step = static_cast<double>(tile) * step;
  const int64_t n =
      static_cast<int64_t>(std::ceil(static_cast<double>(size - tile) / target_step)) + 1;
  const int64_t max_step = size - tile;
  std::vector<int64_t> steps(static_cast<size_t>(n));
  if (n == 1) {
    steps[0] = 0;  // nnU-Net: actual step 99999999999, times 0
    return steps;
  }
  const double actual_step = static_cast<double>(max_step) / static_cast<double>(n - 1);
  // np.round rounds half to even, which is nearbyint under the default rounding mode.
  const int saved = std::fegetround();
  std::fesetround(FE_TONEAREST);
  for (int64_t i = 0; i < n; ++i) {
    steps[static_cast<size_t>(i)] =
        static_cast<int64_t>(std::nearbyint(actual_step * static_cast<double>(i)));
  }
  std::fesetround(saved);
  return steps;
}

Padding padding_for(int64_t size, int64_t patch) {
  UMAMBA_CHECK(size >= 1 && patch >= 1, "sliding window: size {} and patch {} must be positive",
               size, patch);
  if (size >= patch) return {};
  const int64_t d = patch - size;
  return {d / 2, d - d / 2};
}

std::vector<double> gaussian_profile(int64_t size, double sigma) {
  UMAMBA_CHECK(size >= 1, "gaussian: patch edge {} must be positive", size);
  UMAMBA_CHECK(sigma > 0.0, "gaussian: sigma {} must be positive", sigma);
  // scipy.ndimage._gaussian_kernel1d: radius = int(truncate * sigma + 0.5), truncate = 4.
  const int64_t radius = static_cast<int64_t>(4.0 * sigma + 0.5);
  const double a = -0.5 / (sigma * sigma);
  std::vector<double> kernel(static_cast<size_t>(2 * radius + 1));
  double sum = 0.0;
  for (int64_t x = -radius; x <= radius; ++x) {
    kernel[static_cast<size_t>(x + radius)] = std::exp(a * static_cast<double>(x * x));
    sum += kernel[static_cast<size_t>(x + radius)];
  }
  for (double& k : kernel) k /= sum;
  // Correlating the impulse at c = size / 2 with the symmetric kernel, constant (zero) border.
  const int64_t c = size / 2;
  std::vector<double> profile(static_cast<size_t>(size), 0.0);
  for (int64_t i = 0; i < size; ++i) {
    const int64_t d = i - c;
    if (d >= -radius && d <= radius)
      profile[static_cast<size_t>(i)] = kernel[static_cast<size_t>(d + radius)];
  }
  return profile;
}

float round_to_half(float value) {
  return static_cast<float>(c10::Half(value));
}

std::vector<float> gaussian_importance_map(const std::array<int64_t, 3>& patch,
                                           const GaussianOptions& options) {
  UMAMBA_CHECK(options.sigma_scale > 0.0, "gaussian: sigma scale {} must be positive",
               options.sigma_scale);
  UMAMBA_CHECK(options.value_scaling > 0.0, "gaussian: value scaling {} must be positive",
               options.value_scaling);
  std::array<std::vector<double>, 3> p;
  for (int a = 0; a < 3; ++a) {
    // A unit Z axis is a 2D patch: nnU-Net filters only (Y, X), so that axis contributes exactly 1.
    p[a] = patch[a] == 1 && a == 0
               ? std::vector<double>{1.0}
               : gaussian_profile(patch[a], static_cast<double>(patch[a]) * options.sigma_scale);
  }
  // The impulse response is separable: value = (pz * py) * px, the order in which scipy's per-axis
  // passes multiply them, then divided by the maximum (at the centre) and scaled.
  const double maximum = p[0][patch[0] / 2] * p[1][patch[1] / 2] * p[2][patch[2] / 2];
  std::vector<float> map(static_cast<size_t>(patch[0] * patch[1] * patch[2]));
  float min_nonzero = std::numeric_limits<float>::infinity();
  size_t i = 0;
  for (int64_t z = 0; z < patch[0]; ++z) {
    for (int64_t y = 0; y < patch[1]; ++y) {
      for (int64_t x = 0; x < patch[2]; ++x, ++i) {
        const double v = p[0][z] * p[1][y] * p[2][x] / maximum * options.value_scaling;
        float f = static_cast<float>(v);
        if (options.round_to_half) f = round_to_half(static_cast<float>(v));
        map[i] = f;
        if (f > 0.0f) min_nonzero = std::min(min_nonzero, f);
      }
    }
  }
  // nnU-Net: "gaussian_importance_map cannot be 0, otherwise we may end up with nans".
  for (float& v : map) {
    if (v == 0.0f) v = min_nonzero;
  }
  return map;
}

std::array<int64_t, 3> TileGrid::start(int64_t index) const {
  const auto nx = static_cast<int64_t>(steps[2].size());
  const auto ny = static_cast<int64_t>(steps[1].size());
  const int64_t ix = index % nx;
  const int64_t iy = (index / nx) % ny;
  const int64_t iz = index / (nx * ny);
  return {steps[0][static_cast<size_t>(iz)], steps[1][static_cast<size_t>(iy)],
          steps[2][static_cast<size_t>(ix)]};
}

TileGrid make_tile_grid(const std::array<int64_t, 3>& shape, const std::array<int64_t, 3>& patch,
                        int model_dims, double step) {
  UMAMBA_CHECK(model_dims == 2 || model_dims == 3, "sliding window: model dimensions {} not 2 or 3",
               model_dims);
  UMAMBA_CHECK(model_dims == 3 || patch[0] == 1,
               "sliding window: a 2D model has patch depth 1, got {}", patch[0]);
  TileGrid g;
  g.patch = patch;
  for (int a = 0; a < 3; ++a) {
    UMAMBA_CHECK(shape[a] >= 1, "sliding window: image axis {} has size {}", a, shape[a]);
    UMAMBA_CHECK(patch[a] >= 1, "sliding window: patch axis {} has size {}", a, patch[a]);
    g.padding[a] = (a == 0 && model_dims == 2) ? Padding{} : padding_for(shape[a], patch[a]);
    g.image[a] = shape[a] + g.padding[a].total();
  }
  if (model_dims == 2) {
    g.steps[0].resize(static_cast<size_t>(g.image[0]));
    for (int64_t z = 0; z < g.image[0]; ++z) g.steps[0][static_cast<size_t>(z)] = z;
  } else {
    g.steps[0] = compute_steps(g.image[0], patch[0], step);
  }
  g.steps[1] = compute_steps(g.image[1], patch[1], step);
  g.steps[2] = compute_steps(g.image[2], patch[2], step);
  return g;
}

}  // namespace umamba::engine
