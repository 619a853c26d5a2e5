// Instance F1 of cell segmentations by the NeurIPS 2022 Cell Segmentation challenge's rule
// (Ma et al., Nature Methods 21:1103, 2024; JunMa11/NeurIPS-CellSeg baseline/compute_metric.py,
// the script of the grand-challenge platform), with StarDist's extras (stardist/matching.py).
//
// Per image: cells touching the 2-pixel frame are removed from the ground truth and from the
// prediction independently, both are relabelled 1..n, the IoU of every overlapping pair comes from
// the pixel overlap counts (a sparse table of pairs, never a dense n_true × n_pred matrix), and
// cells are matched one to one at IoU ≥ threshold. TP = matched pairs, FP = n_pred − TP,
// FN = n_true − TP (all 0 when the prediction has no cell, as the script does); precision
// TP/n_pred, recall TP/n_true, F1 = 2PR/(P+R), all 0 when TP = 0 (so two empty images score 0).
// Images of 25 megapixels or more are zero-padded to multiples of 2000 and scored tile by tile
// (frame removal per tile), the counts summed.
//
// Matching: the script solves linear_sum_assignment on −[IoU ≥ t] − IoU/(2·min(n_true, n_pred)),
// which maximises the number of pairs at or above t. For t ≥ ½ a cell has at most one partner at
// or above t (two only in an exact IoU = ½ tie, where either choice gives the same count and the
// same IoU), so pairs are taken as found; for t < ½ the same cost is minimised exactly with the
// Hungarian algorithm, one connected component of overlapping cells at a time. IoU ≥ t is decided
// in integers: inter·den ≥ num·union for t = num/den, so IoU = ½ exactly is a match.
//
// Extras (StarDist definitions, with FP = n_pred − TP and FN = n_true − TP even for an empty
// prediction): mean matched IoU = ΣIoU/TP, panoptic quality = ΣIoU/(TP + FP/2 + FN/2) (Kirillov
// et al., CVPR 2019), AP(t) = TP/(TP + FP + FN) at t = 0.50, 0.55, ..., 0.95 and their mean.
//
// Limits: labels must be integers ≥ 0 in one channel; 3D label volumes are accepted (the frame
// then also covers the first and last 2 slices; the script itself is 2D only) and never tiled.
// With keep_border the script's tiled branch fails (NameError); here tiles then keep their cells,
// so a cell cut by a tile edge counts in both tiles. Where the script casts the prediction tile to
// the ground truth's dtype (wrapping large ids), we keep every id.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "core/image.h"

namespace umamba::metrics {

// An IoU threshold as an exact fraction num/den.
struct Threshold {
  int64_t num = 1;
  int64_t den = 2;

  // "0.5", "0.55", ".7", "1": the decimal as written, exactly. Throws Error outside [0, 1].
  static Threshold parse(std::string_view decimal);
  // The shortest decimal that prints as `value` (0.55 -> 11/20).
  static Threshold from_double(double value);
  double value() const { return static_cast<double>(num) / static_cast<double>(den); }
  // IoU = inter/union ≥ num/den, exactly.
  bool passes(int64_t inter, int64_t uni) const {
    return static_cast<__int128>(inter) * den >= static_cast<__int128>(num) * uni;
  }
};

struct F1Options {
  Threshold threshold;       // IoU at which a pair matches (0.5)
  bool keep_border = false;  // true: keep cells touching the frame (the script's --count_bd_cells)
  int64_t border = 2;        // frame width in pixels
  int64_t tile = 2000;       // tile edge of large images
  int64_t tile_from_pixels =
      25'000'000;  // images with at least this many pixels are tiled; 0 never
};

// AP thresholds 0.50, 0.55, ..., 0.95.
constexpr int kApThresholds = 10;
inline Threshold ap_threshold(int k) {
  return Threshold{10 + k, 20};
}

struct F1Counts {
  int64_t n_true = 0;  // ground-truth cells after frame removal (summed over tiles)
  int64_t n_pred = 0;  // predicted cells after frame removal
  int64_t tp = 0;
  int64_t fp = 0;              // as the script: n_pred − tp, 0 where the prediction is empty
  int64_t fn = 0;              // as the script: n_true − tp, 0 where the prediction is empty
  double matched_iou_sum = 0;  // Σ IoU over the matched pairs
  std::array<int64_t, kApThresholds> tp_at{};  // TP at the AP thresholds
};

struct F1Result {
  F1Counts counts;
  double precision = 0;
  double recall = 0;
  double f1 = 0;
  double dice = 0;  // foreground Dice (gt>0 vs pred>0) on the whole image, as the script
  double mean_matched_iou = 0;  // StarDist mean_matched_score
  double panoptic_quality = 0;
  std::array<double, kApThresholds> ap{};
  double mean_ap = 0;
  bool tiled = false;
};

// gt and pred: one channel, the same [Z,Y,X], integer dtypes (any, ids ≥ 0, 0 = background).
F1Result instance_f1(const Image& gt, const Image& pred, const F1Options& options = {});

// Foreground Dice as the script computes it: 1 when both are empty, 0 when only one is.
double foreground_dice(int64_t gt_pixels, int64_t pred_pixels, int64_t both_pixels);

}  // namespace umamba::metrics
