// U-Net topology for a patch: how often each axis is pooled, the kernel sizes per stage, and the
// size of the feature maps the network holds, which the planner uses as its memory estimate.
//
// What: nnU-Net v2's `get_pool_and_conv_props` (experiment_planning/experiment_planners/
// network_topology.py, v2.2.1): pool every axis that is at least 2·min_edge long and whose spacing
// is within 2× of the finest valid spacing (a lone axis needs 3·min_edge), until none qualifies;
// a kernel becomes 3 along an axis once its spacing is within 2× of the finest; the bottleneck
// kernel is 3; the patch is padded up to a multiple of 2^pools per axis. And PlainConvUNet's
// `compute_conv_feature_map_size` (dynamic_network_architectures 0.2, conv pooling, no deep
// supervision, as the v2.2.1 planner instantiates it): the sum over every convolution, transposed
// convolution and the final 1×1 segmentation layer of output channels × output voxels.
// Limits: 2D and 3D patches (the vectors have 2 or 3 entries); sizes in voxels, spacings in any
// unit (only ratios matter).
#pragma once

#include <cstdint>
#include <vector>

namespace umamba::plan {

using IntVec = std::vector<int64_t>;

struct Topology {
  IntVec num_pool_per_axis;                  // pools per axis
  std::vector<IntVec> pool_op_kernel_sizes;  // one per stage; stage 0 is all 1
  std::vector<IntVec> conv_kernel_sizes;     // one per stage; bottleneck all 3
  IntVec patch_size;                         // the input patch padded to must_be_divisible_by
  IntVec must_be_divisible_by;               // 2^num_pool_per_axis
  int64_t n_stages() const { return static_cast<int64_t>(pool_op_kernel_sizes.size()); }
};

// nnU-Net's get_pool_and_conv_props(spacing, patch_size, min_feature_map_size, max_numpool).
Topology pool_and_conv_props(const std::vector<double>& spacing, const IntVec& patch_size,
                             int64_t min_feature_map_size = 4, int64_t max_numpool = 999999);
// The same on a patch that may hold fractional sizes (nnU-Net clips the initial patch to the
// median shape, which can be x.5); decisions and padding follow NumPy on floats.
Topology pool_and_conv_props(const std::vector<double>& spacing,
                             const std::vector<double>& patch_size, int64_t min_feature_map_size,
                             int64_t max_numpool = 999999);

// Rounds each size up to a multiple of its divisor (nnU-Net's pad_shape).
IntVec pad_shape(const IntVec& shape, const IntVec& must_be_divisible_by);

// The PlainConvUNet the planner sizes: features, blocks and strides per stage.
struct PlainUNetSpec {
  IntVec patch_size;                // [Z,]Y,X voxels
  std::vector<IntVec> strides;      // pool_op_kernel_sizes, one per stage
  IntVec features_per_stage;        // output channels per encoder stage
  IntVec n_conv_per_stage_encoder;  // one per stage
  IntVec n_conv_per_stage_decoder;  // one per stage - 1
  int64_t num_classes = 2;          // segmentation outputs (labels incl. background)
  bool deep_supervision = false;    // the planner sizes the network without it
};

// Sum of the feature-map elements of every convolution output (PlainConvUNet
// compute_conv_feature_map_size). Units: elements per sample, not bytes.
int64_t conv_feature_map_size(const PlainUNetSpec& spec);

// min(max_features, base · 2^stage) for each stage.
IntVec features_per_stage(int64_t n_stages, int64_t base_features, int64_t max_features);

}  // namespace umamba::plan
