// Fingerprint extraction from files (through src/io) against nnU-Net's own extractor on datasets
// built from examples/data (fixtures in tests/fixtures/plan/examples, made by
// tests/python/plan_nnunet_fingerprint.py), the TBB extraction against a sequential loop, the
// NeurIPS layout, and `umamba plan` end to end.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "io/image_io.h"
#include "plan/case_image.h"
#include "plan/dataset.h"
#include "plan/fingerprint.h"
#include "plan/planner.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace umamba;
using namespace umamba::plan;

namespace {

const fs::path kSource = UMAMBA_SOURCE_DIR;
const fs::path kData = kSource / "examples" / "data";

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("umamba_plan_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

json read_json(const fs::path& p) {
  std::ifstream in(p);
  return json::parse(in);
}

// The nnU-Net raw dataset the fixture was made from, rebuilt under `root`.
fs::path make_raw(const fs::path& root, const std::string& name,
                  const std::vector<std::pair<std::string, fs::path>>& files) {
  const fs::path folder = root / name;
  for (const auto& [dst, src] : files) {
    fs::create_directories((folder / dst).parent_path());
    fs::copy_file(src, folder / dst);
  }
  fs::copy_file(kSource / "tests/fixtures/plan/examples" / name / "dataset.json",
                folder / "dataset.json");
  return folder;
}

void expect_fingerprint_equals_nnunet(const Fingerprint& ours, const fs::path& reference) {
  const json t = read_json(reference);
  const Fingerprint theirs = fingerprint_from_json(t, reference.string());
  EXPECT_EQ(ours.shapes_after_crop, theirs.shapes_after_crop);
  EXPECT_EQ(ours.spacings, theirs.spacings);
  EXPECT_DOUBLE_EQ(ours.median_relative_size_after_cropping,
                   theirs.median_relative_size_after_cropping);
  ASSERT_EQ(ours.foreground_intensity_properties_per_channel.size(),
            theirs.foreground_intensity_properties_per_channel.size());
  for (size_t c = 0; c < ours.foreground_intensity_properties_per_channel.size(); ++c) {
    const auto& a = ours.foreground_intensity_properties_per_channel[c];
    const auto& b = theirs.foreground_intensity_properties_per_channel[c];
    // Order statistics are exact; NumPy sums the 1e8 float32 samples in float32 (mean, std).
    EXPECT_EQ(a.min, b.min);
    EXPECT_EQ(a.max, b.max);
    EXPECT_EQ(a.median, b.median);
    EXPECT_EQ(a.percentile_00_5, b.percentile_00_5);
    EXPECT_EQ(a.percentile_99_5, b.percentile_99_5);
    EXPECT_NEAR(a.mean, b.mean, 1e-6 * std::fabs(b.mean));
    EXPECT_NEAR(a.std, b.std, 1e-6 * b.std);
  }
}

}  // namespace

TEST(Plan_FingerprintIo, ct_nifti_equals_nnunet_extractor) {
  TempDir tmp;
  const fs::path folder =
      make_raw(tmp.path(), "Dataset020_TotalSegCT",
               {{"imagesTr/ct_0000.nii.gz", kData / "totalsegmentator/example_ct_sm.nii.gz"},
                {"labelsTr/ct.nii.gz", kData / "totalsegmentator/example_seg.nii.gz"}});
  DatasetDescription d = discover_dataset(folder);
  ASSERT_EQ(d.cases.size(), 1u);
  EXPECT_EQ(d.channel_names, std::vector<std::string>{"CT"});
  const Fingerprint f = extract_fingerprint(d);
  expect_fingerprint_equals_nnunet(
      f,
      kSource / "tests/fixtures/plan/examples/Dataset020_TotalSegCT/nnunet_2.2.1_fingerprint.json");
}

TEST(Plan_FingerprintIo, grey_tiff_2d_equals_nnunet_extractor) {
  TempDir tmp;
  const fs::path folder = make_raw(tmp.path(), "Dataset022_DSB",
                                   {{"imagesTr/dsb_0000.tif", kData / "dsb2018/img2d.tif"},
                                    {"labelsTr/dsb.tif", kData / "dsb2018/mask2d.tif"}});
  DatasetDescription d = discover_dataset(folder);
  const Fingerprint f = extract_fingerprint(d);
  expect_fingerprint_equals_nnunet(
      f, kSource / "tests/fixtures/plan/examples/Dataset022_DSB/nnunet_2.2.1_fingerprint.json");
}

TEST(Plan_FingerprintIo, parallel_extraction_equals_sequential_cases) {
  TempDir tmp;
  const fs::path folder = tmp.path() / "nuclei";
  fs::create_directories(folder / "images");
  fs::create_directories(folder / "labels");
  for (const std::string c : {"1135", "1136"}) {
    fs::copy_file(kData / "go-nuclear" / (c + "_mini_raw.tif"), folder / "images" / (c + ".tif"));
    fs::copy_file(kData / "go-nuclear" / (c + "_mini_label.tif"),
                  folder / "labels" / (c + "_label.tif"));
  }
  DatasetDescription d = discover_dataset(folder);
  EXPECT_EQ(d.layout, DatasetLayout::NeurIPSCells);
  ASSERT_EQ(d.cases.size(), 2u);
  FingerprintOptions o;
  o.total_foreground_samples = 2e6;
  const Fingerprint f = extract_fingerprint(d, o);
  EXPECT_EQ(d.channel_names, std::vector<std::string>{"grey"});
  std::vector<CaseAnalysis> seq;
  for (const auto& c : d.cases) {
    const Image image = io::read_image(c.images[0]);
    const Image labels = io::read_image(c.label);
    const auto& sp = image.geometry().spacing;
    seq.push_back(analyze_case(image, labels, {sp[0], sp[1], sp[2]}, 1000000));
  }
  const Fingerprint g = aggregate_fingerprint(seq);
  EXPECT_EQ(fingerprint_to_json(f), fingerprint_to_json(g));
  EXPECT_EQ(f.shapes_after_crop.size(), 2u);
}

TEST(Plan_FingerprintIo, missing_label_is_a_file_error) {
  TempDir tmp;
  const fs::path folder = make_raw(tmp.path(), "Dataset022_DSB",
                                   {{"imagesTr/dsb_0000.tif", kData / "dsb2018/img2d.tif"}});
  fs::create_directories(folder / "labelsTr");
  try {
    discover_dataset(folder);
    FAIL() << "missing label accepted";
  } catch (const FileError& e) {
    EXPECT_NE(std::string(e.what()).find("dsb.tif"), std::string::npos) << e.what();
  }
}

// The channel rules shared by the planner and the trainer (plan/case_image.h), on TIFFs written
// here: grey repeated to RGB, alpha dropped, channel files stacked, and the errors naming the file.
TEST(Plan_CaseImage, channel_rules_and_errors) {
  TempDir tmp;
  auto write = [&](const std::string& name, int64_t channels, int64_t w, uint8_t base) {
    Image im = Image::zeros(DType::U8, Shape{channels, 1, 4, w});
    for (int64_t i = 0; i < im.element_count(); ++i)
      im.data_as<uint8_t>()[i] = static_cast<uint8_t>(base + i % 251);
    const fs::path path = tmp.path() / name;
    io::write_image(path, im);
    return std::make_pair(path, im);
  };
  const auto [grey_path, grey] = write("grey.tif", 1, 5, 1);
  const auto [rgba_path, rgba] = write("rgba.tif", 4, 5, 7);
  const auto [two_path, two] = write("two.tif", 2, 5, 3);
  const auto [wide_path, wide] = write("wide.tif", 1, 6, 9);

  const Image rgb = read_case_image(Case{"g", {grey_path}, {}}, 3, true);
  ASSERT_EQ(rgb.shape(), (Shape{3, 1, 4, 5}));
  for (int64_t ch = 0; ch < 3; ++ch) EXPECT_TRUE(rgb.channel(ch).same_pixels(grey)) << ch;
  const Image no_alpha = read_case_image(Case{"a", {rgba_path}, {}}, 3, true);
  ASSERT_EQ(no_alpha.channels(), 3);
  for (int64_t ch = 0; ch < 3; ++ch)
    EXPECT_TRUE(no_alpha.channel(ch).same_pixels(rgba.channel(ch))) << ch;
  const Image stacked = read_case_image(Case{"s", {grey_path, two_path}, {}}, 0, false);
  ASSERT_EQ(stacked.channels(), 3);
  EXPECT_TRUE(stacked.channel(0).same_pixels(grey));
  EXPECT_TRUE(stacked.channel(2).same_pixels(two.channel(1)));

  auto expect_file_error = [](const std::function<void()>& f, const fs::path& file,
                              const std::string& words) {
    try {
      f();
      ADD_FAILURE() << "accepted; expected an error on " << file;
    } catch (const FileError& e) {
      EXPECT_EQ(e.path(), file.string());
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  expect_file_error(
      [&] {
        (void)read_case_image(Case{"g", {grey_path}, {}}, 3, false);
      },
      grey_path, "1 channels, 3 expected");
  expect_file_error(
      [&] {
        (void)read_case_image(Case{"w", {grey_path, wide_path}, {}}, 0, false);
      },
      wide_path, "differs from the case's first image");
  expect_file_error(
      [&] {
        (void)read_case_image(Case{"s", {grey_path, two_path}, {}}, 2, false);
      },
      grey_path, "has 3 channels, dataset.json names 2");

  DatasetDescription d;
  d.layout = DatasetLayout::NeurIPSCells;
  d.cases = {Case{"g", {grey_path}, {}}, Case{"a", {rgba_path}, {}}};
  resolve_neurips_channels(d);
  EXPECT_EQ(d.channel_names, (std::vector<std::string>{"R", "G", "B"}));
  EXPECT_TRUE(d.replicate_grey_to_rgb);
  DatasetDescription greys = d;
  greys.channel_names.clear();
  greys.cases = {Case{"g", {grey_path}, {}}};
  resolve_neurips_channels(greys);
  EXPECT_EQ(greys.channel_names, (std::vector<std::string>{"grey"}));
  EXPECT_FALSE(greys.replicate_grey_to_rgb);
  DatasetDescription bad = greys;
  bad.channel_names.clear();
  bad.cases = {Case{"t", {two_path}, {}}};
  expect_file_error([&] { resolve_neurips_channels(bad); }, two_path, "has 2 channels");
}

TEST(Plan_FingerprintIo, neurips_pair_rgb) {
  const fs::path pair = fs::path(UMAMBA_SHARED_DATA) / "cells2d/neurips-cellseg";
  if (!fs::exists(pair)) GTEST_SKIP() << "shared data absent: " << pair;
  if (!io::is_supported_image("x.png")) GTEST_SKIP() << "this build reads no PNG (OpenCV off)";
  DatasetDescription d = discover_dataset(pair);
  ASSERT_EQ(d.cases.size(), 1u);
  const Fingerprint f = extract_fingerprint(d);
  EXPECT_EQ(d.channel_names, (std::vector<std::string>{"R", "G", "B"}));
  EXPECT_EQ(f.foreground_intensity_properties_per_channel.size(), 3u);
  EXPECT_EQ(f.spacings[0][0], 999.0);
  const Plans p = plan_experiment(f, planner_input(d));
  ASSERT_NE(p.find("2d"), nullptr);
  EXPECT_EQ(p.find("3d_fullres"), nullptr);
}

// `umamba plan` on a dataset built from examples/data: plans.json and the fingerprint appear,
// in seconds.
TEST(Plan_Cli, plan_examples_dataset) {
  const fs::path exe = fs::path(UMAMBA_BINARY_DIR) / "umamba";
  if (!fs::exists(exe)) GTEST_SKIP() << "umamba binary not built: " << exe;
  TempDir tmp;
  const fs::path folder =
      make_raw(tmp.path(), "Dataset020_TotalSegCT",
               {{"imagesTr/ct_0000.nii.gz", kData / "totalsegmentator/example_ct_sm.nii.gz"},
                {"labelsTr/ct.nii.gz", kData / "totalsegmentator/example_seg.nii.gz"}});
  const fs::path out = tmp.path() / "out" / "plans.json";
  const std::string cmd = exe.string() + " --log-level warn plan " + folder.string() + " -o " +
                          out.string() + " --configurations 3d_fullres > " +
                          (tmp.path() / "stdout.txt").string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const json plans = read_json(out);
  EXPECT_TRUE(plans["configurations"].contains("3d_fullres"));
  EXPECT_FALSE(plans["configurations"].contains("2d"));
  EXPECT_EQ(plans["configurations"]["3d_fullres"]["normalization_schemes"][0], "CTNormalization");
  EXPECT_TRUE(fs::exists(out.parent_path() / "dataset_fingerprint.json"));
  // A folder holding only dataset.json + dataset_fingerprint.json plans without images.
  const fs::path fp_only = tmp.path() / "fp_only";
  fs::create_directories(fp_only);
  fs::copy_file(folder / "dataset.json", fp_only / "dataset.json");
  fs::copy_file(out.parent_path() / "dataset_fingerprint.json",
                fp_only / "dataset_fingerprint.json");
  const std::string cmd2 = exe.string() + " --log-level warn plan " + fp_only.string() + " > " +
                           (tmp.path() / "stdout2.txt").string();
  ASSERT_EQ(std::system(cmd2.c_str()), 0) << cmd2;
  const json again = read_json(fp_only / "plans.json");
  EXPECT_EQ(again["configurations"]["3d_fullres"], plans["configurations"]["3d_fullres"]);
  // Bad input: a folder of neither layout fails with a message, not a crash.
  const std::string bad = exe.string() + " plan " + (tmp.path() / "out").string() + " 2> " +
                          (tmp.path() / "err.txt").string();
  EXPECT_NE(std::system(bad.c_str()), 0);
}
