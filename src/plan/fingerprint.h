// The dataset fingerprint: what the planner needs to know about a training set.
//
// What: per case the spacing and the shape after cropping to the non-zero bounding box, the
// relative size of that box, and per channel the intensities of foreground voxels (label > 0)
// sampled the way nnU-Net v2 does (DatasetFingerprintExtractor, v2.2.1): each case draws
// floor(1e8 / n_cases) voxels per channel with replacement from its foreground, with a fresh
// np.random.RandomState(1234) per case, channels in order from the same stream; the samples of all
// cases are pooled and summarised (mean, median, std, min, max, 0.5th and 99.5th percentiles).
// The JSON form uses nnU-Net's dataset_fingerprint.json key names.
// Method: we keep, per case and channel, how often each foreground voxel was drawn (not the 1e8
// samples), which gives the same multiset and therefore the same statistics.
// Limits: axes are nnU-Net's [Z,Y,X]; 2D images get spacing (999, sy, sx) like nnU-Net's
// NaturalImage2DIO. Intensities are taken as float32 (nnU-Net reads images as float32).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/image.h"
#include "plan/numpy_compat.h"

namespace umamba::plan {

struct DatasetDescription;

struct IntensityProperties {
  double mean = 0, median = 0, std = 0, min = 0, max = 0;
  double percentile_99_5 = 0, percentile_00_5 = 0;
};

struct Fingerprint {
  std::vector<std::array<double, 3>> spacings;            // per case, [Z,Y,X]
  std::vector<std::array<int64_t, 3>> shapes_after_crop;  // per case, [Z,Y,X] voxels
  std::vector<IntensityProperties> foreground_intensity_properties_per_channel;
  double median_relative_size_after_cropping = 1.0;
};

nlohmann::ordered_json fingerprint_to_json(const Fingerprint& f);
// Accepts nnU-Net's dataset_fingerprint.json; `origin` names the source in errors.
Fingerprint fingerprint_from_json(const nlohmann::json& j, const std::string& origin);

// nnU-Net's sample budget: 10e7 foreground voxels per channel over the whole dataset.
inline constexpr double kForegroundSamplesTotal = 10e7;
inline constexpr uint32_t kForegroundSampleSeed = 1234;

// What one case contributes.
struct CaseAnalysis {
  std::array<double, 3> spacing{};
  std::array<int64_t, 3> shape_after_crop{};
  double relative_size_after_cropping = 1.0;
  // Per channel: the sampled foreground intensities as sorted (value, count) runs.
  std::vector<std::vector<numpy::WeightedValue>> samples;
};

// Bounding box of the voxels where any channel is non-zero (nnU-Net's crop_to_nonzero; filling
// holes in the mask, as nnU-Net does, cannot change the box). The whole image when all are zero.
Box nonzero_bounding_box(const Image& image);

// Analyses one case: `image` [C,Z,Y,X] any dtype, `labels` [1,Z,Y,X] integer labels of the same
// spatial shape, `spacing` [Z,Y,X]. Draws `num_samples` foreground intensities per channel.
CaseAnalysis analyze_case(const Image& image, const Image& labels,
                          const std::array<double, 3>& spacing, uint64_t num_samples,
                          uint32_t seed = kForegroundSampleSeed);

// Pools the cases (in order) into the fingerprint. Throws when no case has a foreground voxel.
Fingerprint aggregate_fingerprint(const std::vector<CaseAnalysis>& cases);

struct FingerprintOptions {
  double total_foreground_samples = kForegroundSamplesTotal;
};

// Reads every case of `dataset` (TBB over cases, through src/io) and computes the fingerprint.
// Sets dataset.channel_names for the NeurIPS layout (R,G,B or grey) from the images.
Fingerprint extract_fingerprint(DatasetDescription& dataset,
                                const FingerprintOptions& options = {});

}  // namespace umamba::plan
