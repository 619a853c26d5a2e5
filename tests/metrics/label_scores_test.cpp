// DSC and NSD per label against plain references: voxel counting for DSC, and for NSD the surfels
// of each mask (codes evaluated corner by corner) with the distance of each to the nearest surfel
// of the other mask found by exhaustive search. 2D and 3D, isotropic and anisotropic spacing,
// absent labels, single voxels, masks touching the image border, one-slice objects in 3D.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/image.h"
#include "metrics/label_scores.h"
#include "volumetric/surface.h"

namespace um = umamba::metrics;
namespace uv = umamba::volumetric;
using umamba::DType;
using umamba::Image;
using umamba::Shape;

namespace {

struct Surfel {
  int64_t z, y, x;  // corner indices
  double area;
};

// Surfels of a binary mask on the corner grid, by definition.
std::vector<Surfel> surfels(const std::vector<uint8_t>& m, const uv::Extents& e,
                            const uv::Spacing& s) {
  const bool is_3d = e.z > 1;
  const auto table = uv::surface_measure_table(is_3d, s);
  auto at = [&](int64_t z, int64_t y, int64_t x) -> int {
    if (z < 0 || y < 0 || x < 0 || z >= e.z || y >= e.y || x >= e.x) return 0;
    return m[(z * e.y + y) * e.x + x] != 0;
  };
  std::vector<Surfel> out;
  const uv::Extents c = uv::corner_extents(e);
  for (int64_t k = 0; k < c.z; ++k)
    for (int64_t j = 0; j < c.y; ++j)
      for (int64_t i = 0; i < c.x; ++i) {
        int code = 0;
        if (is_3d) {
          for (int a = 0; a < 2; ++a)
            for (int b = 0; b < 2; ++b)
              for (int cc = 0; cc < 2; ++cc)
                if (at(k - 1 + a, j - 1 + b, i - 1 + cc)) code |= 128 >> (4 * a + 2 * b + cc);
        } else {
          for (int b = 0; b < 2; ++b)
            for (int cc = 0; cc < 2; ++cc)
              if (at(0, j - 1 + b, i - 1 + cc)) code |= 8 >> (2 * b + cc);
        }
        if (code != 0 && code != (is_3d ? 255 : 15)) out.push_back({k, j, i, table[code]});
      }
  return out;
}

double ref_nsd(const std::vector<uint8_t>& g, const std::vector<uint8_t>& p, const uv::Extents& e,
               const uv::Spacing& s, double tol) {
  const auto sg = surfels(g, e, s), sp = surfels(p, e, s);
  auto side = [&](const std::vector<Surfel>& from, const std::vector<Surfel>& to, double& area,
                  double& within) {
    for (const Surfel& a : from) {
      double best = std::numeric_limits<double>::infinity();
      for (const Surfel& b : to) {
        // (Δ index)·spacing, as scipy's EDT computes it: ties at the tolerance depend on it.
        const double dz = (a.z - b.z) * s[0], dy = (a.y - b.y) * s[1], dx = (a.x - b.x) * s[2];
        best = std::min(best, (dz * dz + dy * dy) + dx * dx);
      }
      area += a.area;
      if (std::sqrt(best) <= tol) within += a.area;
    }
  };
  double area = 0, within = 0;
  side(sg, sp, area, within);
  side(sp, sg, area, within);
  return area > 0 ? within / area : std::numeric_limits<double>::quiet_NaN();
}

std::vector<uint8_t> random_blob(const uv::Extents& e, std::mt19937& rng, double fill) {
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<uint8_t> m(e.count(), 0);
  const double cz = u(rng) * e.z, cy = u(rng) * e.y, cx = u(rng) * e.x;
  const double rz = e.z > 1 ? 1 + u(rng) * e.z / 2 : 1, ry = 2 + u(rng) * e.y / 2,
               rx = 2 + u(rng) * e.x / 2;
  for (int64_t z = 0; z < e.z; ++z)
    for (int64_t y = 0; y < e.y; ++y)
      for (int64_t x = 0; x < e.x; ++x) {
        const double a = (z - cz) / rz, b = (y - cy) / ry, c = (x - cx) / rx;
        const double r = a * a + b * b + c * c;
        m[(z * e.y + y) * e.x + x] = r <= 1.0 && u(rng) < fill;
      }
  return m;
}

Image labels_image(const std::vector<std::vector<uint8_t>>& masks, const uv::Extents& e,
                   DType dtype) {
  Image img = Image::zeros(dtype, Shape{1, e.z, e.y, e.x});
  umamba::visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* p = img.data_as<T>();
    for (size_t l = 0; l < masks.size(); ++l)
      for (int64_t i = 0; i < e.count(); ++i)
        if (masks[l][i]) p[i] = static_cast<T>(l + 1);
  });
  return img;
}

}  // namespace

TEST(Metrics_Nsd, random_masks_match_brute_force_surface_distances) {
  std::mt19937 rng(17);
  const std::vector<uv::Spacing> spacings = {
      {1, 1, 1}, {2.5, 0.8, 0.8}, {0.284, 0.127, 0.127}, {3, 3, 3}};
  for (const uv::Extents& e : {uv::Extents{1, 30, 27}, uv::Extents{9, 14, 16}}) {
    for (const auto& s : spacings) {
      for (int trial = 0; trial < 4; ++trial) {
        const auto g = random_blob(e, rng, trial == 3 ? 0.8 : 1.0);
        const auto p = random_blob(e, rng, 1.0);
        for (double tol : {0.0, 0.5, 1.0, 2.0, 3.0}) {
          const double got = um::surface_dice(g.data(), p.data(), e, s, tol);
          const double want = ref_nsd(g, p, e, s, tol);
          if (std::isnan(want)) {
            EXPECT_TRUE(std::isnan(got));
          } else {
            EXPECT_NEAR(got, want, 1e-12) << e.z << " " << s[0] << " " << s[1] << " tol " << tol;
          }
        }
      }
    }
  }
}

TEST(Metrics_Nsd, identical_masks_score_one_and_one_empty_scores_zero) {
  std::mt19937 rng(3);
  const uv::Extents e{6, 12, 12};
  const auto g = random_blob(e, rng, 1.0);
  std::vector<uint8_t> empty(e.count(), 0);
  EXPECT_EQ(um::surface_dice(g.data(), g.data(), e, {2, 1, 1}, 0.0), 1.0);
  EXPECT_EQ(um::surface_dice(g.data(), empty.data(), e, {2, 1, 1}, 5.0), 0.0);
  EXPECT_TRUE(std::isnan(um::surface_dice(empty.data(), empty.data(), e, {2, 1, 1}, 1.0)));
}

TEST(Metrics_Nsd, per_label_uses_conventions_and_bounding_boxes) {
  std::mt19937 rng(41);
  const uv::Extents e{10, 24, 20};
  const uv::Spacing s{2.5, 0.8, 0.6};
  // Label 1 in both, label 2 only in gt, label 3 only in pred, label 4 in neither.
  auto g1 = random_blob(e, rng, 1.0), p1 = random_blob(e, rng, 1.0);
  auto g2 = random_blob(e, rng, 1.0), p3 = random_blob(e, rng, 1.0);
  std::vector<uint8_t> none(e.count(), 0);
  for (int64_t i = 0; i < e.count(); ++i) {  // keep the labels disjoint per image
    if (g1[i]) g2[i] = 0;
    if (p1[i]) p3[i] = 0;
  }
  const Image gt = labels_image({g1, g2, none}, e, DType::U8);
  const Image pred = labels_image({p1, none, p3}, e, DType::I16);
  um::LabelScoreOptions o;
  o.labels = {1, 2, 3, 4};
  const auto r = um::surface_dice_per_label(
      gt, pred, s, [](int64_t l) { return l == 1 ? 2.0 : 3.0; }, o);
  ASSERT_EQ(r.size(), 4u);
  EXPECT_NEAR(r[0].nsd, ref_nsd(g1, p1, e, s, 2.0), 1e-12);
  int64_t a = 0, b = 0, both = 0;
  for (int64_t i = 0; i < e.count(); ++i) a += g1[i], b += p1[i], both += g1[i] && p1[i];
  EXPECT_NEAR(r[0].dsc, 2.0 * both / (a + b), 1e-15);
  EXPECT_EQ(r[1].nsd, 0.0);
  EXPECT_EQ(r[1].dsc, 0.0);
  EXPECT_EQ(r[2].nsd, 0.0);
  EXPECT_EQ(r[3].nsd, 1.0);  // absent from both: 1, as U-Mamba and FLARE
  EXPECT_EQ(r[3].dsc, 1.0);
  o.both_absent = std::numeric_limits<double>::quiet_NaN();
  const auto n = um::surface_dice_per_label(
      gt, pred, s, [](int64_t) { return 1.0; }, o);
  EXPECT_TRUE(std::isnan(n[3].nsd));
  // Default label set: every label present in either image.
  const auto d = um::dice_per_label(gt, pred);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[2].label, 3);
}

TEST(Metrics_Nsd, objects_touching_the_border_and_single_voxels) {
  const uv::Extents e{4, 6, 7};
  std::vector<uint8_t> g(e.count(), 0), p(e.count(), 0);
  for (int64_t y = 0; y < 6; ++y)
    for (int64_t x = 0; x < 3; ++x) g[(0 * 6 + y) * 7 + x] = 1;  // touches three faces
  p[(0 * 6 + 0) * 7 + 0] = 1;                                    // one corner voxel
  for (double tol : {0.0, 1.0, 2.0, 4.0}) {
    EXPECT_NEAR(um::surface_dice(g.data(), p.data(), e, {1.5, 1, 0.5}, tol),
                ref_nsd(g, p, e, {1.5, 1, 0.5}, tol), 1e-12);
  }
  const Image gi = labels_image({g}, e, DType::U8), pi = labels_image({p}, e, DType::U8);
  const auto r = um::surface_dice_per_label(gi, pi, {1.5, 1, 0.5}, [](int64_t) { return 1.0; });
  EXPECT_NEAR(r[0].nsd, ref_nsd(g, p, e, {1.5, 1, 0.5}, 1.0), 1e-12);
}

TEST(Metrics_Nsd, one_slice_object_in_a_volume_is_a_3d_slab) {
  const uv::Extents e{5, 8, 8};
  std::vector<uint8_t> g(e.count(), 0), p(e.count(), 0);
  for (int64_t y = 2; y < 6; ++y)
    for (int64_t x = 2; x < 6; ++x) g[(2 * 8 + y) * 8 + x] = 1, p[(2 * 8 + y) * 8 + x + 1] = 1;
  const Image gi = labels_image({g}, e, DType::U8), pi = labels_image({p}, e, DType::U8);
  const auto r = um::surface_dice_per_label(gi, pi, {3, 1, 1}, [](int64_t) { return 0.5; });
  EXPECT_NEAR(r[0].nsd, ref_nsd(g, p, e, {3, 1, 1}, 0.5), 1e-12);
}

TEST(Metrics_Dsc, counts_match_plain_loops) {
  std::mt19937 rng(2);
  const uv::Extents e{3, 20, 20};
  std::uniform_int_distribution<int> lab(0, 5);
  Image g = Image::zeros(DType::U16, Shape{1, e.z, e.y, e.x});
  Image p = Image::zeros(DType::U8, Shape{1, e.z, e.y, e.x});
  for (int64_t i = 0; i < e.count(); ++i) {
    g.data_as<uint16_t>()[i] = static_cast<uint16_t>(lab(rng));
    p.data_as<uint8_t>()[i] = static_cast<uint8_t>(lab(rng));
  }
  const auto r = um::dice_per_label(g, p);
  ASSERT_EQ(r.size(), 5u);
  for (const auto& sc : r) {
    int64_t a = 0, b = 0, both = 0;
    for (int64_t i = 0; i < e.count(); ++i) {
      const bool x = g.data_as<uint16_t>()[i] == sc.label, y = p.data_as<uint8_t>()[i] == sc.label;
      a += x, b += y, both += x && y;
    }
    EXPECT_EQ(sc.gt_voxels, a);
    EXPECT_EQ(sc.pred_voxels, b);
    EXPECT_EQ(sc.intersection, both);
    EXPECT_DOUBLE_EQ(sc.dsc, 2.0 * both / (a + b));
  }
}

TEST(Metrics_Dsc, rejects_mismatches_and_bad_labels) {
  const Image a = Image::zeros(DType::U8, Shape{1, 2, 5, 5});
  const Image b = Image::zeros(DType::U8, Shape{1, 1, 5, 5});
  EXPECT_THROW(um::dice_per_label(a, b), umamba::Error);
  um::LabelScoreOptions o;
  o.labels = {0};
  EXPECT_THROW(um::dice_per_label(a, a, o), umamba::Error);
  EXPECT_THROW(um::surface_dice(nullptr, nullptr, {1, 2, 2}, {1, 1, 1}, -1.0), umamba::Error);
}
