// Resampling of [C,Z,Y,X] volumes to a target shape, as nnU-Net v2 resamples images, segmentations
// and predicted probabilities (preprocessing/resampling/default_resampling.py; reference §4.2-4.4).
//
// What: `resize` is scikit-image's `transform.resize(x, shape, order, mode="edge",
// anti_aliasing=False, clip=True)` of every channel: scipy.ndimage.zoom with grid_mode=True, so
// output voxel o of an axis of n -> m voxels samples the input at  x = (o + 0.5)·n/m − 0.5
// (voxel centres aligned, the volume's edges kept in place), values outside the input repeated from
// the edge, and the result clipped to the channel's input range.
//   order 0  nearest: input index floor(x + 0.5), clamped to the axis
//   order 1  linear between floor(x) and floor(x) + 1, indices clamped (edge)
//   order 3  cubic B-spline interpolation with the exact prefilter (Unser, Aldroubi & Eden,
//            "B-spline signal processing", IEEE TSP 41, 1993; pole √3 − 2), computed as SciPy does
//            for mode "nearest": the line is padded by 12 edge voxels, filtered with mirror
//            boundary conditions, then sampled (so our values equal SciPy's to rounding)
// Method: the tensor-product spline is applied axis by axis (Z, then Y, then X: prefilter and
// interpolation along one axis commute with those along the others), each pass over groups of
// neighbouring lines in parallel (TBB), in double precision inside a line and float32 between
// passes.
//
// `resample_data` / `resample_segmentation` add nnU-Net's separate-Z rule: when the anisotropy
// rule picks an axis (separate_z_axis below), every slice across that axis is resized in-plane
// with `order` (clipped per slice, as nnU-Net calls resize per slice), then the axis itself is
// resampled with `order_z` (0: nearest, 1: linear; map_coordinates with mode "nearest", no clip).
// Segmentations follow nnU-Net's resize_segmentation: for every label value in increasing order,
// its mask is resized with order 1 (or `order`) and the label is written where the result is
// >= 0.5 (later labels win); along a separate axis the labels are taken by nearest. Only the
// bounding box each label can reach is computed, so many small organs cost little.
//
// Limits: orders 0, 1 and 3 only (nnU-Net's); no anti-aliasing before downsampling (nnU-Net passes
// anti_aliasing=False); float32 output, so values agree with scikit-image's float64 to ~1e-6
// relative. Memory: the input converted to float32 plus two float32 buffers of the larger of the
// intermediate shapes (core/memory.h limit applies).
#pragma once

#include <array>
#include <cstdint>

#include "core/image.h"

namespace umamba::volumetric {

using Shape3 = std::array<int64_t, 3>;   // [Z,Y,X] voxels
using Spacing3 = std::array<double, 3>;  // [Z,Y,X] voxel size (mm, µm)

// nnU-Net's compute_new_shape: round(old_spacing / new_spacing · old_shape) per axis, rounding
// half to even as NumPy does, at least 1.
Shape3 target_shape(const Shape3& shape, const Spacing3& spacing, const Spacing3& new_spacing);

// nnU-Net's anisotropy rule: max(spacing) / min(spacing) > threshold.
bool is_anisotropic(const Spacing3& spacing, double threshold = 3.0);

// The axis to resample on its own, or -1: nnU-Net's resample_data_or_seg_to_shape decision. The
// current spacing is asked first, then the new one; the axis is the one whose spacing is the
// largest, and none when two or three axes share that largest spacing.
int separate_z_axis(const Spacing3& current, const Spacing3& target, double threshold = 3.0);

// skimage.transform.resize semantics (see above) for every channel of `image` (any dtype,
// [C,Z,Y,X], any strides) to [C, shape]. Returns float32; geometry copied with the spacing scaled
// by old/new size per axis. `clip`: clip each channel to its input range (scikit-image's default).
Image resize(const Image& image, const Shape3& shape, int order, bool clip = true);

struct ResampleOptions {
  int order = 3;           // in-plane / all axes: 0, 1 or 3 (nnU-Net: data 3, probabilities 1)
  int order_z = 0;         // along the separate axis: 0 or 1 (nnU-Net: 0)
  int separate_axis = -1;  // 0, 1, 2 = Z, Y, X; -1 = resample all axes together
};

// nnU-Net's resample_data_or_seg(is_seg=False): float32 [C, shape].
Image resample_data(const Image& image, const Shape3& shape, const ResampleOptions& options);

// nnU-Net's resample_data_or_seg(is_seg=True) for an integer label image [1,Z,Y,X] (any integer
// dtype, negative labels allowed): same dtype [1, shape]. options.order is the one-hot order
// (nnU-Net: 1); options.order_z 0 (nearest labels along the separate axis).
Image resample_segmentation(const Image& labels, const Shape3& shape,
                            const ResampleOptions& options);

// Arg-max over channels of a float32 [K,Z,Y,X] image into a [1,Z,Y,X] class map of `dtype`
// (u8 or u16); the first maximum wins, as NumPy's argmax.
Image argmax_channels(const Image& probabilities, DType dtype);

}  // namespace umamba::volumetric
