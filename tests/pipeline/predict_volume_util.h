// Helpers of the medical-volume predict tests: the bundled CT, a tiny 3D model folder whose plans
// give a spacing, transpose and CT normalisation, and the job that predicts with it on the CPU.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <vector>

#include "model/model_folder.h"
#include "model/model_io.h"
#include "pipeline/predict.h"
#include "pipeline/predict_model_util.h"

namespace umamba::pipeline::test {

inline const fs::path kCt =
    fs::path(UMAMBA_SOURCE_DIR) / "examples/data/totalsegmentator/example_ct_sm.nii.gz";

// CT normalisation of the plans below (clip to the percentiles, then the dataset's mean and std).
inline constexpr double kLo = -1000, kHi = 1000, kMean = 50, kStd = 200;

// A tiny 3D PlainConvUNet (patch 16³, 3 classes) with plans giving `spacing` (after transpose)
// and CT normalisation.
inline void make_volume_model(const fs::path& dir, const std::vector<double>& spacing,
                              const std::vector<int64_t>& transpose) {
  const model::NetworkConfig config = tiny_config(3);
  torch::manual_seed(21);
  auto net = model::make_network(config);
  balance_classes(*net);
  const nlohmann::json plans = {
      {"transpose_forward", transpose},
      {"foreground_intensity_properties_per_channel",
       {{"0",
         {{"mean", kMean}, {"std", kStd}, {"percentile_00_5", kLo}, {"percentile_99_5", kHi}}}}},
      {"configurations",
       {{"3d_fullres",
         {{"spacing", spacing},
          {"patch_size", {16, 16, 16}},
          {"normalization_schemes", {"CTNormalization"}},
          {"use_mask_for_norm", {false}}}}}}};
  const nlohmann::json dataset = {{"channel_names", {{"0", "CT"}}},
                                  {"labels", {{"background", 0}, {"a", 1}, {"b", 2}}},
                                  {"file_ending", ".nii.gz"}};
  model::write_model_folder(dir.string(), config, {{"0", net.get()}}, plans, dataset,
                            {{"configuration", "3d_fullres"}, {"source", {{"kind", "test"}}}});
}

inline PredictJob volume_job(const fs::path& input, const fs::path& out, const fs::path& model) {
  PredictJob job;
  job.inputs = {input.string()};
  job.output = out;
  job.model = model;
  job.mirror = false;
  job.postprocess = "none";
  job.device = "cpu";
  job.progress = "off";
  job.handle_signals = false;
  return job;
}

}  // namespace umamba::pipeline::test
