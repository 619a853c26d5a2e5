// Connected-component labelling (CCL) of binary and multi-label images, 2D and 3D.
//
// Method: a run-based two-scan labeller (He, Chao, Suzuki, "A run-based two-scan labeling
// algorithm", IEEE TIP 17(5):749-756, 2008). The first scan cuts each row into runs of foreground
// (binary) or of equal non-zero values (multi-label); for u8/u16 input the run boundaries come from
// SIMD compare masks, 64 pixels at a time. Each run is joined to the overlapping runs of its
// neighbour rows (previous row; in 3D also the rows of the previous slice) through a flat
// union-find with union-by-minimum and path halving. The second scan writes whole runs with
// std::fill. The parallel path (TBB) cuts the rows into bands, labels the bands independently,
// joins them across band faces with Boost's disjoint sets (boost/pending/disjoint_sets.hpp) and
// writes the bands in parallel; it yields the same labels as the serial path.
//
// Output: u32 labels, 0 background, components numbered 1..N in raster order of their first pixel
// (Z, then Y, then X), which is also scipy.ndimage.label's numbering.
//
// Limits: X < 2^32; at most 2^32-2 runs per image (throws Unsupported above). Floating-point
// input is not accepted (threshold it first).
#pragma once

#include <cstdint>

#include "core/image.h"

namespace umamba::postprocess {

// Neighbourhoods. In 2D (Z = 1) 6 means 4 and 18 or 26 mean 8, as in scipy; in 3D 4 and 8 are
// refused. Full() is 8 in 2D and 26 in 3D (skimage's default), Minimal() 4 and 6.
enum class Connectivity : uint8_t { C4 = 4, C8 = 8, C6 = 6, C18 = 18, C26 = 26 };

// 4, 8, 6, 18 or 26; 0 means the full neighbourhood of the image's dimension. Throws Error naming
// the value otherwise.
Connectivity connectivity_from_int(int value, bool is_3d);
Connectivity full_connectivity(bool is_3d);
Connectivity minimal_connectivity(bool is_3d);
int to_int(Connectivity c);

// Extent of a contiguous volume, X fastest. A 2D image has z = 1.
struct Extents {
  int64_t z = 1;
  int64_t y = 1;
  int64_t x = 1;
  int64_t pixels() const { return z * y * x; }
  int64_t rows() const { return z * y; }
  bool is_3d() const { return z > 1; }
};

struct CclOptions {
  Connectivity connectivity = Connectivity::C8;
  // false: every non-zero pixel is foreground; true: only equal non-zero values connect.
  bool multi_label = false;
  // 1: the serial scan. 0: TBB's current limit (umamba --threads). n > 1: at most n threads.
  int threads = 1;
  // Rows per band of the parallel path (a row is one X line; a 3D slice has Y rows); 0 chooses
  // (whole slices in 3D when there are enough of them, else about 4 bands per thread).
  int64_t band_rows = 0;
};

// Labels `in` (extents `e`, contiguous) into `out` (same extents). Returns the number of
// components N. T: any integer type (u8..i64); negative values are ordinary labels.
template <typename T>
uint32_t label_components(const T* in, const Extents& e, uint32_t* out, const CclOptions& options);

// Image wrapper: one channel of any integer dtype, any strides. Returns a contiguous U32 image of
// shape [1,Z,Y,X] with the input's geometry; `count` (optional) receives N.
Image label_components(const Image& in, const CclOptions& options, uint32_t* count = nullptr);

}  // namespace umamba::postprocess
