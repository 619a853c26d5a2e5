// Intensity normalisation before inference, per channel, as nnU-Net v2 preprocesses
// (preprocessing/normalization/default_normalization_schemes.py; reference §4.3):
//   ZScore        (x - mean) / max(std, 1e-8), mean and std of this image's channel
//                 (over the non-zero region when use_mask_for_norm; values outside it become 0)
//   CT            clip to the dataset's foreground percentiles [0.5, 99.5], then
//                 (x - fg_mean) / max(fg_std, 1e-8) with the dataset's foreground statistics
//   NoNorm        x unchanged
//   RescaleTo01   (x - min) / max(max - min, 1e-8) over this image's channel
//   RgbTo01       x / 255 (values must lie in [0, 255])
// Image statistics are computed in double precision over the whole image (streamed by bands for
// large inputs); nnU-Net computes them in float32 with NumPy, which can differ in the last bits.
// Limits: nnU-Net's mask for use_mask_for_norm is the non-zero region of all channels with holes
// filled (binary_fill_holes); here the mask is "any channel non-zero", without hole filling.
// Cropping to the non-zero bounding box and resampling to the target spacing happen before the
// engine (the planner's preprocessing), not here.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/image.h"

namespace umamba::engine {

enum class NormScheme { ZScore, CT, NoNorm, RescaleTo01, RgbTo01 };

// nnU-Net's class names: "ZScoreNormalization", "CTNormalization", "NoNormalization",
// "RescaleTo01Normalization", "RGBTo0_1Normalization"; also the short forms "zscore", "ct",
// "none", "rescale", "rgb". Throws Error on anything else.
NormScheme norm_scheme_from_name(const std::string& name);
std::string norm_scheme_name(NormScheme scheme);

// Dataset-wide foreground statistics of one channel (plans.json:
// foreground_intensity_properties_per_channel["<c>"]).
struct IntensityProperties {
  double mean = 0.0;
  double std = 1.0;
  double percentile_00_5 = 0.0;
  double percentile_99_5 = 0.0;
};

struct ChannelNormalization {
  NormScheme scheme = NormScheme::ZScore;
  bool use_mask_for_norm = false;  // ZScore only
  IntensityProperties dataset;     // CT only
};

// One entry per input channel; a single entry applies to every channel.
struct Normalization {
  std::vector<ChannelNormalization> channels{ChannelNormalization{}};

  const ChannelNormalization& channel(int64_t c) const;

  // From a plans.json configuration (nnU-Net keys "normalization_schemes", "use_mask_for_norm")
  // and the plans' "foreground_intensity_properties_per_channel" (needed for CT).
  static Normalization from_plans(const nlohmann::json& configuration,
                                  const nlohmann::json& intensity_properties);
};

// What a channel's normalisation needs from the image itself.
struct ChannelStats {
  double mean = 0.0;
  double std = 0.0;
  double min = 0.0;
  double max = 0.0;
  int64_t count = 0;  // voxels that entered the statistics
};

// Accumulates per-channel statistics over bands of an image (any dtype, [C,Z,Y,X]) in double,
// combined band by band (mean and sum of squared deviations, Chan et al. 1979).
class StatsAccumulator {
 public:
  StatsAccumulator(int64_t channels, bool masked);
  void add(const Image& band);
  std::vector<ChannelStats> finish() const;

 private:
  bool masked_;
  std::vector<double> mean_, m2_, min_, max_;
  std::vector<int64_t> count_;
};

// The affine map x -> clamp(x, lo, hi) * scale + offset (and the mask rule) of every channel,
// ready to apply to bands.
struct ChannelTransform {
  double lo = -1e300, hi = 1e300;  // clipping (CT), before the affine map
  double scale = 1.0, offset = 0.0;
  bool masked = false;  // voxels where all channels are zero map to 0
  bool check_rgb = false;
};

class Normalizer {
 public:
  // `stats` may be empty when no channel needs image statistics (see needs_image_stats()).
  Normalizer(const Normalization& normalization, int64_t channels,
             const std::vector<ChannelStats>& stats);

  static bool needs_image_stats(const Normalization& normalization, int64_t channels);
  // True when the mask rule needs statistics over the non-zero region only.
  static bool needs_masked_stats(const Normalization& normalization, int64_t channels);

  const ChannelTransform& transform(int64_t c) const { return transforms_[static_cast<size_t>(c)]; }

  // Normalises `src` [C, Z, Y, X] (any dtype, any strides) into `dst`, f32 with the element
  // strides given (dst + c*sc + z*sz + y*sy + x). Throws Error for RgbTo01 values outside [0,255].
  void apply(const Image& src, float* dst, int64_t sc, int64_t sz, int64_t sy) const;

 private:
  std::vector<ChannelTransform> transforms_;
};

}  // namespace umamba::engine
