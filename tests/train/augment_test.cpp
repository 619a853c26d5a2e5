// Augmentation: nnU-Net's patch enlargement, single transforms against plain references, and
// image/label alignment of planted objects through every transform (2D, 3D, dummy 2D).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <numbers>
#include <vector>

#include "train/augment.h"

namespace umamba::train {
namespace {

double rad(double deg) {
  return deg / 360.0 * 2.0 * std::numbers::pi;
}

TEST(Train_Augment, enlarged_patch_matches_get_patch_size) {
  // Values of batchgenerators' get_patch_size (rotation capped at 90°, divided by 0.85, truncated),
  // computed with NumPy from its formula.
  EXPECT_EQ(enlarged_patch_size({512, 512}, {rad(180)}), (std::vector<int64_t>{602, 602}));
  EXPECT_EQ(enlarged_patch_size({256, 64}, {rad(15)}), (std::vector<int64_t>{310, 75}));
  EXPECT_EQ(enlarged_patch_size({128, 128, 128}, {rad(30), rad(30), rad(30)}),
            (std::vector<int64_t>{205, 205, 205}));
  EXPECT_EQ(enlarged_patch_size({80, 192, 160}, {rad(30), rad(30), rad(30)}),
            (std::vector<int64_t>{194, 289, 210}));
  EXPECT_EQ(enlarged_patch_size({20, 256, 256}, {rad(180), 0, 0}),
            (std::vector<int64_t>{23, 301, 301}));
}

TEST(Train_Augment, default_config_follows_nnunet) {
  const AugmentConfig sq = default_augment_config({512, 512});
  EXPECT_DOUBLE_EQ(sq.rotation_max.at(0), std::numbers::pi);
  EXPECT_EQ(sq.initial_patch, (std::vector<int64_t>{602, 602}));
  EXPECT_EQ(sq.mirror_axes, (std::vector<int>{0, 1}));
  const AugmentConfig elong = default_augment_config({256, 64});
  EXPECT_NEAR(elong.rotation_max.at(0), rad(15), 1e-12);
  const AugmentConfig iso = default_augment_config({128, 128, 128});
  EXPECT_FALSE(iso.dummy_2d);
  EXPECT_EQ(iso.rotation_max.size(), 3u);
  const AugmentConfig dummy = default_augment_config({20, 256, 256});
  EXPECT_TRUE(dummy.dummy_2d);
  EXPECT_EQ(dummy.initial_patch, (std::vector<int64_t>{20, 301, 301}));  // first axis kept
  // Probabilities (get_training_transforms, v2.2.1).
  EXPECT_DOUBLE_EQ(sq.p_rotation, 0.2);
  EXPECT_DOUBLE_EQ(sq.p_scale, 0.2);
  EXPECT_DOUBLE_EQ(sq.p_noise, 0.1);
  EXPECT_DOUBLE_EQ(sq.p_blur, 0.2);
  EXPECT_DOUBLE_EQ(sq.p_brightness, 0.15);
  EXPECT_DOUBLE_EQ(sq.p_contrast, 0.15);
  EXPECT_DOUBLE_EQ(sq.p_lowres, 0.25);
  EXPECT_DOUBLE_EQ(sq.p_gamma_inverted, 0.1);
  EXPECT_DOUBLE_EQ(sq.p_gamma, 0.3);
}

TEST(Train_Augment, identity_transform_is_the_centre_crop) {
  torch::manual_seed(1);
  const auto img = torch::randn({2, 40, 36});
  const auto lab = torch::randint(0, 3, {1, 40, 36}).to(torch::kFloat);
  const Augmented a = spatial_transform(img, lab, {0.0}, 1.0, {32, 28}, 3);
  EXPECT_TRUE(torch::allclose(a.data, center_crop(img, {32, 28}), 1e-5, 1e-5));
  EXPECT_TRUE(torch::equal(a.labels, center_crop(lab, {32, 28})));
  const auto img3 = torch::randn({1, 12, 14, 16});
  const auto lab3 = torch::randint(0, 2, {1, 12, 14, 16}).to(torch::kFloat);
  const Augmented b = spatial_transform(img3, lab3, {0.0, 0.0, 0.0}, 1.0, {8, 10, 12}, 2);
  EXPECT_TRUE(torch::allclose(b.data, center_crop(img3, {8, 10, 12}), 1e-5, 1e-5));
  EXPECT_TRUE(torch::equal(b.labels, center_crop(lab3, {8, 10, 12})));
}

TEST(Train_Augment, quarter_turn_rotates_image_and_labels_together) {
  torch::manual_seed(2);
  const auto img = torch::randn({1, 36, 36});
  const auto lab = torch::randint(0, 3, {1, 36, 36}).to(torch::kFloat);
  const Augmented a = spatial_transform(img, lab, {std::numbers::pi / 2}, 1.0, {32, 32}, 3);
  const auto crop_i = center_crop(img, {32, 32});
  const auto crop_l = center_crop(lab, {32, 32});
  int matches = 0;
  for (int k : {1, -1}) {
    const bool img_ok = torch::allclose(a.data, torch::rot90(crop_i, k, {1, 2}), 1e-4, 1e-4);
    const bool lab_ok = torch::equal(a.labels, torch::rot90(crop_l, k, {1, 2}));
    EXPECT_EQ(img_ok, lab_ok) << "image and labels turned differently (k = " << k << ")";
    matches += img_ok && lab_ok;
  }
  EXPECT_EQ(matches, 1);
}

TEST(Train_Augment, scaling_zooms_about_the_centre) {
  // A centred disc of radius 8 sampled with scale 0.5 (coordinates halved) appears with radius 16.
  const int64_t S = 64;
  auto yy = torch::arange(S).to(torch::kFloat).view({S, 1}) - (S - 1) / 2.0;
  auto xx = torch::arange(S).to(torch::kFloat).view({1, S}) - (S - 1) / 2.0;
  const auto disc = ((yy * yy + xx * xx) <= 64.0).to(torch::kFloat);
  const Augmented a =
      spatial_transform(disc.unsqueeze(0), disc.unsqueeze(0), {0.0}, 0.5, {64, 64}, 2);
  const double area = a.labels.sum().item<double>();
  EXPECT_NEAR(area, std::numbers::pi * 256, std::numbers::pi * 256 * 0.08);
  EXPECT_NEAR((a.data > 0.5).sum().item<double>(), area, area * 0.05);
}

// scipy.ndimage.gaussian_filter(x, sigma, mode='reflect', truncate=4) written out in double.
torch::Tensor reference_blur(const torch::Tensor& x_in, double sigma) {
  auto x = x_in.to(torch::kDouble).clone();
  const int64_t r = static_cast<int64_t>(4.0 * sigma + 0.5);
  std::vector<double> w;
  double sum = 0;
  for (int64_t i = -r; i <= r; ++i) {
    w.push_back(std::exp(-0.5 * static_cast<double>(i * i) / (sigma * sigma)));
    sum += w.back();
  }
  for (auto& v : w) v /= sum;
  for (int64_t axis = 0; axis < x.dim(); ++axis) {
    auto m = x.movedim(axis, -1).contiguous();
    auto flat = m.reshape({-1, m.size(-1)});
    auto out = torch::zeros_like(flat);
    const int64_t n = flat.size(1);
    auto F = flat.accessor<double, 2>();
    auto O = out.accessor<double, 2>();
    for (int64_t row = 0; row < flat.size(0); ++row)
      for (int64_t i = 0; i < n; ++i) {
        double acc = 0;
        for (int64_t k = -r; k <= r; ++k) {
          int64_t j = i + k;
          while (j < 0 || j >= n) j = j < 0 ? -j - 1 : 2 * n - j - 1;  // half-sample symmetric
          acc += w[static_cast<size_t>(k + r)] * F[row][j];
        }
        O[row][i] = acc;
      }
    x = out.reshape(m.sizes()).movedim(-1, axis);
  }
  return x.to(torch::kFloat);
}

TEST(Train_Augment, gaussian_blur_matches_reference) {
  torch::manual_seed(4);
  for (double sigma : {0.5, 0.77, 1.0}) {
    const auto x2 = torch::randn({13, 17});
    EXPECT_TRUE(
        torch::allclose(gaussian_blur(x2, sigma, {0, 1}), reference_blur(x2, sigma), 1e-5, 1e-5));
    const auto x3 = torch::randn({5, 6, 7});
    EXPECT_TRUE(torch::allclose(gaussian_blur(x3, sigma, {0, 1, 2}), reference_blur(x3, sigma),
                                1e-5, 1e-5));
  }
}

TEST(Train_Augment, gamma_and_contrast_match_batchgenerators_formulas) {
  torch::manual_seed(6);
  const auto x = torch::randn({9, 11}).to(torch::kDouble);
  for (bool invert : {false, true}) {
    const double g = 1.3;
    // augment_gamma with retain_stats, written out.
    auto d = invert ? -x : x.clone();
    const double mn = d.mean().item<double>(), sd = d.std(false).item<double>();
    const double lo = d.min().item<double>(), range = d.max().item<double>() - lo + 1e-7;
    d = ((d - lo) / range).pow(g) * range + lo;
    d = d - d.mean();
    d = d / (d.std(false) + 1e-8) * sd + mn;
    if (invert) d = -d;
    EXPECT_TRUE(torch::allclose(gamma_transform(x, g, invert), d, 1e-9, 1e-9));
  }
  const auto c = contrast_transform(x, 1.2);
  const double mean = x.mean().item<double>();
  const auto want = ((x - mean) * 1.2 + mean).clamp(x.min().item<double>(), x.max().item<double>());
  EXPECT_TRUE(torch::allclose(c, want, 1e-9, 1e-9));
}

TEST(Train_Augment, lowres_keeps_shape_and_ignored_axes) {
  torch::manual_seed(7);
  const auto x = torch::randn({8, 20, 24});
  const auto y = lowres_transform(x, 0.5, {0});
  EXPECT_EQ(y.sizes(), x.sizes());
  // A constant stays constant (nearest down, interpolation up).
  const auto c = torch::full({20, 24}, 3.5f);
  EXPECT_TRUE(torch::allclose(lowres_transform(c, 0.6, {}), c, 1e-5, 1e-5));
  // zoom 1: unchanged.
  EXPECT_TRUE(torch::allclose(lowres_transform(x, 1.0, {}), x, 1e-5, 1e-5));
}

TEST(Train_Augment, downsampled_targets_take_nearest_exact_voxels) {
  auto lab = torch::arange(16).to(torch::kFloat).view({1, 1, 4, 4});
  const auto t = downsample_targets(lab, {{1, 1}, {2, 2}});
  ASSERT_EQ(t.size(), 2u);
  EXPECT_TRUE(torch::equal(t[0], lab));
  // Output voxel o reads input floor((o + 0.5)·2) = 2o + 1 (skimage's order-0 resize).
  const auto want = torch::tensor({5.f, 7.f, 13.f, 15.f}).view({1, 1, 2, 2});
  EXPECT_TRUE(torch::equal(t[1], want));
}

// Planted objects: background 0, a block of class 1 (intensity 1) and a block of class 2
// (intensity 2) placed off-centre, so any flip, turn or shift applied to only one of image and
// labels separates them.
struct Planted {
  torch::Tensor image, labels;
};
Planted planted_batch(int64_t B, const std::vector<int64_t>& shape, uint64_t seed) {
  torch::manual_seed(static_cast<int64_t>(seed));
  std::vector<int64_t> s{B, 1};
  s.insert(s.end(), shape.begin(), shape.end());
  auto lab = torch::zeros(s);
  for (int64_t b = 0; b < B; ++b) {
    auto l = lab[b][0];
    for (int cls = 1; cls <= 2; ++cls) {
      torch::Tensor v = l;
      for (size_t d = 0; d < shape.size(); ++d) {
        const int64_t n = shape[d];
        if (n < 16) continue;  // short axes (dummy 2D depth): the whole axis
        const int64_t size = n / 5 + cls * 2;
        const int64_t start = cls == 1 ? n / 2 - size - 2 : n / 2 + 3;
        v = v.narrow(static_cast<int64_t>(d), start + (d == 0 ? 0 : (b % 3)), size);
      }
      v.fill_(static_cast<float>(cls));
    }
  }
  return {lab.clone(), lab};
}

// Mean position [axis] of the true voxels of a boolean map.
std::vector<double> centroid(const torch::Tensor& mask) {
  const auto idx = mask.nonzero().to(torch::kDouble);  // [N, dims]
  const auto m = idx.mean(0);
  std::vector<double> out;
  for (int64_t d = 0; d < m.size(0); ++d) out.push_back(m[d].item<double>());
  return out;
}

// `min_iou`: the overlap asked of the image's and the labels' foreground. Low resolution (nearest
// down to half size, interpolated up) shifts the edges of the planted blocks by up to a voxel on
// every axis, which costs small 3D blocks more overlap than 2D ones; a misplaced label map (a flip,
// turn or shift applied to one side only) also moves the centroids by several voxels, which the
// centroid check catches whatever the threshold.
void expect_aligned(const Augmented& a, const std::string& what, double min_iou = 0.75) {
  for (int64_t b = 0; b < a.data.size(0); ++b) {
    const auto img = a.data[b][0];
    const auto lab = a.labels[b][0];
    const auto bg = lab == 0, c1 = lab == 1, c2 = lab == 2;
    if (c1.sum().item<int64_t>() < 20 || c2.sum().item<int64_t>() < 20) continue;  // left the view
    const double m0 = img.masked_select(bg).mean().item<double>();
    const double m1 = img.masked_select(c1).mean().item<double>();
    const double m2 = img.masked_select(c2).mean().item<double>();
    // Every transform is monotone in intensity, so the classes keep their order.
    EXPECT_LT(m0, m1) << what << " sample " << b;
    EXPECT_LT(m1, m2) << what << " sample " << b;
    // Foreground voxels of the image (above the midpoint between background and class 1) and of
    // the labels overlap.
    const auto fg_img = img > (m0 + m1) / 2;
    const auto fg_lab = lab > 0;
    const double inter = (fg_img & fg_lab).sum().item<double>();
    const double uni = (fg_img | fg_lab).sum().item<double>();
    EXPECT_GT(inter / uni, min_iou) << what << " sample " << b;
    const std::vector<double> ci = centroid(fg_img & (img > (m1 + m2) / 2)), cl = centroid(c2);
    for (size_t d = 0; d < cl.size(); ++d) {
      EXPECT_NEAR(ci[d], cl[d], 1.0) << what << " sample " << b << ": class-2 centroid, axis " << d;
    }
  }
}

void run_alignment(const std::vector<int64_t>& patch, const std::vector<int64_t>& initial) {
  AugmentConfig base = default_augment_config(patch);
  base.initial_patch = initial;
  struct Case {
    std::string name;
    TransformMask mask;
  };
  std::vector<Case> cases;
  auto only = [](auto setter) {
    TransformMask m{false, false, false, false, false, false, false, false, false};
    setter(m);
    return m;
  };
  cases.push_back({"spatial", only([](TransformMask& m) { m.spatial = true; })});
  cases.push_back({"noise", only([](TransformMask& m) { m.noise = true; })});
  cases.push_back({"blur", only([](TransformMask& m) { m.blur = true; })});
  cases.push_back({"brightness", only([](TransformMask& m) { m.brightness = true; })});
  cases.push_back({"contrast", only([](TransformMask& m) { m.contrast = true; })});
  cases.push_back({"lowres", only([](TransformMask& m) { m.lowres = true; })});
  cases.push_back({"gamma_inverted", only([](TransformMask& m) { m.gamma_inverted = true; })});
  cases.push_back({"gamma", only([](TransformMask& m) { m.gamma = true; })});
  cases.push_back({"mirror", only([](TransformMask& m) { m.mirror = true; })});
  cases.push_back({"all", TransformMask{}});
  for (const auto& c : cases) {
    AugmentConfig cfg = base;
    // Every transform always on (probability 1), so each one is exercised on every sample.
    cfg.p_rotation = cfg.p_scale = cfg.p_noise = cfg.p_blur = cfg.p_brightness = 1.0;
    cfg.p_contrast = cfg.p_lowres = cfg.p_gamma_inverted = cfg.p_gamma = 1.0;
    cfg.blur_p_channel = cfg.lowres_p_channel = 1.0;
    for (uint64_t seed = 0; seed < 4; ++seed) {
      const Planted p = planted_batch(3, initial, seed);
      AugmentRandom rng(seed);
      std::vector<SampleAugmentation> applied;
      const Augmented a = augment_batch(p.image, p.labels, cfg, rng, c.mask, &applied);
      ASSERT_EQ(a.data.sizes().slice(2).vec(), patch);
      ASSERT_EQ(a.labels.sizes().slice(2).vec(), patch);
      if (c.name == "spatial") {
        for (const auto& r : applied) EXPECT_TRUE(r.rotated && r.scaled);
      }
      if (c.name == "noise") {
        for (const auto& r : applied) EXPECT_TRUE(r.noise);
      }
      // Labels stay class indices.
      const auto u = std::get<0>(at::_unique(a.labels));
      for (int64_t i = 0; i < u.size(0); ++i) {
        const float v = u[i].item<float>();
        EXPECT_TRUE(v == 0 || v == 1 || v == 2) << c.name << ": label value " << v;
      }
      // Intensity transforms leave the labels as the centre crop.
      if (c.name != "spatial" && c.name != "mirror" && c.name != "all") {
        EXPECT_TRUE(torch::equal(a.labels, center_crop(p.labels, patch))) << c.name;
      }
      const bool lowres_3d =
          patch.size() == 3 && patch[0] >= 16 && (c.name == "lowres" || c.name == "all");
      expect_aligned(a, c.name + " seed " + std::to_string(seed), lowres_3d ? 0.55 : 0.75);
    }
  }
}

TEST(Train_Augment, planted_objects_stay_aligned_2d) {
  run_alignment({48, 48}, {56, 56});
}

TEST(Train_Augment, planted_objects_stay_aligned_3d) {
  run_alignment({24, 24, 24}, {28, 28, 28});
}

TEST(Train_Augment, planted_objects_stay_aligned_dummy_2d) {
  run_alignment({6, 40, 40}, {6, 46, 46});
}

TEST(Train_Augment, batches_are_a_function_of_the_seed) {
  const Planted p = planted_batch(2, {40, 40}, 1);
  const AugmentConfig cfg = default_augment_config({32, 32});
  AugmentConfig c = cfg;
  c.initial_patch = {40, 40};
  c.p_noise = 1.0;
  AugmentRandom r1(99), r2(99), r3(100);
  const Augmented a = augment_batch(p.image, p.labels, c, r1);
  const Augmented b = augment_batch(p.image, p.labels, c, r2);
  const Augmented d = augment_batch(p.image, p.labels, c, r3);
  EXPECT_TRUE(torch::equal(a.data, b.data));
  EXPECT_TRUE(torch::equal(a.labels, b.labels));
  EXPECT_FALSE(torch::equal(a.data, d.data));
}

TEST(Train_Augment, mirroring_flips_image_and_labels_exactly) {
  AugmentConfig cfg = default_augment_config({32, 32});
  cfg.initial_patch = {32, 32};
  TransformMask m{false, false, false, false, false, false, false, false, true};
  const Planted p = planted_batch(6, {32, 32}, 3);
  AugmentRandom rng(5);
  std::vector<SampleAugmentation> applied;
  const Augmented a = augment_batch(p.image, p.labels, cfg, rng, m, &applied);
  int flipped = 0;
  for (int64_t b = 0; b < 6; ++b) {
    std::vector<int64_t> dims;
    for (int ax = 0; ax < 2; ++ax)
      if (applied[static_cast<size_t>(b)].mirrored[static_cast<size_t>(ax)]) dims.push_back(ax + 1);
    flipped += !dims.empty();
    const auto want_i = dims.empty() ? p.image[b] : p.image[b].flip(dims);
    const auto want_l = dims.empty() ? p.labels[b] : p.labels[b].flip(dims);
    EXPECT_TRUE(torch::equal(a.data[b], want_i));
    EXPECT_TRUE(torch::equal(a.labels[b], want_l));
  }
  EXPECT_GT(flipped, 0);
}

}  // namespace
}  // namespace umamba::train
