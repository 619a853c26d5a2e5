// Sliding-window geometry: where the tiles go, how inputs smaller than the patch are padded, and
// the Gaussian importance map that blends overlapping tiles.
//
// Method: nnU-Net v2 (2.2.1, the version U-Mamba vendors), inference/sliding_window_prediction.py
// and predict_from_raw_data.py, as summarised in shared/reference/umamba-mamba-nnunet.md §4.4:
//  * steps per axis: n = ceil((size - tile) / (tile * step)) + 1 positions, evenly spaced,
//    position i = round(i * (size - tile) / (n - 1)) with NumPy's round-half-to-even;
//  * inputs smaller than the patch are padded with zeros, centred (pad_nd_image: below = d // 2,
//    above = d - d // 2), and the prediction is cropped back;
//  * the Gaussian map is scipy.ndimage.gaussian_filter of a unit impulse at the centre voxel
//    (index size // 2) with sigma = size / 8 per axis (truncate 4, constant border), divided by its
//    maximum, multiplied by 10, rounded to float16, and zeros replaced by the smallest non-zero
//    value (3D patches have float16 zeros in their corners).
// Limits: positions are computed in double precision exactly as NumPy does; the Gaussian map is
// computed in double and then optionally rounded to float16 (nnU-Net's dtype) before use in f32.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace umamba::engine {

// Tile start positions along one axis (nnU-Net's compute_steps_for_sliding_window). Requires
// size >= tile >= 1 and 0 < step <= 1; throws umamba::Error otherwise.
std::vector<int64_t> compute_steps(int64_t size, int64_t tile, double step);

// Zero padding that brings `size` up to at least `patch`, centred as nnU-Net's pad_nd_image.
struct Padding {
  int64_t below = 0;
  int64_t above = 0;
  int64_t total() const { return below + above; }
};
Padding padding_for(int64_t size, int64_t patch);

struct GaussianOptions {
  double sigma_scale = 1.0 / 8.0;  // sigma = patch edge * sigma_scale, per axis
  double value_scaling = 10.0;     // the map's maximum (nnU-Net: value_scaling_factor = 10)
  bool round_to_half = true;       // round to float16 as nnU-Net stores it, then fix zeros
};

// The 1-D Gaussian profile scipy.ndimage.gaussian_filter applies to an impulse at index size / 2:
// weights phi(x) = exp(-x^2 / (2 sigma^2)) normalised to sum 1 over |x| <= int(4 sigma + 0.5),
// zero beyond. Length `size`, in double.
std::vector<double> gaussian_profile(int64_t size, double sigma);

// The importance map of a patch [Z,Y,X] (Z = 1 for 2D), contiguous with X fastest, f32.
std::vector<float> gaussian_importance_map(const std::array<int64_t, 3>& patch,
                                           const GaussianOptions& options = {});

// Rounds a float to the nearest float16 value (round half to even) and back, as torch .half().
float round_to_half(float value);

// The tile layout over a padded image [Z,Y,X]. For a 3D model all three axes are tiled; for a 2D
// model (patch[0] == 1) every slice is its own 2D problem: z positions are 0..Z-1 and the Y/X
// positions are computed per plane (the same for every slice).
struct TileGrid {
  std::array<int64_t, 3> image{1, 1, 1};      // padded spatial shape [Z,Y,X]
  std::array<int64_t, 3> patch{1, 1, 1};      // [Z,Y,X]
  std::array<Padding, 3> padding{};           // applied to the original image to get `image`
  std::array<std::vector<int64_t>, 3> steps;  // start positions per axis, ascending

  int64_t count() const {
    return static_cast<int64_t>(steps[0].size() * steps[1].size() * steps[2].size());
  }
  // Tile `index` in raster order (z outermost, x fastest), as nnU-Net iterates them.
  std::array<int64_t, 3> start(int64_t index) const;
};

// Builds the grid for an original spatial shape [Z,Y,X]. `model_dims` is 2 or 3; for 2 the patch
// is [1, py, px] and only Y and X are padded.
TileGrid make_tile_grid(const std::array<int64_t, 3>& shape, const std::array<int64_t, 3>& patch,
                        int model_dims, double step);

}  // namespace umamba::engine
