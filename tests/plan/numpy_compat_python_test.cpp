// Cross-check with NumPy itself (label python): our RandomState(1234).choice stream, percentiles,
// median, and the whole per-case fingerprint statistics against tests/python/
// plan_fingerprint_numpy.py, an independent NumPy implementation of nnU-Net's extractor.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "core/image.h"
#include "plan/fingerprint.h"
#include "plan/numpy_compat.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace umamba;
using namespace umamba::plan;

namespace {

void write_raw(const fs::path& p, const void* data, size_t bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
}

}  // namespace

TEST(Plan_NumpyPython, fingerprint_statistics_equal_numpy) {
  const fs::path dir = fs::temp_directory_path() / ("umamba_plan_np_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::mt19937 rng(17);
  const uint64_t num_samples = 20011;
  json spec;
  spec["num_samples"] = num_samples;
  spec["choice_sizes"] = {1, 2, 3, 7, 100, 65536, 65537, 1000003};
  std::vector<double> values;
  std::normal_distribution<double> nd(3, 10);
  for (int i = 0; i < 1001; ++i) values.push_back(nd(rng));
  spec["values"] = values;
  spec["percentiles"] = {0.5, 10, 50, 99.5};
  std::vector<CaseAnalysis> cases;
  for (int i = 0; i < 3; ++i) {
    const Shape s{2, 2 + i, 31, 23 + i};
    Image image = Image::zeros(DType::F32, s);
    Image labels = Image::zeros(DType::I32, Shape{1, s.z, s.y, s.x});
    std::normal_distribution<float> v(100.f * (i + 1), 35.f);
    std::bernoulli_distribution fg(0.25);
    for (int64_t c = 0; c < s.c; ++c)
      for (int64_t z = 0; z < s.z; ++z)
        for (int64_t y = 3; y < s.y - 2; ++y)
          for (int64_t x = 1; x < s.x - 4; ++x) image.at<float>(c, z, y, x) = v(rng);
    for (int64_t k = 0; k < s.pixels(); ++k) labels.data_as<int32_t>()[k] = fg(rng) ? 1 + k % 2 : 0;
    const std::string name = "case" + std::to_string(i);
    write_raw(dir / (name + "_img.raw"), image.data(), image.byte_size());
    write_raw(dir / (name + "_lab.raw"), labels.data(), labels.byte_size());
    spec["cases"].push_back({{"image", name + "_img.raw"},
                             {"labels", name + "_lab.raw"},
                             {"shape", {s.c, s.z, s.y, s.x}}});
    cases.push_back(analyze_case(image, labels, {1, 1, 1}, num_samples));
  }
  std::ofstream(dir / "cases.json") << spec.dump();
  const std::string cmd = std::string(UMAMBA_PYTHON_EXE) + " " + UMAMBA_SOURCE_DIR +
                          "/tests/python/plan_fingerprint_numpy.py " + dir.string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream in(dir / "numpy_fingerprint.json");
  const json np = json::parse(in);

  // RandomState.choice indices.
  for (const auto& [n, expected] : np["choices"].items()) {
    numpy::LegacyRandomState rs(1234);
    for (const auto& e : expected) EXPECT_EQ(rs.bounded(std::stoull(n)), e.get<uint64_t>()) << n;
    numpy::LegacyRandomState many(1234);
    std::vector<uint64_t> got;
    many.bounded_many(std::stoull(n), expected.size(), [&](uint64_t i) { got.push_back(i); });
    EXPECT_EQ(got, expected.get<std::vector<uint64_t>>()) << n;
  }
  for (const auto& [q, expected] : np["percentiles"].items()) {
    EXPECT_DOUBLE_EQ(numpy::percentile(values, std::stod(q)), expected.get<double>()) << q;
  }
  EXPECT_DOUBLE_EQ(numpy::median(values), np["median"].get<double>());

  const Fingerprint f = aggregate_fingerprint(cases);
  for (size_t i = 0; i < cases.size(); ++i) {
    for (size_t a = 0; a < 3; ++a)
      EXPECT_EQ(f.shapes_after_crop[i][a], np["shapes_after_crop"][i][a]);
  }
  EXPECT_DOUBLE_EQ(f.median_relative_size_after_cropping,
                   np["median_relative_size_after_cropping"].get<double>());
  ASSERT_EQ(f.foreground_intensity_properties_per_channel.size(), 2u);
  for (size_t c = 0; c < 2; ++c) {
    const auto& p = f.foreground_intensity_properties_per_channel[c];
    const auto& e = np["foreground_intensity_properties_per_channel"][std::to_string(c)];
    // NumPy reduces float32 samples in float32; exact order statistics agree to float32 rounding.
    auto near = [](double ours, double theirs) {
      return std::fabs(ours - theirs) <= 2e-6 * std::max(1.0, std::fabs(theirs));
    };
    EXPECT_EQ(p.min, e["min"].get<double>());
    EXPECT_EQ(p.max, e["max"].get<double>());
    EXPECT_TRUE(near(p.mean, e["mean"].get<double>())) << p.mean << " vs " << e["mean"];
    EXPECT_TRUE(near(p.std, e["std"].get<double>())) << p.std << " vs " << e["std"];
    EXPECT_TRUE(near(p.median, e["median"].get<double>())) << p.median << " vs " << e["median"];
    EXPECT_TRUE(near(p.percentile_99_5, e["percentile_99_5"].get<double>()))
        << p.percentile_99_5 << " vs " << e["percentile_99_5"];
    EXPECT_TRUE(near(p.percentile_00_5, e["percentile_00_5"].get<double>()))
        << p.percentile_00_5 << " vs " << e["percentile_00_5"];
  }
  fs::remove_all(dir);
}
