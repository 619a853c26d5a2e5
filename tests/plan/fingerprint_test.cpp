// Fingerprint: the (value, count) runs against explicit sampling (nnU-Net keeps all samples), the
// non-zero bounding box against a brute-force scan, and the pooled statistics against plain
// formulas over the expanded sample list.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "core/image.h"
#include "plan/fingerprint.h"
#include "plan/numpy_compat.h"

using namespace umamba;
using namespace umamba::plan;

namespace {

Image random_image(std::mt19937& rng, Shape s, double zero_border) {
  Image im = Image::zeros(DType::I16, s);
  auto* p = im.data_as<int16_t>();
  std::uniform_int_distribution<int> v(-300, 300);
  const int64_t bz = static_cast<int64_t>(s.z * zero_border),
                by = static_cast<int64_t>(s.y * zero_border);
  for (int64_t c = 0; c < s.c; ++c)
    for (int64_t z = 0; z < s.z; ++z)
      for (int64_t y = 0; y < s.y; ++y)
        for (int64_t x = 0; x < s.x; ++x) {
          const bool border = z < bz || y < by || x < 2;
          p[((c * s.z + z) * s.y + y) * s.x + x] = border ? 0 : static_cast<int16_t>(v(rng));
        }
  return im;
}

Image random_labels(std::mt19937& rng, Shape s, double p_fg) {
  s.c = 1;
  Image l = Image::zeros(DType::U8, s);
  std::bernoulli_distribution fg(p_fg);
  auto* d = l.data_as<uint8_t>();
  for (int64_t i = 0; i < s.pixels(); ++i) d[i] = fg(rng) ? 1 + i % 3 : 0;
  return l;
}

// nnU-Net's way, literally: the list of foreground values and num_samples draws into it.
std::vector<std::vector<double>> explicit_samples(const Image& image, const Image& labels,
                                                  uint64_t num_samples) {
  const Box b = nonzero_bounding_box(image);
  numpy::LegacyRandomState rs(kForegroundSampleSeed);
  std::vector<std::vector<double>> out(image.channels());
  for (int64_t c = 0; c < image.channels(); ++c) {
    std::vector<double> fg;
    for (int64_t z = b.z0; z < b.z0 + b.dz; ++z)
      for (int64_t y = b.y0; y < b.y0 + b.dy; ++y)
        for (int64_t x = b.x0; x < b.x0 + b.dx; ++x)
          if (labels.at<uint8_t>(0, z, y, x) > 0) fg.push_back(image.at<int16_t>(c, z, y, x));
    if (fg.empty()) continue;
    for (uint64_t k = 0; k < num_samples; ++k) out[c].push_back(fg[rs.bounded(fg.size())]);
  }
  return out;
}

}  // namespace

TEST(Plan_Fingerprint, bounding_box_matches_brute_force) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 50; ++trial) {
    Shape s{1 + trial % 3, 1 + trial % 5, 5 + trial % 13, 4 + trial % 11};
    Image im = Image::zeros(DType::F32, s);
    std::bernoulli_distribution on(0.02);
    for (int64_t i = 0; i < s.elements(); ++i)
      if (on(rng)) im.data_as<float>()[i] = 1.5f;
    int64_t z0 = s.z, z1 = -1, y0 = s.y, y1 = -1, x0 = s.x, x1 = -1;
    for (int64_t c = 0; c < s.c; ++c)
      for (int64_t z = 0; z < s.z; ++z)
        for (int64_t y = 0; y < s.y; ++y)
          for (int64_t x = 0; x < s.x; ++x)
            if (im.at<float>(c, z, y, x) != 0) {
              z0 = std::min(z0, z), z1 = std::max(z1, z), y0 = std::min(y0, y);
              y1 = std::max(y1, y), x0 = std::min(x0, x), x1 = std::max(x1, x);
            }
    const Box b = nonzero_bounding_box(im);
    if (z1 < 0) {
      EXPECT_EQ(b.dz * b.dy * b.dx, s.pixels());
      continue;
    }
    EXPECT_EQ(b.z0, z0);
    EXPECT_EQ(b.y0, y0);
    EXPECT_EQ(b.x0, x0);
    EXPECT_EQ(b.dz, z1 - z0 + 1);
    EXPECT_EQ(b.dy, y1 - y0 + 1);
    EXPECT_EQ(b.dx, x1 - x0 + 1);
  }
}

TEST(Plan_Fingerprint, random_cases_match_explicit_sampling) {
  std::mt19937 rng(5);
  std::vector<CaseAnalysis> cases;
  std::vector<std::vector<double>> pooled(2);
  for (int i = 0; i < 4; ++i) {
    const Shape s{2, 3 + i, 20 + 3 * i, 17};
    const Image image = random_image(rng, s, 0.2);
    const Image labels = random_labels(rng, s, 0.3);
    const uint64_t n = 5000 + 777 * i;
    CaseAnalysis a = analyze_case(image, labels, {2.0, 1.0, 1.0}, n);
    const auto samples = explicit_samples(image, labels, n);
    for (size_t c = 0; c < 2; ++c) {
      std::vector<double> sorted = samples[c];
      std::sort(sorted.begin(), sorted.end());
      std::vector<double> expanded;
      for (const auto& r : a.samples[c]) expanded.insert(expanded.end(), r.count, r.value);
      EXPECT_EQ(expanded, sorted) << "case " << i << " channel " << c;
      pooled[c].insert(pooled[c].end(), samples[c].begin(), samples[c].end());
    }
    const Box b = nonzero_bounding_box(image);
    EXPECT_EQ(a.shape_after_crop, (std::array<int64_t, 3>{b.dz, b.dy, b.dx}));
    EXPECT_DOUBLE_EQ(a.relative_size_after_cropping,
                     static_cast<double>(b.dz * b.dy * b.dx) / static_cast<double>(s.pixels()));
    cases.push_back(std::move(a));
  }
  const Fingerprint f = aggregate_fingerprint(cases);
  ASSERT_EQ(f.foreground_intensity_properties_per_channel.size(), 2u);
  for (size_t c = 0; c < 2; ++c) {
    const auto& v = pooled[c];
    const double mean = std::accumulate(v.begin(), v.end(), 0.0) / v.size();
    double ss = 0;
    for (double x : v) ss += (x - mean) * (x - mean);
    const auto& p = f.foreground_intensity_properties_per_channel[c];
    EXPECT_NEAR(p.mean, mean, 1e-9);
    EXPECT_NEAR(p.std, std::sqrt(ss / v.size()), 1e-9);
    EXPECT_EQ(p.min, *std::min_element(v.begin(), v.end()));
    EXPECT_EQ(p.max, *std::max_element(v.begin(), v.end()));
    EXPECT_EQ(p.median, numpy::median(v));
    EXPECT_EQ(p.percentile_99_5, numpy::percentile(v, 99.5));
    EXPECT_EQ(p.percentile_00_5, numpy::percentile(v, 0.5));
  }
  EXPECT_EQ(f.spacings.size(), 4u);
}

TEST(Plan_Fingerprint, no_foreground_is_an_error) {
  std::mt19937 rng(1);
  const Shape s{1, 2, 8, 8};
  const Image image = random_image(rng, s, 0);
  const Image labels = random_labels(rng, s, 0.0);
  std::vector<CaseAnalysis> cases{analyze_case(image, labels, {1, 1, 1}, 100)};
  EXPECT_THROW(aggregate_fingerprint(cases), Error);
  const Image wrong = random_labels(rng, Shape{1, 2, 8, 9}, 0.5);
  EXPECT_THROW(analyze_case(image, wrong, {1, 1, 1}, 100), Error);
}

TEST(Plan_Numpy, percentile_of_runs_equals_expanded) {
  std::mt19937 rng(9);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<numpy::WeightedValue> runs;
    std::vector<double> expanded;
    double v = -5;
    const int n = 1 + trial % 17;
    for (int i = 0; i < n; ++i) {
      v += std::uniform_real_distribution<double>(0.1, 3)(rng);
      const uint64_t c = 1 + rng() % 5;
      runs.push_back({v, c});
      expanded.insert(expanded.end(), c, v);
    }
    for (double q : {0.0, 0.5, 10.0, 50.0, 99.5, 100.0}) {
      EXPECT_EQ(numpy::percentile_weighted(runs, expanded.size(), q),
                numpy::percentile_sorted(expanded, q));
    }
  }
}

TEST(Plan_Numpy, round_half_even_like_python) {
  EXPECT_EQ(numpy::round_half_even(0.5), 0);
  EXPECT_EQ(numpy::round_half_even(1.5), 2);
  EXPECT_EQ(numpy::round_half_even(2.5), 2);
  EXPECT_EQ(numpy::round_half_even(-0.5), 0);
  EXPECT_EQ(numpy::round_half_even(2.4999), 2);
  EXPECT_EQ(numpy::round_half_even(12.6), 13);
  EXPECT_EQ(numpy::median({3, 1, 2, 10}), 2.5);
  EXPECT_EQ(numpy::median({3, 1, 2}), 2);
  EXPECT_DOUBLE_EQ(numpy::percentile({1, 2, 3, 4, 5}, 10), 1.4);
}
