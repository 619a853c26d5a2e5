// The exact EDT against a brute-force minimum over every feature voxel, on random masks with
// isotropic and anisotropic spacing, 2D and 3D, and edge cases (no feature, all features, lines).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/error.h"
#include "volumetric/edt.h"

namespace uv = umamba::volumetric;

namespace {

// Plain reference: d²(p) = min over features q of ((dz·sz)² + (dy·sy)²) + (dx·sx)².
std::vector<double> brute_force(const std::vector<uint8_t>& f, const uv::Extents& e,
                                const uv::Spacing& s) {
  std::vector<double> out(e.count(), std::numeric_limits<double>::infinity());
  for (int64_t pz = 0; pz < e.z; ++pz)
    for (int64_t py = 0; py < e.y; ++py)
      for (int64_t px = 0; px < e.x; ++px) {
        double best = std::numeric_limits<double>::infinity();
        for (int64_t qz = 0; qz < e.z; ++qz)
          for (int64_t qy = 0; qy < e.y; ++qy)
            for (int64_t qx = 0; qx < e.x; ++qx) {
              if (!f[(qz * e.y + qy) * e.x + qx]) continue;
              const double a = (pz - qz) * s[0], b = (py - qy) * s[1], c = (px - qx) * s[2];
              best = std::min(best, (a * a + b * b) + c * c);
            }
        out[(pz * e.y + py) * e.x + px] = best;
      }
  return out;
}

void expect_matches(const std::vector<uint8_t>& f, const uv::Extents& e, const uv::Spacing& s) {
  std::vector<double> got(e.count());
  uv::squared_distance_transform(f.data(), e, s, got.data());
  const auto want = brute_force(f, e, s);
  for (int64_t i = 0; i < e.count(); ++i) {
    if (std::isinf(want[i])) {
      ASSERT_TRUE(std::isinf(got[i])) << "voxel " << i;
    } else {
      ASSERT_NEAR(got[i], want[i], 1e-12 * std::max(1.0, want[i])) << "voxel " << i;
    }
  }
}

std::vector<uint8_t> random_mask(const uv::Extents& e, double density, std::mt19937& rng) {
  std::bernoulli_distribution on(density);
  std::vector<uint8_t> f(e.count());
  for (auto& v : f) v = on(rng);
  return f;
}

}  // namespace

TEST(Volumetric_Edt, random_3d_matches_brute_force) {
  std::mt19937 rng(7);
  const std::vector<uv::Spacing> spacings = {
      {1, 1, 1}, {2.5, 0.8, 0.8}, {0.284, 0.127, 0.127}, {3, 3, 3}, {0.7, 1.9, 0.3}};
  for (const auto& s : spacings)
    for (double density : {0.002, 0.02, 0.3}) {
      const uv::Extents e{9, 13, 17};
      expect_matches(random_mask(e, density, rng), e, s);
    }
}

TEST(Volumetric_Edt, random_2d_matches_brute_force) {
  std::mt19937 rng(11);
  for (const uv::Spacing& s : {uv::Spacing{1, 1, 1}, uv::Spacing{1, 0.5, 0.25}}) {
    for (double density : {0.001, 0.05, 0.5}) {
      const uv::Extents e{1, 41, 37};
      expect_matches(random_mask(e, density, rng), e, s);
    }
  }
}

TEST(Volumetric_Edt, integer_spacing_is_exact) {
  std::mt19937 rng(3);
  const uv::Extents e{6, 21, 19};
  const uv::Spacing s{3, 2, 1};
  const auto f = random_mask(e, 0.01, rng);
  std::vector<double> got(e.count());
  uv::squared_distance_transform(f.data(), e, s, got.data());
  const auto want = brute_force(f, e, s);
  for (int64_t i = 0; i < e.count(); ++i) ASSERT_EQ(got[i], want[i]) << i;
}

TEST(Volumetric_Edt, no_feature_is_infinite_everywhere) {
  const uv::Extents e{4, 5, 6};
  std::vector<uint8_t> f(e.count(), 0);
  std::vector<double> got(e.count());
  uv::distance_transform(f.data(), e, {1, 1, 1}, got.data());
  for (double v : got) EXPECT_TRUE(std::isinf(v));
}

TEST(Volumetric_Edt, all_features_is_zero) {
  const uv::Extents e{3, 4, 5};
  std::vector<uint8_t> f(e.count(), 1);
  std::vector<double> got(e.count(), -1);
  uv::distance_transform(f.data(), e, {2, 1, 1}, got.data());
  for (double v : got) EXPECT_EQ(v, 0.0);
}

TEST(Volumetric_Edt, single_voxel_gives_distance_to_it) {
  const uv::Extents e{5, 7, 9};
  std::vector<uint8_t> f(e.count(), 0);
  f[(2 * e.y + 3) * e.x + 4] = 1;
  std::vector<double> got(e.count());
  const uv::Spacing s{2.0, 0.5, 1.5};
  uv::distance_transform(f.data(), e, s, got.data());
  EXPECT_DOUBLE_EQ(got[0], std::sqrt(4.0 * 4.0 + 1.5 * 1.5 + 6.0 * 6.0));
  EXPECT_EQ(got[(2 * e.y + 3) * e.x + 4], 0.0);
}

TEST(Volumetric_Edt, long_lines_and_wide_rows) {
  std::mt19937 rng(5);
  // A single long axis in each direction exercises the strided and the contiguous passes.
  for (const uv::Extents& e : {uv::Extents{200, 1, 3}, uv::Extents{1, 300, 2},
                               uv::Extents{1, 2, 500}, uv::Extents{2, 3, 40}}) {
    expect_matches(random_mask(e, 0.01, rng), e, {0.9, 1.1, 0.6});
  }
}

TEST(Volumetric_Edt, lower_envelope_1d_matches_brute_force) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<double> value(0, 50);
  std::bernoulli_distribution missing(0.3);
  const int64_t n = 60;
  std::vector<double> f(n), d(n), z(n + 1);
  std::vector<int64_t> v(n);
  for (int trial = 0; trial < 50; ++trial) {
    for (auto& x : f) x = missing(rng) ? std::numeric_limits<double>::infinity() : value(rng);
    const double w = 0.3 + trial * 0.05;
    umamba::volumetric::lower_envelope_1d(f.data(), n, w, d.data(), v.data(), z.data());
    for (int64_t p = 0; p < n; ++p) {
      double best = std::numeric_limits<double>::infinity();
      for (int64_t q = 0; q < n; ++q) {
        const double t = (p - q) * w;
        best = std::min(best, f[q] + t * t);
      }
      ASSERT_NEAR(d[p], best, 1e-9) << "trial " << trial << " p " << p;
    }
  }
}

TEST(Volumetric_Edt, rejects_bad_spacing) {
  std::vector<uint8_t> f(8, 1);
  std::vector<double> out(8);
  EXPECT_THROW(uv::squared_distance_transform(f.data(), {2, 2, 2}, {0, 1, 1}, out.data()),
               umamba::Error);
  EXPECT_THROW(uv::squared_distance_transform(f.data(), {2, 2, 2}, {1, -1, 1}, out.data()),
               umamba::Error);
}

TEST(Volumetric_Edt, capped_transform_is_exact_within_the_cap) {
  std::mt19937 rng(23);
  const uv::Extents e{8, 15, 14};
  const uv::Spacing s{2.5, 0.8, 0.6};
  for (double cap : {0.0, 0.7, 1.0, 2.5, 6.0}) {
    const auto f = random_mask(e, 0.01, rng);
    std::vector<double> got(e.count());
    uv::squared_distance_transform(f.data(), e, s, got.data(), cap);
    const auto want = brute_force(f, e, s);
    for (int64_t i = 0; i < e.count(); ++i) {
      if (want[i] <= cap * cap) {
        ASSERT_NEAR(got[i], want[i], 1e-12 * std::max(1.0, want[i])) << "cap " << cap;
      } else {
        ASSERT_GT(got[i], cap * cap) << "cap " << cap;  // beyond the cap: +inf or the value
      }
    }
  }
}
