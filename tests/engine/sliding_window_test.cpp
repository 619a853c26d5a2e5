// Sliding-window geometry against the formulas of nnU-Net v2 (reference §4.4), written here
// independently of the engine's code.
#include "engine/sliding_window.h"

#include <gtest/gtest.h>

#include <cfenv>
#include <cmath>
#include <random>

#include "core/error.h"

namespace umamba::engine {
namespace {

// The reference formula (reference §4.4): n = ceil((size - tile) / (tile * step)) + 1 positions,
// position i = round(i * (size - tile) / (n - 1)) with NumPy's round (half to even). nnU-Net's code
// evaluates the position as ((size - tile) / (n - 1)) * i in double precision; at exact ties of the
// algebraic value (x.5) that product can land one ulp above or below, so the order is kept here.
double numpy_round(double v) {
  double r = std::floor(v);
  const double frac = v - r;
  if (frac > 0.5 || (frac == 0.5 && std::fmod(r, 2.0) != 0.0)) r += 1.0;
  return r;
}

std::vector<int64_t> reference_steps(int64_t size, int64_t tile, double step) {
  const double n_real =
      std::ceil(static_cast<double>(size - tile) / (static_cast<double>(tile) * step));
  const auto n = static_cast<int64_t>(n_real) + 1;
  if (n == 1) return {0};
  const double actual = static_cast<double>(size - tile) / static_cast<double>(n - 1);
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(static_cast<int64_t>(numpy_round(actual * i)));
  return out;
}

TEST(Engine_SlidingWindow, steps_match_nnunet_formula) {
  std::mt19937 rng(5);
  int checked = 0;
  const double steps[] = {0.5, 0.25, 0.33, 0.7, 1.0, 0.125, 0.9};
  for (int64_t tile : {1, 2, 3, 7, 16, 40, 64, 96, 128, 160, 192, 224, 512}) {
    for (double step : steps) {
      for (int k = 0; k < 40; ++k) {
        const int64_t size = tile + std::uniform_int_distribution<int64_t>(0, 6 * tile + 3)(rng);
        ASSERT_EQ(compute_steps(size, tile, step), reference_steps(size, tile, step))
            << "size " << size << " tile " << tile << " step " << step;
        ++checked;
      }
    }
  }
  // Exhaustive over small sizes, where rounding ties (x.5) are frequent.
  for (int64_t tile = 1; tile <= 24; ++tile) {
    for (int64_t size = tile; size <= tile + 100; ++size) {
      for (double step : steps) {
        ASSERT_EQ(compute_steps(size, tile, step), reference_steps(size, tile, step))
            << "size " << size << " tile " << tile << " step " << step;
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 10000);
}

TEST(Engine_SlidingWindow, steps_cover_the_image_with_bounded_gaps) {
  for (int64_t tile : {5, 32, 100}) {
    for (int64_t size = tile; size < tile * 9; size += 7) {
      for (double step : {0.5, 0.3, 1.0}) {
        const auto s = compute_steps(size, tile, step);
        ASSERT_FALSE(s.empty());
        EXPECT_EQ(s.front(), 0);
        EXPECT_EQ(s.back(), size - tile);
        for (size_t i = 1; i < s.size(); ++i) {
          EXPECT_GT(s[i], s[i - 1]);
          // Gaps never exceed the target step (rounded up by one at most).
          EXPECT_LE(static_cast<double>(s[i] - s[i - 1]), std::ceil(tile * step) + 1);
        }
      }
    }
  }
}

TEST(Engine_SlidingWindow, known_values) {
  // 512-pixel tiles with step 0.5 over 1000 pixels: ceil(488 / 256) + 1 = 3 tiles at 0, 244, 488.
  EXPECT_EQ(compute_steps(1000, 512, 0.5), (std::vector<int64_t>{0, 244, 488}));
  EXPECT_EQ(compute_steps(512, 512, 0.5), (std::vector<int64_t>{0}));
  // Tile 5 over 10: ceil(5 / 2.5) + 1 = 3 tiles; 2.5 rounds to the even 2 (NumPy), not 3.
  EXPECT_EQ(compute_steps(10, 5, 0.5), (std::vector<int64_t>{0, 2, 5}));
  EXPECT_EQ(compute_steps(9, 4, 0.5), (std::vector<int64_t>{0, 2, 3, 5}));
}

// At an exact tie nnU-Net's evaluation order decides: (229 / 46) * 23 = 114.50000000000001 in
// double (Python agrees), so position 23 of a 40-voxel tile over 269 voxels at step 0.125 is 115,
// where exact arithmetic (23 * 229 / 46 = 114.5, half to even) would give 114.
TEST(Engine_SlidingWindow, ties_follow_nnunet_evaluation_order) {
  const auto s = compute_steps(269, 40, 0.125);
  ASSERT_EQ(s.size(), 47u);
  EXPECT_EQ(s[23], 115);
  EXPECT_EQ(numpy_round(23.0 * 229.0 / 46.0), 114.0);
}

TEST(Engine_SlidingWindow, bad_arguments_throw) {
  EXPECT_THROW(compute_steps(10, 11, 0.5), Error);
  EXPECT_THROW(compute_steps(10, 5, 0.0), Error);
  EXPECT_THROW(compute_steps(10, 5, 1.5), Error);
  EXPECT_THROW(compute_steps(10, 0, 0.5), Error);
}

TEST(Engine_SlidingWindow, padding_is_centred_like_pad_nd_image) {
  EXPECT_EQ(padding_for(10, 10).total(), 0);
  EXPECT_EQ(padding_for(12, 10).total(), 0);
  const Padding p = padding_for(7, 12);  // difference 5: 2 below, 3 above
  EXPECT_EQ(p.below, 2);
  EXPECT_EQ(p.above, 3);
  const Padding q = padding_for(1, 4);
  EXPECT_EQ(q.below, 1);
  EXPECT_EQ(q.above, 2);
}

TEST(Engine_SlidingWindow, grid_for_2d_model_over_volume_has_one_position_per_slice) {
  const TileGrid g = make_tile_grid({5, 30, 40}, {1, 16, 16}, 2, 0.5);
  EXPECT_EQ(g.image, (std::array<int64_t, 3>{5, 30, 40}));
  EXPECT_EQ(g.steps[0], (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(g.steps[1], compute_steps(30, 16, 0.5));
  EXPECT_EQ(g.steps[2], compute_steps(40, 16, 0.5));
  EXPECT_EQ(g.count(), 5 * static_cast<int64_t>(g.steps[1].size() * g.steps[2].size()));
  // Raster order: x fastest.
  EXPECT_EQ(g.start(1), (std::array<int64_t, 3>{0, 0, g.steps[2][1]}));
  // A volume smaller than the 3D patch is padded on every axis.
  const TileGrid h = make_tile_grid({3, 30, 8}, {4, 16, 16}, 3, 0.5);
  EXPECT_EQ(h.image, (std::array<int64_t, 3>{4, 30, 16}));
  EXPECT_EQ(h.padding[2].below, 4);
  EXPECT_THROW(make_tile_grid({3, 30, 8}, {4, 16, 16}, 2, 0.5), Error);
}

// The 1-D profile of scipy's Gaussian filter of an impulse, evaluated directly.
double direct_profile(int64_t size, double sigma, int64_t i) {
  const int64_t radius = static_cast<int64_t>(4.0 * sigma + 0.5);
  const int64_t d = i - size / 2;
  if (std::abs(d) > radius) return 0.0;
  double sum = 0.0;
  for (int64_t x = -radius; x <= radius; ++x) sum += std::exp(-0.5 * x * x / (sigma * sigma));
  return std::exp(-0.5 * d * d / (sigma * sigma)) / sum;
}

TEST(Engine_Gaussian, profile_matches_direct_evaluation) {
  for (int64_t size : {1, 2, 7, 16, 33, 128, 512}) {
    const double sigma = size / 8.0;
    const auto p = gaussian_profile(size, sigma);
    ASSERT_EQ(static_cast<int64_t>(p.size()), size);
    for (int64_t i = 0; i < size; ++i) {
      EXPECT_NEAR(p[i], direct_profile(size, sigma, i), 1e-15) << size << " " << i;
    }
  }
}

TEST(Engine_Gaussian, map_invariants_2d) {
  for (int64_t edge : {16, 33, 64, 512}) {
    GaussianOptions exact;
    exact.round_to_half = false;
    const auto m = gaussian_importance_map({1, edge, edge}, exact);
    const auto h = gaussian_importance_map({1, edge, edge});
    ASSERT_EQ(static_cast<int64_t>(m.size()), edge * edge);
    const int64_t c = edge / 2;
    // Maximum = value scaling (10) at the centre voxel.
    EXPECT_FLOAT_EQ(m[c * edge + c], 10.0f);
    EXPECT_EQ(h[c * edge + c], 10.0f);
    float mx = 0.0f;
    for (float v : m) mx = std::max(mx, v);
    EXPECT_FLOAT_EQ(mx, 10.0f);
    for (size_t i = 0; i < m.size(); ++i) {
      ASSERT_GT(m[i], 0.0f);
      ASSERT_GT(h[i], 0.0f);
      // float16 rounding is within half an ulp of float16 (2^-11 relative).
      ASSERT_NEAR(h[i], m[i], m[i] * (1.0 / 2048.0) + 1e-7);
      ASSERT_EQ(h[i], round_to_half(h[i]));
    }
    // Symmetric about the centre voxel, and separable.
    for (int64_t d = 0; c - d >= 0 && c + d < edge; ++d) {
      EXPECT_EQ(m[c * edge + c + d], m[c * edge + c - d]);
      EXPECT_EQ(m[(c + d) * edge + c], m[(c - d) * edge + c]);
      EXPECT_FLOAT_EQ(m[(c + d) * edge + c], m[c * edge + c + d]);
    }
    // sigma = edge / 8: one sigma from the centre the map falls to exp(-1/2) of its peak.
    const double sigma = edge / 8.0;
    if (sigma == std::floor(sigma)) {
      const auto s = static_cast<int64_t>(sigma);
      EXPECT_NEAR(m[c * edge + c + s] / 10.0, std::exp(-0.5), 1e-6);
      EXPECT_NEAR(m[(c + s) * edge + c + s] / 10.0, std::exp(-1.0), 1e-6);
    }
  }
}

TEST(Engine_Gaussian, float16_zeros_in_3d_corners_become_the_smallest_nonzero) {
  // exp(-3 * 8) * 10 is below float16's smallest subnormal: nnU-Net's zero fix applies.
  GaussianOptions exact;
  exact.round_to_half = false;
  const std::array<int64_t, 3> patch{16, 16, 16};
  const auto raw = gaussian_importance_map(patch, exact);
  const auto h = gaussian_importance_map(patch);
  float smallest = 1e9f;
  int corrected = 0;
  for (size_t i = 0; i < raw.size(); ++i) {
    const float rounded = round_to_half(raw[i]);
    if (rounded > 0.0f) smallest = std::min(smallest, rounded);
  }
  for (size_t i = 0; i < raw.size(); ++i) {
    const float rounded = round_to_half(raw[i]);
    ASSERT_GT(h[i], 0.0f);
    if (rounded == 0.0f) {
      EXPECT_EQ(h[i], smallest);
      ++corrected;
    } else {
      EXPECT_EQ(h[i], rounded);
    }
  }
  EXPECT_GT(corrected, 0);
}

TEST(Engine_Gaussian, round_to_half_matches_known_values) {
  EXPECT_EQ(round_to_half(1.0f), 1.0f);
  EXPECT_EQ(round_to_half(10.0f), 10.0f);
  EXPECT_EQ(round_to_half(1.0f + 1.0f / 4096.0f), 1.0f);  // below half an ulp (2^-11)
  EXPECT_EQ(round_to_half(1.0f + 3.0f / 4096.0f), 1.0f + 1.0f / 1024.0f);
  EXPECT_EQ(round_to_half(1e-9f), 0.0f);
  EXPECT_EQ(round_to_half(65504.0f), 65504.0f);
}

}  // namespace
}  // namespace umamba::engine
