// Exact Euclidean distance transform with anisotropic spacing.
//
// For every voxel of a [Z,Y,X] buffer, the squared distance in physical units to the nearest
// feature voxel (feature != 0):  d²(p) = min_q Σ_a ((p_a − q_a)·s_a)².
//
// Method: separable exact transform (Saito & Toriwaki 1994), one 1D pass per axis, each pass the
// lower envelope of parabolas of Felzenszwalb & Huttenlocher ("Distance Transforms of Sampled
// Functions", Theory of Computing 8, 2012) with the axis weight s_a folded into the parabolas as
// in seung-lab's `edt`. Passes run Z, then Y, then X, so the sum is accumulated in the order
// scipy.ndimage.distance_transform_edt uses for an array in [Z,Y,X] order: ((dz·sz)² + (dy·sy)²) +
// (dx·sx)². Lines of a pass run in parallel with TBB.
//
// Limits: doubles throughout (exact for integer offsets times spacing up to 2^26 voxels per axis);
// voxels with no feature anywhere get +inf. Where two feature voxels are at the same real
// distance, the value may differ from scipy's in the last bit.
#pragma once

#include <cstdint>
#include <limits>

#include "volumetric/extents.h"

namespace umamba::volumetric {

// `feature` and `out` hold extents.count() elements, [Z,Y,X] contiguous; out in units².
// `max_distance`: values above max_distance²·(1 + 1e-12) may be returned as +inf (they are
// dropped after every pass, which skips most of the work where only "within τ" matters); values
// within it are exact.
void squared_distance_transform(const uint8_t* feature, const Extents& extents,
                                const Spacing& spacing, double* out,
                                double max_distance = std::numeric_limits<double>::infinity());

// The same, then the square root of each value (physical units).
void distance_transform(const uint8_t* feature, const Extents& extents, const Spacing& spacing,
                        double* out);

// One 1D lower-envelope pass (exposed for tests): d[p] = min_q f[q] + ((p − q)·w)², +inf where
// every f is +inf. `v` (int64) and `z` (n + 1 doubles) are scratch; d must not alias f.
void lower_envelope_1d(const double* f, int64_t n, double w, double* d, int64_t* v, double* z);

}  // namespace umamba::volumetric
