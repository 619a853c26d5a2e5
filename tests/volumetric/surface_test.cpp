// Neighbour codes against their definition evaluated corner by corner, and surfel measures against
// closed forms (a single voxel, a single pixel, straight edges) and the symmetries of the table.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <random>
#include <vector>

#include "volumetric/surface.h"

namespace uv = umamba::volumetric;

namespace {

// Plain reference: the code of corner (k,j,i) from the 8 (2D: 4) voxels around it.
std::vector<uint8_t> codes_by_definition(const std::vector<uint8_t>& m, const uv::Extents& e) {
  const bool is_3d = e.z > 1;
  const uv::Extents c = uv::corner_extents(e);
  auto at = [&](int64_t z, int64_t y, int64_t x) -> int {
    if (z < 0 || y < 0 || x < 0 || z >= e.z || y >= e.y || x >= e.x) return 0;
    return m[(z * e.y + y) * e.x + x] != 0;
  };
  std::vector<uint8_t> out(c.count());
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
        out[(k * c.y + j) * c.x + i] = static_cast<uint8_t>(code);
      }
  return out;
}

double total_measure(const std::vector<uint8_t>& m, const uv::Extents& e, const uv::Spacing& s) {
  std::vector<uint8_t> codes(uv::corner_extents(e).count());
  uv::neighbour_codes(m.data(), e, codes.data());
  const auto table = uv::surface_measure_table(e.z > 1, s);
  double sum = 0;
  for (uint8_t c : codes) sum += table[c];
  return sum;
}

}  // namespace

TEST(Volumetric_Surface, codes_match_definition_on_random_masks) {
  std::mt19937 rng(2);
  std::bernoulli_distribution on(0.4);
  for (const uv::Extents& e : {uv::Extents{1, 9, 11}, uv::Extents{5, 7, 6}, uv::Extents{2, 1, 1},
                               uv::Extents{1, 1, 1}, uv::Extents{7, 1, 4}}) {
    std::vector<uint8_t> m(e.count());
    for (auto& v : m) v = on(rng) ? 3 : 0;  // any non-zero value is inside
    std::vector<uint8_t> got(uv::corner_extents(e).count());
    uv::neighbour_codes(m.data(), e, got.data());
    EXPECT_EQ(got, codes_by_definition(m, e)) << e.z << "x" << e.y << "x" << e.x;
  }
}

TEST(Volumetric_Surface, single_voxel_area_is_eight_corner_triangles) {
  const uv::Spacing s{2.0, 0.5, 0.8};
  std::vector<uint8_t> m(27, 0);
  m[13] = 1;  // centre of 3x3x3
  const double tri =
      std::sqrt(std::pow(s[1] * s[2], 2) + std::pow(s[0] * s[2], 2) + std::pow(s[0] * s[1], 2)) /
      8.0;
  EXPECT_NEAR(total_measure(m, {3, 3, 3}, s), 8 * tri, 1e-12);
}

TEST(Volumetric_Surface, single_pixel_contour_is_four_corner_cuts) {
  std::vector<uint8_t> m(9, 0);
  m[4] = 1;
  const uv::Spacing s{1, 0.5, 0.25};
  EXPECT_NEAR(total_measure(m, {1, 3, 3}, s), 4 * 0.5 * std::sqrt(0.25 + 0.0625), 1e-12);
}

TEST(Volumetric_Surface, rectangle_contour_has_straight_sides_and_cut_corners) {
  // A 5x8 rectangle: straight runs of (5-1) rows and (8-1) columns, four corner cuts.
  const uv::Extents e{1, 9, 12};
  std::vector<uint8_t> m(e.count(), 0);
  for (int y = 2; y < 7; ++y)
    for (int x = 2; x < 10; ++x) m[y * e.x + x] = 1;
  const uv::Spacing s{1, 0.7, 0.3};
  const double want = 2 * 4 * 0.7 + 2 * 7 * 0.3 + 4 * 0.5 * std::sqrt(0.49 + 0.09);
  EXPECT_NEAR(total_measure(m, e, s), want, 1e-12);
}

TEST(Volumetric_Surface, area_table_is_symmetric_under_axis_swaps_and_complement) {
  const uv::Spacing s{2.5, 0.8, 0.6};
  const auto t = uv::surface_measure_table(true, s);
  // Swap axes 0 and 2 (Z <-> X): voxel (a,b,c) -> (c,b,a), spacing reversed.
  const auto r = uv::surface_measure_table(true, {s[2], s[1], s[0]});
  for (int code = 0; code < 256; ++code) {
    int swapped = 0;
    for (int a = 0; a < 2; ++a)
      for (int b = 0; b < 2; ++b)
        for (int c = 0; c < 2; ++c)
          if (code & (128 >> (4 * a + 2 * b + c))) swapped |= 128 >> (4 * c + 2 * b + a);
    EXPECT_NEAR(t[code], r[swapped], 1e-12) << code;
    EXPECT_NEAR(t[code], t[255 - code], 1e-12) << code;
  }
  EXPECT_EQ(t[0], 0.0);
  EXPECT_EQ(t[255], 0.0);
}

TEST(Volumetric_Surface, box_area_approaches_faces_for_large_boxes) {
  // For an a x b x c box the marching-cubes surface is the box shrunk by half a voxel with
  // chamfered edges; its area lies between that inner box and the full box.
  const uv::Extents e{12, 14, 16};
  std::vector<uint8_t> m(e.count(), 0);
  for (int z = 1; z < 11; ++z)
    for (int y = 1; y < 13; ++y)
      for (int x = 1; x < 15; ++x) m[(z * e.y + y) * e.x + x] = 1;
  const double area = total_measure(m, e, {1, 1, 1});
  const double full = 2.0 * (10 * 12 + 10 * 14 + 12 * 14);
  const double inner = 2.0 * (9 * 11 + 9 * 13 + 11 * 13);
  EXPECT_GT(area, inner);
  EXPECT_LT(area, full);
}
