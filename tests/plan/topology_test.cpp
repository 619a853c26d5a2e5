// U-Net topology (pool_and_conv_props) and the PlainConvUNet feature-map estimate.
#include <gtest/gtest.h>

#include <random>

#include "plan/network_topology.h"

using namespace umamba::plan;

namespace {

// Plain reference for the feature-map size: list every convolution of the network as it is built
// (encoder stages with their strided first conv, decoder transposed conv + convs at the skip's
// size, the final 1x1 output) with its output shape, then sum channels x voxels.
int64_t reference_feature_maps(const PlainUNetSpec& s) {
  struct Layer {
    int64_t channels;
    IntVec shape;
  };
  std::vector<Layer> layers;
  std::vector<IntVec> stage_out;
  IntVec shape = s.patch_size;
  for (size_t st = 0; st < s.strides.size(); ++st) {
    IntVec out(shape.size());
    for (size_t a = 0; a < shape.size(); ++a) out[a] = shape[a] / s.strides[st][a];
    for (int64_t k = 0; k < s.n_conv_per_stage_encoder[st]; ++k)
      layers.push_back({s.features_per_stage[st], out});
    stage_out.push_back(out);
    shape = out;
  }
  const size_t n = s.strides.size();
  for (size_t level = n - 1; level-- > 0;) {
    const IntVec& skip = stage_out[level];
    layers.push_back({s.features_per_stage[level], skip});  // transposed conv
    for (int64_t k = 0; k < s.n_conv_per_stage_decoder[n - 2 - level]; ++k)
      layers.push_back({s.features_per_stage[level], skip});
    if (s.deep_supervision || level == 0) layers.push_back({s.num_classes, skip});
  }
  int64_t total = 0;
  for (const auto& l : layers) {
    int64_t v = l.channels;
    for (int64_t x : l.shape) v *= x;
    total += v;
  }
  return total;
}

PlainUNetSpec spec_for(const Topology& t, int64_t max_features, int64_t classes) {
  PlainUNetSpec s;
  s.patch_size = t.patch_size;
  s.strides = t.pool_op_kernel_sizes;
  s.features_per_stage = features_per_stage(t.n_stages(), 32, max_features);
  s.n_conv_per_stage_encoder.assign(t.n_stages(), 2);
  s.n_conv_per_stage_decoder.assign(t.n_stages() - 1, 2);
  s.num_classes = classes;
  return s;
}

}  // namespace

// The paper's abdomen CT network at a typical abdominal spacing (shared/reference/peer-perf.md §4).
TEST(Plan_Topology, abdomen_ct_40x224x192) {
  const Topology t = pool_and_conv_props({2.5, 0.8, 0.8}, IntVec{40, 224, 192});
  EXPECT_EQ(t.patch_size, (IntVec{40, 224, 192}));
  EXPECT_EQ(t.num_pool_per_axis, (IntVec{3, 5, 5}));
  const std::vector<IntVec> strides{{1, 1, 1}, {1, 2, 2}, {2, 2, 2},
                                    {2, 2, 2}, {2, 2, 2}, {1, 2, 2}};
  EXPECT_EQ(t.pool_op_kernel_sizes, strides);
  const std::vector<IntVec> kernels{{1, 3, 3}, {3, 3, 3}, {3, 3, 3},
                                    {3, 3, 3}, {3, 3, 3}, {3, 3, 3}};
  EXPECT_EQ(t.conv_kernel_sizes, kernels);
}

TEST(Plan_Topology, microscopy_512_has_8_stages) {
  const Topology t = pool_and_conv_props({1.0, 1.0}, IntVec{512, 512});
  EXPECT_EQ(t.n_stages(), 8);
  EXPECT_EQ(t.num_pool_per_axis, (IntVec{7, 7}));
  EXPECT_EQ(t.must_be_divisible_by, (IntVec{128, 128}));
}

TEST(Plan_Topology, patch_is_padded_to_the_divisor) {
  const Topology t = pool_and_conv_props({1.0, 1.0, 1.0}, IntVec{100, 70, 33});
  for (size_t a = 0; a < 3; ++a) {
    EXPECT_EQ(t.patch_size[a] % t.must_be_divisible_by[a], 0);
    EXPECT_GE(t.patch_size[a], (IntVec{100, 70, 33})[a]);
    EXPECT_LT(t.patch_size[a] - (IntVec{100, 70, 33})[a], t.must_be_divisible_by[a]);
  }
  // Fractional sizes (median x.5) pad like NumPy: up to the next multiple.
  const Topology f =
      pool_and_conv_props(std::vector<double>{1.0, 1.0}, std::vector<double>{97.5, 64.0}, 4);
  EXPECT_EQ(f.num_pool_per_axis, (IntVec{4, 4}));  // 97.5 -> 49 -> 25 -> 13 -> 7
  EXPECT_EQ(f.patch_size, (IntVec{112, 64}));
}

TEST(Plan_Topology, random_patches_pool_until_edge_4) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 500; ++trial) {
    const size_t dim = 2 + trial % 2;
    std::vector<double> spacing(dim);
    IntVec patch(dim);
    for (size_t a = 0; a < dim; ++a) {
      spacing[a] = std::uniform_real_distribution<double>(0.3, 5.0)(rng);
      patch[a] = std::uniform_int_distribution<int64_t>(1, 400)(rng);
    }
    const Topology t = pool_and_conv_props(spacing, patch);
    ASSERT_EQ(t.conv_kernel_sizes.size(), t.pool_op_kernel_sizes.size());
    for (size_t a = 0; a < dim; ++a) {
      // Every pooled axis still has >= 4 voxels at the bottleneck (before padding).
      int64_t size = patch[a];
      for (int64_t p = 0; p < t.num_pool_per_axis[a]; ++p) size = (size + 1) / 2;
      if (t.num_pool_per_axis[a] > 0) {
        EXPECT_GE(size, 4);
      }
      EXPECT_EQ(t.patch_size[a] % t.must_be_divisible_by[a], 0);
    }
    EXPECT_EQ(t.conv_kernel_sizes.back(), IntVec(dim, 3));
  }
}

// Values from dynamic_network_architectures 0.2 (PlainConvUNet.compute_conv_feature_map_size),
// computed with the command in tests/fixtures/plan/README.md.
TEST(Plan_FeatureMaps, equals_dynamic_network_architectures) {
  PlainUNetSpec s;
  s.patch_size = {8, 8};
  s.strides = {{1, 1}, {2, 2}};
  s.features_per_stage = {32, 64};
  s.n_conv_per_stage_encoder = {2, 2};
  s.n_conv_per_stage_decoder = {2};
  s.num_classes = 3;
  EXPECT_EQ(conv_feature_map_size(s), 12480);

  const Topology ct = pool_and_conv_props({2.5, 0.8, 0.8}, IntVec{40, 224, 192});
  EXPECT_EQ(conv_feature_map_size(spec_for(ct, 320, 14)), 481447680);
  const Topology cell = pool_and_conv_props({1.0, 1.0}, IntVec{512, 512});
  EXPECT_EQ(conv_feature_map_size(spec_for(cell, 512, 3)), 82886656);

  PlainUNetSpec odd;
  odd.patch_size = {13, 10, 7};
  odd.strides = {{1, 1, 1}, {2, 2, 1}, {2, 2, 2}};
  odd.features_per_stage = {32, 64, 128};
  odd.n_conv_per_stage_encoder = {2, 2, 2};
  odd.n_conv_per_stage_decoder = {2, 2};
  odd.num_classes = 2;
  EXPECT_EQ(conv_feature_map_size(odd), 219228);
}

TEST(Plan_FeatureMaps, random_networks_match_plain_reference) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 300; ++trial) {
    const size_t dim = 2 + trial % 2;
    std::vector<double> spacing(dim);
    IntVec patch(dim);
    for (size_t a = 0; a < dim; ++a) {
      spacing[a] = std::uniform_real_distribution<double>(0.5, 4.0)(rng);
      patch[a] = std::uniform_int_distribution<int64_t>(4, 300)(rng);
    }
    const Topology t = pool_and_conv_props(spacing, patch);
    PlainUNetSpec s = spec_for(t, dim == 2 ? 512 : 320, 2 + trial % 5);
    s.deep_supervision = trial % 3 == 0;
    if (trial % 4 == 0) s.patch_size = patch;  // unpadded sizes exercise the floor divisions
    EXPECT_EQ(conv_feature_map_size(s), reference_feature_maps(s));
  }
}
