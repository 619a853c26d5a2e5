// Neighbour codes and surfel measures: see surface.h for the definition and its source.
#include "volumetric/surface.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <cmath>

#include "core/error.h"

namespace umamba::volumetric {

namespace {

const SurfelNormals kNormals[256] = {
#include "volumetric/surfel_normals.inc"
};

}  // namespace

Extents corner_extents(const Extents& e) {
  return Extents{e.z == 1 ? 1 : e.z + 1, e.y + 1, e.x + 1};
}

const SurfelNormals& surfel_normals(uint8_t code) {
  return kNormals[code];
}

void neighbour_codes(const uint8_t* mask, const Extents& e, uint8_t* codes) {
  UMAMBA_CHECK(e.z >= 1 && e.y >= 1 && e.x >= 1,
               "neighbour codes: extents must be positive, got {}x{}x{} (ZxYxX)", e.z, e.y, e.x);
  const bool is_3d = e.z > 1;
  const Extents c = corner_extents(e);
  // Mask value at (z, y, x), 0 outside.
  auto at = [&](int64_t z, int64_t y, int64_t x) -> uint8_t {
    if (z < 0 || y < 0 || x < 0 || z >= e.z || y >= e.y || x >= e.x) return 0;
    return mask[(z * e.y + y) * e.x + x] != 0;
  };
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, c.z * c.y, 16), [&](const auto& range) {
    for (int64_t row = range.begin(); row != range.end(); ++row) {
      const int64_t k = row / c.y;  // corner slice
      const int64_t j = row % c.y;  // corner row
      uint8_t* out = codes + row * c.x;
      if (!is_3d) {
        // Pixels (j-1+b, i-1+c) carry 8 >> (2b + c); sweep i keeping the previous column.
        uint8_t prev = 0;  // bits of column i-1 (b = 0 -> 8, b = 1 -> 2)
        for (int64_t i = 0; i < c.x; ++i) {
          const uint8_t cur = static_cast<uint8_t>((at(0, j - 1, i) << 2) | (at(0, j, i) << 0));
          out[i] = static_cast<uint8_t>((prev << 1) | cur);
          prev = cur;
        }
      } else {
        uint8_t prev = 0;
        for (int64_t i = 0; i < c.x; ++i) {
          // Column i (c = 1): a,b in {0,1} -> bit 128 >> (4a + 2b + 1).
          const uint8_t cur =
              static_cast<uint8_t>((at(k - 1, j - 1, i) << 6) | (at(k - 1, j, i) << 4) |
                                   (at(k, j - 1, i) << 2) | (at(k, j, i) << 0));
          out[i] = static_cast<uint8_t>((prev << 1) | cur);
          prev = cur;
        }
      }
    }
  });
}

std::vector<double> surface_measure_table(bool is_3d, const Spacing& s) {
  for (int a = 0; a < 3; ++a) {
    UMAMBA_CHECK(std::isfinite(s[a]) && s[a] > 0,
                 "surface measure: spacing of axis {} must be positive and finite, got {}", a,
                 s[a]);
  }
  if (!is_3d) {
    const double vertical = s[1], horizontal = s[2];  // rows (Y), columns (X)
    const double diag = 0.5 * std::sqrt(vertical * vertical + horizontal * horizontal);
    std::vector<double> t(16, 0.0);
    // Bits: 8 top-left, 4 top-right, 2 bottom-left, 1 bottom-right.
    for (int code : {1, 2, 4, 8, 7, 11, 13, 14}) t[code] = diag;  // one corner in or out
    t[0b0011] = t[0b1100] = horizontal;                           // a horizontal edge
    t[0b0101] = t[0b1010] = vertical;                             // a vertical edge
    t[0b0110] = t[0b1001] = 2 * diag;                             // saddles
    return t;
  }
  std::vector<double> t(256, 0.0);
  for (int code = 0; code < 256; ++code) {
    double sum = 0;
    for (const auto& n : kNormals[code].n) {
      const double a = n[0] / 8.0 * s[1] * s[2];
      const double b = n[1] / 8.0 * s[0] * s[2];
      const double c = n[2] / 8.0 * s[0] * s[1];
      sum += std::sqrt(a * a + b * b + c * c);
    }
    t[code] = sum;
  }
  return t;
}

}  // namespace umamba::volumetric
