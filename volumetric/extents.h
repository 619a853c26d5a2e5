// Extents and spacing of a raw [Z,Y,X] buffer (X fastest, contiguous), shared by the volumetric
// algorithms. A 2D image is Z = 1.
#pragma once

#include <array>
#include <cstdint>

namespace umamba::volumetric {

struct Extents {
  int64_t z = 1;  // slices
  int64_t y = 1;  // rows
  int64_t x = 1;  // columns

  int64_t count() const { return z * y * x; }
  bool operator==(const Extents&) const = default;
};

// Voxel size per axis [Z,Y,X] in physical units (mm, µm, or 1 for pixels).
using Spacing = std::array<double, 3>;

}  // namespace umamba::volumetric
