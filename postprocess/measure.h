// Per-object measurements of a label image, as a table with scikit-image's regionprops_table
// column names, written as CSV.
//
// Columns, one row per label present (ascending), axes in numpy order (Z, Y, X; a 2D image has
// only Y, X):
//   label
//   area                      pixel (voxel) count                         = skimage 'area'
//   area_physical             area × the product of the spacing (unit^2 or unit^3); skimage's
//                             'area' when called with spacing=
//   bbox-0 .. bbox-{2n-1}     min row/col (/plane), then max + 1          = skimage 'bbox'
//   centroid-0 .. centroid-{n-1}  mean pixel coordinate                   = skimage 'centroid'
//   equivalent_diameter_area  diameter of the disc (sphere) of the same area, in pixels:
//                             (2·n·area/pi)^(1/n)
//   equivalent_diameter_physical  the same from area_physical
//   intensity_mean, intensity_min, intensity_max   per channel of the intensity image; with
//                             several channels the names get "-<c>" (skimage's separator)
// Method: one pass over the pixels accumulating counts, coordinate sums, boxes and intensity
// sums/extremes per label (sums in double).
// Limits: labels are one integer channel; negative labels are an error.
#pragma once

#include <string>
#include <vector>

#include "core/image.h"

namespace umamba::postprocess {

struct RegionTable {
  std::vector<std::string> columns;
  std::vector<std::vector<double>> rows;  // rows[i][j]: column j of object i
  // Index of a column by name; throws Error when absent.
  size_t column(const std::string& name) const;
};

// `intensity` (optional, may be empty): [C,Z,Y,X] of the same Z,Y,X as `labels`, any dtype.
RegionTable region_properties(const Image& labels, const Image& intensity = {});

// CSV with a header line; integers written without a decimal point, reals with up to 17
// significant digits (shortest exact form).
std::string to_csv(const RegionTable& table);

}  // namespace umamba::postprocess
