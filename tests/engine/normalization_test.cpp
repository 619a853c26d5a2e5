// Normalisation schemes against their nnU-Net definitions evaluated directly (reference §4.3).
#include "engine/normalization.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/error.h"

namespace umamba::engine {
namespace {

Image random_image(DType dtype, const Shape& shape, double lo, double hi, uint32_t seed,
                   double zero_fraction = 0.0) {
  Image img = Image::zeros(DType::F64, shape);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi), z(0.0, 1.0);
  double* p = img.data_as<double>();
  for (int64_t i = 0; i < shape.elements(); ++i) {
    p[i] = z(rng) < zero_fraction ? 0.0 : std::round(u(rng));
  }
  return img.cast(dtype);
}

// Population mean and std of channel c, in double, the plain way.
std::pair<double, double> naive_stats(const Image& f64, int64_t c, bool masked) {
  const Shape& s = f64.shape();
  double sum = 0;
  int64_t n = 0;
  auto inside = [&](int64_t z, int64_t y, int64_t x) {
    if (!masked) return true;
    for (int64_t k = 0; k < s.c; ++k) {
      if (f64.at<double>(k, z, y, x) != 0.0) return true;
    }
    return false;
  };
  for (int64_t z = 0; z < s.z; ++z)
    for (int64_t y = 0; y < s.y; ++y)
      for (int64_t x = 0; x < s.x; ++x)
        if (inside(z, y, x)) {
          sum += f64.at<double>(c, z, y, x);
          ++n;
        }
  const double mean = sum / n;
  double ss = 0;
  for (int64_t z = 0; z < s.z; ++z)
    for (int64_t y = 0; y < s.y; ++y)
      for (int64_t x = 0; x < s.x; ++x)
        if (inside(z, y, x)) ss += std::pow(f64.at<double>(c, z, y, x) - mean, 2);
  return {mean, std::sqrt(ss / n)};
}

std::vector<ChannelStats> stats_in_bands(const Image& img, bool masked, int64_t rows) {
  StatsAccumulator acc(img.channels(), masked);
  for (int64_t z = 0; z < img.depth(); ++z) {
    for (int64_t y = 0; y < img.height(); y += rows) {
      acc.add(img.region(Box{z, y, 0, 1, std::min(rows, img.height() - y), img.width()}));
    }
  }
  return acc.finish();
}

TEST(Engine_Normalization, banded_statistics_equal_direct_ones) {
  const Image img = random_image(DType::U16, Shape{2, 3, 37, 41}, 30000, 30100, 1, 0.2);
  const Image f64 = img.cast(DType::F64);
  for (bool masked : {false, true}) {
    for (int64_t rows : {1, 5, 37}) {
      const auto st = stats_in_bands(img, masked, rows);
      for (int64_t c = 0; c < 2; ++c) {
        const auto [mean, sd] = naive_stats(f64, c, masked);
        EXPECT_NEAR(st[c].mean, mean, 1e-9 * std::abs(mean));
        EXPECT_NEAR(st[c].std, sd, 1e-9 * sd);
      }
    }
  }
}

TEST(Engine_Normalization, zscore_matches_definition) {
  const Image img = random_image(DType::U8, Shape{1, 1, 20, 30}, 0, 255, 2);
  const auto st = stats_in_bands(img, false, 7);
  Normalizer n(Normalization{}, 1, st);
  std::vector<float> out(20 * 30);
  n.apply(img, out.data(), 600, 600, 30);
  const Image f64 = img.cast(DType::F64);
  const auto [mean, sd] = naive_stats(f64, 0, false);
  double m2 = 0, s2 = 0;
  for (int64_t y = 0; y < 20; ++y) {
    for (int64_t x = 0; x < 30; ++x) {
      const double expect = (f64.at<double>(0, 0, y, x) - mean) / std::max(sd, 1e-8);
      EXPECT_NEAR(out[y * 30 + x], expect, 1e-5);
      m2 += out[y * 30 + x];
      s2 += out[y * 30 + x] * out[y * 30 + x];
    }
  }
  EXPECT_NEAR(m2 / 600, 0.0, 1e-5);
  EXPECT_NEAR(s2 / 600, 1.0, 1e-4);
}

TEST(Engine_Normalization, masked_zscore_leaves_the_zero_region_alone) {
  const Image img = random_image(DType::I16, Shape{2, 1, 16, 16}, 100, 900, 3, 0.4);
  ChannelNormalization ch;
  ch.use_mask_for_norm = true;
  Normalization norm;
  norm.channels = {ch};
  ASSERT_TRUE(Normalizer::needs_masked_stats(norm, 2));
  const auto st = stats_in_bands(img, true, 4);
  Normalizer n(norm, 2, st);
  std::vector<float> out(2 * 256);
  n.apply(img, out.data(), 256, 256, 16);
  const Image f64 = img.cast(DType::F64);
  for (int64_t c = 0; c < 2; ++c) {
    const auto [mean, sd] = naive_stats(f64, c, true);
    for (int64_t y = 0; y < 16; ++y) {
      for (int64_t x = 0; x < 16; ++x) {
        const bool inside = f64.at<double>(0, 0, y, x) != 0 || f64.at<double>(1, 0, y, x) != 0;
        const double v = f64.at<double>(c, 0, y, x);
        const double expect = inside ? (v - mean) / sd : 0.0;
        EXPECT_NEAR(out[c * 256 + y * 16 + x], expect, 1e-5);
      }
    }
  }
}

TEST(Engine_Normalization, ct_clips_to_dataset_percentiles_then_scales) {
  ChannelNormalization ch;
  ch.scheme = NormScheme::CT;
  ch.dataset = {40.0, 120.0, -200.0, 300.0};
  Normalization norm;
  norm.channels = {ch};
  EXPECT_FALSE(Normalizer::needs_image_stats(norm, 1));
  Normalizer n(norm, 1, {});
  Image img = Image::zeros(DType::I16, Shape{1, 1, 1, 5});
  const int16_t v[] = {-1024, -200, 40, 300, 3000};
  std::copy(v, v + 5, img.data_as<int16_t>());
  std::vector<float> out(5);
  n.apply(img, out.data(), 5, 5, 5);
  const double expect[] = {-240.0 / 120, -240.0 / 120, 0.0, 260.0 / 120, 260.0 / 120};
  for (int i = 0; i < 5; ++i) EXPECT_FLOAT_EQ(out[i], static_cast<float>(expect[i]));
}

TEST(Engine_Normalization, rescale_and_rgb_and_none) {
  Image img = Image::zeros(DType::U8, Shape{3, 1, 1, 4});
  const uint8_t v[] = {10, 20, 30, 50, 0, 255, 7, 7, 1, 2, 3, 4};
  std::copy(v, v + 12, img.data_as<uint8_t>());
  const auto st = stats_in_bands(img, false, 1);
  Normalization norm;
  norm.channels = {{NormScheme::RescaleTo01, false, {}},
                   {NormScheme::RgbTo01, false, {}},
                   {NormScheme::NoNorm, false, {}}};
  Normalizer n(norm, 3, st);
  std::vector<float> out(12);
  n.apply(img, out.data(), 4, 4, 4);
  EXPECT_FLOAT_EQ(out[0], 0.0f);
  EXPECT_FLOAT_EQ(out[1], 0.25f);
  EXPECT_FLOAT_EQ(out[3], 1.0f);
  EXPECT_FLOAT_EQ(out[5], 1.0f);
  EXPECT_FLOAT_EQ(out[6], 7.0f / 255.0f);
  EXPECT_FLOAT_EQ(out[11], 4.0f);
  // RGBTo0_1 refuses values outside [0, 255].
  Image big = Image::zeros(DType::U16, Shape{1, 1, 1, 2});
  big.data_as<uint16_t>()[1] = 256;
  Normalization rgb;
  rgb.channels = {{NormScheme::RgbTo01, false, {}}};
  Normalizer nr(rgb, 1, {});
  EXPECT_THROW(nr.apply(big, out.data(), 2, 2, 2), Error);
}

TEST(Engine_Normalization, from_plans_json_uses_nnunet_keys) {
  const auto configuration = nlohmann::json::parse(R"({
    "normalization_schemes": ["CTNormalization", "ZScoreNormalization"],
    "use_mask_for_norm": [false, true]})");
  const auto props = nlohmann::json::parse(R"({
    "0": {"mean": 80.5, "std": 140.0, "percentile_00_5": -958.0, "percentile_99_5": 1200.0,
          "median": 60.0, "min": -1024.0, "max": 3071.0}})");
  const Normalization n = Normalization::from_plans(configuration, props);
  ASSERT_EQ(n.channels.size(), 2u);
  EXPECT_EQ(n.channels[0].scheme, NormScheme::CT);
  EXPECT_DOUBLE_EQ(n.channels[0].dataset.mean, 80.5);
  EXPECT_DOUBLE_EQ(n.channels[0].dataset.percentile_00_5, -958.0);
  EXPECT_EQ(n.channels[1].scheme, NormScheme::ZScore);
  EXPECT_TRUE(n.channels[1].use_mask_for_norm);
  EXPECT_THROW(Normalization::from_plans(configuration, nlohmann::json::object()), Error);
  EXPECT_THROW(norm_scheme_from_name("Whatever"), Error);
  EXPECT_EQ(norm_scheme_from_name(norm_scheme_name(NormScheme::RgbTo01)), NormScheme::RgbTo01);
}

}  // namespace
}  // namespace umamba::engine
