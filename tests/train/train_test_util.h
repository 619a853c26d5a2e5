// Helpers of the trainer tests: temporary folders, a tiny plans.json, synthetic datasets.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "io/image_io.h"
#include "model/model_folder.h"
#include "synth/synth.h"

namespace umamba::train::testing {

namespace fs = std::filesystem;

// A fresh folder under the system temp dir, removed at the end of the test.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    path_ = fs::temp_directory_path() / ("umamba_train_" + tag + "_" + std::to_string(::getpid()) +
                                         "_" + std::to_string(counter()++));
    model::remove_tree(path_.string());
    fs::create_directories(path_);
  }
  ~TempDir() {
    try {
      model::remove_tree(path_.string());
    } catch (...) {
    }
  }
  const fs::path& path() const { return path_; }

 private:
  static int& counter() {
    static int c = 0;
    return c;
  }
  fs::path path_;
};

// A 2D plans.json with a 3-stage network small enough for CPU tests (features 4, 8, 16).
inline nlohmann::json tiny_plans_2d(int64_t patch = 32, int64_t batch = 2) {
  nlohmann::json c;
  c["data_identifier"] = "nnUNetPlans_2d";
  c["preprocessor_name"] = "DefaultPreprocessor";
  c["batch_size"] = batch;
  c["patch_size"] = {patch, patch};
  c["median_image_size_in_voxels"] = {64, 64};
  c["spacing"] = {1.0, 1.0};
  c["normalization_schemes"] = {"ZScoreNormalization"};
  c["use_mask_for_norm"] = {false};
  c["UNet_class_name"] = "PlainConvUNet";
  c["UNet_base_num_features"] = 4;
  c["n_conv_per_stage_encoder"] = {1, 1, 1};
  c["n_conv_per_stage_decoder"] = {1, 1};
  c["num_pool_per_axis"] = {2, 2};
  c["pool_op_kernel_sizes"] = {{1, 1}, {2, 2}, {2, 2}};
  c["conv_kernel_sizes"] = {{3, 3}, {3, 3}, {3, 3}};
  c["unet_max_num_features"] = 16;
  c["batch_dice"] = true;
  nlohmann::json p;
  p["dataset_name"] = "tiny";
  p["plans_name"] = "nnUNetPlans";
  p["transpose_forward"] = {0, 1, 2};
  p["transpose_backward"] = {0, 1, 2};
  p["foreground_intensity_properties_per_channel"] = {{"0",
                                                       {{"max", 1.0},
                                                        {"mean", 0.5},
                                                        {"median", 0.5},
                                                        {"min", 0.0},
                                                        {"percentile_00_5", 0.0},
                                                        {"percentile_99_5", 1.0},
                                                        {"std", 0.2}}}};
  p["configurations"]["2d"] = c;
  return p;
}

// `count` synthetic grey cell images (64×64 by default) in the NeurIPS layout under `dir`:
// images/<name>.tif and labels/<name>_label.tiff.
inline void write_neurips_dataset(const fs::path& dir, int count, int64_t size = 64,
                                  uint64_t seed = 7) {
  fs::create_directories(dir / "images");
  fs::create_directories(dir / "labels");
  for (int i = 0; i < count; ++i) {
    synth::SynthParams p;
    p.height = size;
    p.width = size;
    p.diameter = 10;
    p.density = 0.25;
    p.seed = seed + static_cast<uint64_t>(i);
    const synth::SynthResult r = synth::generate(p);
    const std::string name = "cell_" + std::to_string(1000 + i);
    io::write_image(dir / "images" / (name + ".tif"), r.image);
    io::write_image(dir / "labels" / (name + "_label.tiff"), r.labels);
  }
}

}  // namespace umamba::train::testing
