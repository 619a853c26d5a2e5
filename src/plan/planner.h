// The self-configuring planner: dataset fingerprint -> plans.json (configurations 2d, 3d_fullres,
// 3d_lowres), with nnU-Net v2's rules so that an nnU-Net user recognises the result.
//
// Method (nnU-Net v2 ExperimentPlanner, the version U-Mamba vendors: MIC-DKFZ/nnUNet b00b41f2 =
// 2.2.1; Isensee et al., Nature Methods 18:203, 2021):
//  * target spacing = per-axis median spacing; when the coarsest axis is > 3x coarser than the
//    others and has < 1/3 of their voxels, its 10th percentile instead (not below the others);
//  * transpose: the coarsest axis first;
//  * initial patch with aspect ratio 1/spacing and the volume of 256^3 (3D) or 2048^2 (2D),
//    clipped to the median shape after resampling; topology from pool_and_conv_props;
//  * shrink the axis with the largest patch/median ratio while the PlainConvUNet feature-map
//    estimate exceeds 560e6 (3D) / 85e6 (2D) x (GPU memory target / 8 GB);
//  * batch = round(reference / estimate x 2 (3D) or 12 (2D)), capped so that one batch covers at
//    most 5% of the dataset's voxels, at least 2;
//  * 3d_lowres when the fullres patch covers < 25% of the median image: spacing grows by 1.03 per
//    step (anisotropic axes first) until the patch covers >= 25%; batch_dice True for 2d and for
//    3d_fullres when a lowres exists;
//  * normalisation per channel by name: "CT" -> CTNormalization, "noNorm", "zscore",
//    "rescale_to_0_1", "rgb_to_0_1", else ZScoreNormalization; masked z-score when cropping to the
//    non-zero box shrank the median case below 75%.
// Rules of nnU-Net 2.8.1 (the current default planner) are available as PlannerRules::V2_8: the
// shrink loop runs while estimate / ref_batch x 2 > reference (so 2D patches grow), 3d_lowres is
// dropped when it is less than 2x smaller than fullres, normalisation names match case-blind.
// Limits: only the default PlainConvUNet planner (no ResEnc presets); overwrite_target_spacing and
// suppress_transpose are not offered.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plan/dataset.h"
#include "plan/fingerprint.h"
#include "plan/network_topology.h"

namespace umamba::plan {

enum class PlannerRules { V2_2, V2_8 };

struct PlannerOptions {
  double gpu_memory_target_gb = 8.0;  // nnU-Net's -gpu_memory_target
  // Configurations to emit: any of "2d", "3d_fullres", "3d_lowres" (3d_lowres only where nnU-Net
  // makes one; 3d_cascade_fullres comes with a lowres and a fullres). Empty = all nnU-Net makes.
  std::set<std::string> configurations;
  std::string plans_name = "nnUNetPlans";
  PlannerRules rules = PlannerRules::V2_2;
};

// nnU-Net's constants (ExperimentPlanner.__init__, v2.2.1).
struct PlannerConstants {
  int64_t base_num_features = 32;
  int64_t reference_val_3d = 560000000;
  int64_t reference_val_2d = 85000000;
  double reference_val_corresp_gb = 8;
  int64_t reference_bs_2d = 12;
  int64_t reference_bs_3d = 2;
  int64_t featuremap_min_edge_length = 4;
  int64_t blocks_per_stage_encoder = 2;
  int64_t blocks_per_stage_decoder = 2;
  int64_t min_batch_size = 2;
  int64_t max_features_2d = 512;
  int64_t max_features_3d = 320;
  double lowres_creation_threshold = 0.25;
  double anisotropy_threshold = 3;
  double max_dataset_covered = 0.05;
};

struct ConfigurationPlan {
  std::string name;  // "2d", "3d_fullres", "3d_lowres"
  std::string data_identifier;
  int64_t batch_size = 0;
  IntVec patch_size;
  std::vector<double> median_image_size_in_voxels;
  std::vector<double> spacing;
  std::vector<std::string> normalization_schemes;
  std::vector<bool> use_mask_for_norm;
  IntVec n_conv_per_stage_encoder;
  IntVec n_conv_per_stage_decoder;
  IntVec num_pool_per_axis;
  std::vector<IntVec> pool_op_kernel_sizes;
  std::vector<IntVec> conv_kernel_sizes;
  int64_t unet_max_num_features = 0;
  int64_t base_num_features = 32;
  std::optional<bool> batch_dice;
  std::optional<std::string> next_stage;
  int64_t feature_map_estimate = 0;  // ours, for logs: the final PlainConvUNet estimate
  int64_t n_stages() const { return static_cast<int64_t>(pool_op_kernel_sizes.size()); }
};

struct Plans {
  std::string dataset_name;
  std::string plans_name;
  std::vector<double> original_median_spacing_after_transp;
  IntVec original_median_shape_after_transp;
  std::string image_reader_writer;
  std::array<int64_t, 3> transpose_forward{0, 1, 2};
  std::array<int64_t, 3> transpose_backward{0, 1, 2};
  std::vector<ConfigurationPlan> configurations;  // 2d, 3d_lowres, 3d_fullres (nnU-Net's order)
  bool has_cascade = false;
  std::vector<IntensityProperties> foreground_intensity_properties_per_channel;
  PlannerRules rules = PlannerRules::V2_2;
  double gpu_memory_target_gb = 8.0;

  const ConfigurationPlan* find(const std::string& name) const;
};

// The dataset facts the planner needs besides the fingerprint.
struct PlannerInput {
  std::string dataset_name;
  std::vector<std::string> channel_names;
  int64_t num_labels = 2;  // including background
  int64_t num_training = 1;
  std::string image_reader_writer = "SimpleITKIO";
};
PlannerInput planner_input(const DatasetDescription& dataset);

Plans plan_experiment(const Fingerprint& fingerprint, const PlannerInput& input,
                      const PlannerOptions& options = {}, const PlannerConstants& constants = {});

// plans.json with nnU-Net's key names and order (v2.2.1 layout; V2_8 adds "architecture").
nlohmann::ordered_json plans_to_json(const Plans& plans);

// Pieces of the planner, exposed for tests.
std::vector<double> fullres_target_spacing(const Fingerprint& f, const PlannerConstants& k = {});
std::string normalization_scheme(const std::string& channel_name, PlannerRules rules);

}  // namespace umamba::plan
