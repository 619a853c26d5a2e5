// Per-label overlap and surface scores of semantic label maps (organs, instrument classes):
// Dice (DSC) and Normalized Surface Dice (NSD, Nikolov et al., arXiv:1809.04430), in 2D and 3D
// with anisotropic spacing.
//
// DSC = 2|G∩P| / (|G| + |P|). NSD at tolerance τ follows DeepMind's surface-distance
// (compute_surface_dice_at_tolerance): surfels of both masks on the voxel-corner grid with their
// areas (2D: contour lengths; volumetric/surface.h), the distance of every surfel to the other
// mask's surface from the exact EDT (volumetric/edt.h), and
//   NSD = (Σ_{g: d(g→P) ≤ τ} a_g + Σ_{p: d(p→G) ≤ τ} a_p) / (Σ a_g + Σ a_p).
// Distances are compared as d² ≤ τ²·(1 + 1e-12), so a distance equal to τ in real arithmetic
// counts whatever its last-bit rounding (scipy's float sums can land on either side).
// Conventions of U-Mamba's and FLARE's evaluation scripts: a label absent from both masks scores
// `both_absent` (1; DeepMind and MONAI give NaN), a label in only one mask scores 0 for both.
// Only the bounding box of each label (in either mask) is processed.
//
// Limits: one-channel integer label images, ids 0..2^20 (0 = background); FLARE22's extra rules
// (NSD = 0 when DSC < 0.2, the GT z-range crop for aorta, IVC and oesophagus) are not applied.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "core/image.h"
#include "volumetric/extents.h"

namespace umamba::metrics {

struct LabelScore {
  int64_t label = 0;
  int64_t gt_voxels = 0;
  int64_t pred_voxels = 0;
  int64_t intersection = 0;
  double dsc = 0;
  double nsd = std::numeric_limits<double>::quiet_NaN();        // surface_dice_per_label only
  double tolerance = std::numeric_limits<double>::quiet_NaN();  // in the spacing's unit
  double gt_surface = 0;  // Σ surfel areas (units², 2D: length in units)
  double pred_surface = 0;
  double gt_surface_within = 0;  // the part within the tolerance of the other surface
  double pred_surface_within = 0;
};

struct LabelScoreOptions {
  std::vector<int64_t> labels;  // labels to score; empty: every label > 0 in either image
  double both_absent = 1.0;     // score of a label absent from both masks (U-Mamba/FLARE: 1)
};

std::vector<LabelScore> dice_per_label(const Image& gt, const Image& pred,
                                       const LabelScoreOptions& options = {});

// `spacing` [Z,Y,X] (typically gt.geometry().spacing); tolerance(label) in the same unit. 2D when
// the images have one slice.
std::vector<LabelScore> surface_dice_per_label(const Image& gt, const Image& pred,
                                               const volumetric::Spacing& spacing,
                                               const std::function<double(int64_t)>& tolerance,
                                               const LabelScoreOptions& options = {});

// NSD of two binary masks of the same extents (raw, [Z,Y,X] contiguous, non-zero = inside):
// fills the surface fields of `out` and returns the NSD (NaN when both masks are empty).
double surface_dice(const uint8_t* gt, const uint8_t* pred, const volumetric::Extents& extents,
                    const volumetric::Spacing& spacing, double tolerance,
                    LabelScore* out = nullptr);

}  // namespace umamba::metrics
