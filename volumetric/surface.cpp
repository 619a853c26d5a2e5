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
  // Row (z, y) of the mask, or null outside it.
  auto row_of = [&](int64_t z, int64_t y) -> const uint8_t* {
    if (z < 0 || y < 0 || z >= e.z || y >= e.y) return nullptr;
    return mask + (z * e.y + y) * e.x;
  };
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, c.z * c.y, 16), [&](const auto& range) {
    for (int64_t row = range.begin(); row != range.end(); ++row) {
      const int64_t k = row / c.y;  // corner slice
      const int64_t j = row % c.y;  // corner row
      uint8_t* out = codes + row * c.x;
      // The four mask rows around this corner row, each with its bit for column i (c = 1); the
      // bit of column i-1 (c = 0) is twice it. 2D: rows (j-1, j) -> 4, 1; 3D: (k-1, j-1) -> 64,
      // (k-1, j) -> 16, (k, j-1) -> 4, (k, j) -> 1.
      const uint8_t* rows[4] = {nullptr, nullptr, nullptr, nullptr};
      uint8_t bits[4] = {0, 0, 0, 0};
      int nrows = 0;
      auto add = [&](const uint8_t* r, uint8_t bit) {
        if (r) rows[nrows] = r, bits[nrows++] = bit;
      };
      if (is_3d) {
        add(row_of(k - 1, j - 1), 64);
        add(row_of(k - 1, j), 16);
        add(row_of(k, j - 1), 4);
        add(row_of(k, j), 1);
      } else {
        add(row_of(0, j - 1), 4);
        add(row_of(0, j), 1);
      }
      uint8_t prev = 0;
      for (int64_t i = 0; i < e.x; ++i) {
        uint8_t cur = 0;
        for (int r = 0; r < nrows; ++r) cur |= rows[r][i] ? bits[r] : 0;
        out[i] = static_cast<uint8_t>((prev << 1) | cur);
        prev = cur;
      }
      out[e.x] = static_cast<uint8_t>(prev << 1);  // the last corner column sees column X-1 only
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
