// `umamba evaluate`'s job (src/pipeline/evaluate): pairing by name, the checks that stop a run
// with a clear message (missing, duplicate, shape, spacing), and the files it writes.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "core/image.h"
#include "io/image_io.h"
#include "pipeline/evaluate.h"

namespace fs = std::filesystem;
namespace up = umamba::pipeline;
using umamba::DType;
using umamba::Image;
using umamba::Shape;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("umamba_eval_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path / "gt");
    fs::create_directories(path / "pred");
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

Image cells(int64_t h, int64_t w, int shift, std::array<double, 3> spacing = {1, 1, 1}) {
  Image img = Image::zeros(DType::U16, Shape{1, 1, h, w});
  img.geometry().spacing = spacing;
  auto* p = img.data_as<uint16_t>();
  // Up to four 5x7 cells stacked along Y; those that do not fit the image are left out.
  for (int c = 0; c < 4; ++c)
    for (int64_t y = 5 + 10 * c; y < std::min<int64_t>(10 + 10 * c, h); ++y)
      for (int64_t x = 5 + shift; x < std::min<int64_t>(12 + shift, w); ++x)
        p[y * w + x] = static_cast<uint16_t>(c + 1);
  return img;
}

std::string message_of(const up::EvaluateOptions& o) {
  try {
    up::run_evaluate(o);
  } catch (const umamba::Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST(Metrics_Evaluate, case_keys_strip_extension_and_label_suffix) {
  EXPECT_EQ(up::case_key("cell_00001_label.tiff"), "cell_00001");
  EXPECT_EQ(up::case_key("cell_00001.tif"), "cell_00001");
  EXPECT_EQ(up::case_key("FLARE22_Tr_0001.nii.gz"), "FLARE22_Tr_0001");
  EXPECT_EQ(up::case_key("case.NII.GZ"), "case");
  EXPECT_EQ(up::case_key("a.b_label.png"), "a.b");
}

TEST(Metrics_Evaluate, f1_run_writes_csv_and_summary) {
  TempDir t;
  umamba::io::write_labels(t.path / "gt/img1_label.tiff", cells(50, 40, 0));
  umamba::io::write_labels(t.path / "pred/img1_label.tiff", cells(50, 40, 0));
  umamba::io::write_labels(t.path / "gt/img2_label.tiff", cells(50, 40, 0));
  umamba::io::write_labels(t.path / "pred/img2.tiff", cells(50, 40, 4));
  up::EvaluateOptions o;
  o.gt_dir = t.path / "gt";
  o.pred_dir = t.path / "pred";
  o.output_dir = t.path / "out";
  const auto s = up::run_evaluate(o);
  EXPECT_EQ(s["cases"], 2);
  EXPECT_DOUBLE_EQ(s["f1"]["mean"].get<double>(), 0.5);  // 1 and 0 (shift 4 of 7: IoU 3/11)
  std::ifstream csv(t.path / "out/f1_per_case.csv");
  std::string header, row1, row2;
  std::getline(csv, header);
  std::getline(csv, row1);
  std::getline(csv, row2);
  EXPECT_EQ(header.rfind("name,true_num,pred_num,tp,fp,fn,precision,recall,f1", 0), 0u);
  EXPECT_EQ(row1.rfind("img1,4,4,4,0,0,", 0), 0u) << row1;
  EXPECT_EQ(row2.rfind("img2,4,4,0,4,4,", 0), 0u) << row2;
  EXPECT_TRUE(fs::exists(t.path / "out/f1_summary.json"));
  EXPECT_NE(up::format_evaluate_summary(s).find("0.5000"), std::string::npos);
}

TEST(Metrics_Evaluate, missing_and_duplicate_cases_stop_the_run) {
  TempDir t;
  umamba::io::write_labels(t.path / "gt/a_label.tiff", cells(30, 30, 0));
  umamba::io::write_labels(t.path / "gt/b_label.tiff", cells(30, 30, 0));
  umamba::io::write_labels(t.path / "pred/a_label.tiff", cells(30, 30, 0));
  umamba::io::write_labels(t.path / "pred/c_label.tiff", cells(30, 30, 0));
  up::EvaluateOptions o;
  o.gt_dir = t.path / "gt";
  o.pred_dir = t.path / "pred";
  o.output_dir = t.path / "out";
  const std::string m = message_of(o);
  EXPECT_NE(m.find("b_label.tiff"), std::string::npos) << m;
  EXPECT_NE(m.find("c_label.tiff"), std::string::npos) << m;
  EXPECT_FALSE(fs::exists(t.path / "out/f1_summary.json"));
  umamba::io::write_labels(t.path / "pred/a.tif", cells(30, 30, 0));
  EXPECT_NE(message_of(o).find("share a case name"), std::string::npos);
  o.gt_dir = t.path / "nowhere";
  EXPECT_NE(message_of(o).find("does not exist"), std::string::npos);
}

// Regression: `umamba predict --overlay --probabilities` writes <name>_overlay.png and
// <name>_prob.tiff beside the labels; evaluate took them for unpaired predictions and stopped.
TEST(Metrics_Evaluate, regression_predict_overlays_and_probabilities_are_not_cases) {
  TempDir t;
  umamba::io::write_labels(t.path / "gt/img1_label.tiff", cells(50, 40, 0));
  umamba::io::write_labels(t.path / "pred/img1_label.tiff", cells(50, 40, 0));
  umamba::io::write_labels(t.path / "pred/img1_overlay.tiff", cells(50, 40, 0));
  umamba::io::write_labels(t.path / "pred/img1_prob.tiff", cells(50, 40, 0));
  up::EvaluateOptions o;
  o.gt_dir = t.path / "gt";
  o.pred_dir = t.path / "pred";
  o.output_dir = t.path / "out";
  const auto s = up::run_evaluate(o);
  EXPECT_EQ(s["cases"], 1);
  EXPECT_DOUBLE_EQ(s["f1"]["mean"].get<double>(), 1.0);
}

TEST(Metrics_Evaluate, shape_and_spacing_mismatches_are_reported) {
  TempDir t;
  umamba::io::write_labels(t.path / "gt/a.nii.gz", cells(30, 30, 0, {1, 0.5, 0.5}));
  umamba::io::write_labels(t.path / "pred/a.nii.gz", cells(30, 30, 0, {1, 0.7, 0.5}));
  umamba::io::write_labels(t.path / "gt/b.nii.gz", cells(30, 30, 0));
  umamba::io::write_labels(t.path / "pred/b.nii.gz", cells(31, 30, 0));
  up::EvaluateOptions o;
  o.gt_dir = t.path / "gt";
  o.pred_dir = t.path / "pred";
  o.output_dir = t.path / "out";
  o.metric = up::EvalMetric::Dsc;
  const std::string m = message_of(o);
  EXPECT_NE(m.find("2 of 2 case pairs do not match"), std::string::npos) << m;
  EXPECT_NE(m.find("a: spacing differs"), std::string::npos) << m;
  EXPECT_NE(m.find("b: shape differs"), std::string::npos) << m;
}

TEST(Metrics_Evaluate, nsd_needs_a_tolerance_and_fills_absent_labels) {
  TempDir t;
  Image g = cells(30, 30, 0, {1, 0.5, 0.5});
  Image p = cells(30, 30, 1, {1, 0.5, 0.5});
  umamba::io::write_labels(t.path / "gt/a.nii.gz", g);
  umamba::io::write_labels(t.path / "pred/a.nii.gz", p);
  up::EvaluateOptions o;
  o.gt_dir = t.path / "gt";
  o.pred_dir = t.path / "pred";
  o.output_dir = t.path / "out";
  o.metric = up::EvalMetric::Nsd;
  EXPECT_NE(message_of(o).find("needs a tolerance"), std::string::npos);
  o.tolerance = 0.25;  // half a pixel: the 1-pixel shift is partly outside
  o.labels = {1, 2, 7};
  const auto s = up::run_evaluate(o);
  ASSERT_EQ(s["labels"].size(), 3u);
  EXPECT_EQ(s["labels"][2]["label"], 7);
  EXPECT_EQ(s["labels"][2]["nsd"]["mean"].get<double>(), 1.0);  // absent from both
  EXPECT_LT(s["labels"][0]["nsd"]["mean"].get<double>(), 1.0);
  EXPECT_GT(s["labels"][0]["nsd"]["mean"].get<double>(), 0.0);
}
