// U-Net topology and feature-map size; see network_topology.h for the method and its source.
#include "plan/network_topology.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace umamba::plan {

IntVec pad_shape(const IntVec& shape, const IntVec& must_be_divisible_by) {
  UMAMBA_CHECK(shape.size() == must_be_divisible_by.size(),
               "pad_shape: shape has {} axes, divisors {}", shape.size(),
               must_be_divisible_by.size());
  IntVec out(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) {
    const int64_t d = must_be_divisible_by[i];
    UMAMBA_CHECK(d > 0, "pad_shape: divisor {} on axis {}", d, i);
    out[i] = shape[i] % d == 0 ? shape[i] : shape[i] + d - shape[i] % d;
  }
  return out;
}

Topology pool_and_conv_props(const std::vector<double>& spacing,
                             const std::vector<double>& patch_size, int64_t min_feature_map_size,
                             int64_t max_numpool) {
  const size_t dim = spacing.size();
  UMAMBA_CHECK(dim == 2 || dim == 3, "topology: {} spatial axes (2 or 3 expected)", dim);
  UMAMBA_CHECK(patch_size.size() == dim, "topology: patch has {} axes, spacing {}",
               patch_size.size(), dim);
  for (size_t d = 0; d < dim; ++d) {
    UMAMBA_CHECK(spacing[d] > 0, "topology: spacing {} on axis {} must be > 0", spacing[d], d);
    UMAMBA_CHECK(patch_size[d] > 0, "topology: patch size {} on axis {} must be > 0", patch_size[d],
                 d);
  }

  std::vector<double> current_spacing = spacing;
  std::vector<double> current_size = patch_size;
  const double min_edge = static_cast<double>(min_feature_map_size);
  Topology t;
  t.pool_op_kernel_sizes.push_back(IntVec(dim, 1));
  t.num_pool_per_axis.assign(dim, 0);
  IntVec kernel(dim, 1);

  while (true) {
    std::vector<size_t> valid;
    for (size_t i = 0; i < dim; ++i) {
      if (current_size[i] >= 2 * min_edge) valid.push_back(i);
    }
    if (valid.empty()) break;
    double min_valid_spacing = current_spacing[valid[0]];
    for (size_t i : valid) min_valid_spacing = std::min(min_valid_spacing, current_spacing[i]);
    std::erase_if(valid, [&](size_t i) { return !(current_spacing[i] / min_valid_spacing < 2); });
    std::erase_if(valid, [&](size_t i) { return !(t.num_pool_per_axis[i] < max_numpool); });
    if (valid.size() == 1 && !(current_size[valid[0]] >= 3 * min_edge)) break;
    if (valid.empty()) break;

    const double min_spacing = *std::min_element(current_spacing.begin(), current_spacing.end());
    for (size_t d = 0; d < dim; ++d) {
      if (kernel[d] != 3 && current_spacing[d] / min_spacing < 2) kernel[d] = 3;
    }
    IntVec pool(dim, 1);
    for (size_t v : valid) {
      pool[v] = 2;
      t.num_pool_per_axis[v] += 1;
      current_spacing[v] *= 2;
      current_size[v] = std::ceil(current_size[v] / 2);
    }
    t.pool_op_kernel_sizes.push_back(pool);
    t.conv_kernel_sizes.push_back(kernel);
  }

  t.must_be_divisible_by.resize(dim);
  t.patch_size.resize(dim);
  for (size_t d = 0; d < dim; ++d) {
    const int64_t div = int64_t{1} << t.num_pool_per_axis[d];
    t.must_be_divisible_by[d] = div;
    // NumPy's pad_shape on possibly fractional sizes: shape + d - shape % d (minus d when
    // divisible), then truncated to int.
    const double r = std::fmod(patch_size[d], static_cast<double>(div));
    double padded = patch_size[d] + static_cast<double>(div) - r;
    if (r == 0) padded -= static_cast<double>(div);
    t.patch_size[d] = static_cast<int64_t>(padded);
  }
  t.conv_kernel_sizes.push_back(IntVec(dim, 3));
  return t;
}

Topology pool_and_conv_props(const std::vector<double>& spacing, const IntVec& patch_size,
                             int64_t min_feature_map_size, int64_t max_numpool) {
  return pool_and_conv_props(spacing, std::vector<double>(patch_size.begin(), patch_size.end()),
                             min_feature_map_size, max_numpool);
}

IntVec features_per_stage(int64_t n_stages, int64_t base_features, int64_t max_features) {
  IntVec f(static_cast<size_t>(n_stages));
  for (int64_t i = 0; i < n_stages; ++i) f[i] = std::min(max_features, base_features << i);
  return f;
}

namespace {

int64_t product(const IntVec& v) {
  int64_t p = 1;
  for (int64_t x : v) p *= x;
  return p;
}

IntVec divide(const IntVec& size, const IntVec& stride) {
  IntVec out(size.size());
  for (size_t i = 0; i < size.size(); ++i) out[i] = size[i] / stride[i];
  return out;
}

}  // namespace

int64_t conv_feature_map_size(const PlainUNetSpec& spec) {
  const size_t n = spec.strides.size();
  UMAMBA_CHECK(n >= 1, "feature-map size: the network has no stage");
  UMAMBA_CHECK(spec.features_per_stage.size() == n && spec.n_conv_per_stage_encoder.size() == n,
               "feature-map size: {} strides, {} feature counts, {} encoder block counts", n,
               spec.features_per_stage.size(), spec.n_conv_per_stage_encoder.size());
  UMAMBA_CHECK(spec.n_conv_per_stage_decoder.size() + 1 == n,
               "feature-map size: {} decoder block counts for {} stages",
               spec.n_conv_per_stage_decoder.size(), n);
  for (const auto& s : spec.strides) {
    UMAMBA_CHECK(s.size() == spec.patch_size.size(), "feature-map size: stride with {} axes",
                 s.size());
  }

  // Encoder: each stage's convolutions all produce the stage's features at the strided size.
  int64_t total = 0;
  IntVec size = spec.patch_size;
  std::vector<IntVec> skip_sizes;  // output size of stages 0 .. n-2
  for (size_t s = 0; s < n; ++s) {
    size = divide(size, spec.strides[s]);
    total += spec.n_conv_per_stage_encoder[s] * spec.features_per_stage[s] * product(size);
    if (s + 1 < n) skip_sizes.push_back(size);
  }
  // Decoder, from the bottleneck up: transposed conv + convolutions at the skip's size and
  // channels, plus the 1x1 segmentation output (only the last stage without deep supervision).
  for (size_t s = 0; s + 1 < n; ++s) {
    const size_t level = n - 2 - s;
    const int64_t voxels = product(skip_sizes[level]);
    const int64_t channels = spec.features_per_stage[level];
    total += spec.n_conv_per_stage_decoder[s] * channels * voxels;
    total += channels * voxels;
    if (spec.deep_supervision || s + 2 == n) total += spec.num_classes * voxels;
  }
  return total;
}

}  // namespace umamba::plan
