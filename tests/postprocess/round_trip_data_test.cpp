// Real label images: the round trip ground truth -> three classes -> instances, scored with the
// NeurIPS F1 rule (umamba::metrics): reclaim mode >= 0.95, the paper's plain mode printed beside
// it; and connected components of the same images against the flood-fill reference. Data:
// examples/data (bundled) and the NeurIPS pair from the shared data folder (skipped when absent).
#include <gtest/gtest.h>

#include <filesystem>

#include "io/image_io.h"
#include "metrics/instance_f1.h"
#include "postprocess/ccl.h"
#include "postprocess/reference.h"
#include "postprocess/targets.h"

namespace umamba::postprocess {
namespace {

namespace fs = std::filesystem;

struct RoundTrip {
  metrics::F1Result reclaim, plain;          // the official rule (frame cells removed)
  metrics::F1Result reclaim_all, plain_all;  // every cell kept (--count_bd_cells)
  uint32_t n_reclaim = 0, n_plain = 0;
};

RoundTrip round_trip(const Image& gt) {
  const Image classes = instances_to_classes(gt, ClassTargetOptions{});
  RoundTrip r;
  const Image reclaim = classes_to_instances(classes, InstanceOptions{}, &r.n_reclaim);
  InstanceOptions plain;
  plain.mode = InstanceMode::Plain;
  const Image plain_labels = classes_to_instances(classes, plain, &r.n_plain);
  r.reclaim = metrics::instance_f1(gt, reclaim);
  r.plain = metrics::instance_f1(gt, plain_labels);
  metrics::F1Options all;
  all.keep_border = true;
  r.reclaim_all = metrics::instance_f1(gt, reclaim, all);
  r.plain_all = metrics::instance_f1(gt, plain_labels, all);
  return r;
}

void check(const fs::path& path, double at_least) {
  if (!fs::exists(path)) GTEST_SKIP() << path << " is absent";
  const Image gt = io::read_image(path);
  const RoundTrip r = round_trip(gt);
  std::printf(
      "%s (%s): reclaim F1 %.4f (tp %lld of %lld true, %lld predicted), plain F1 %.4f "
      "(tp %lld, %lld predicted)\n",
      path.filename().c_str(), to_string(gt.shape()).c_str(), r.reclaim.f1,
      static_cast<long long>(r.reclaim.counts.tp), static_cast<long long>(r.reclaim.counts.n_true),
      static_cast<long long>(r.reclaim.counts.n_pred), r.plain.f1,
      static_cast<long long>(r.plain.counts.tp), static_cast<long long>(r.plain.counts.n_pred));
  std::printf("  every cell kept: reclaim F1 %.4f (tp %lld of %lld), plain F1 %.4f (tp %lld)\n",
              r.reclaim_all.f1, static_cast<long long>(r.reclaim_all.counts.tp),
              static_cast<long long>(r.reclaim_all.counts.n_true), r.plain_all.f1,
              static_cast<long long>(r.plain_all.counts.tp));
  ::testing::Test::RecordProperty("reclaim_f1", std::to_string(r.reclaim.f1));
  ::testing::Test::RecordProperty("plain_f1", std::to_string(r.plain.f1));
  EXPECT_GE(r.reclaim.f1, at_least) << path;
  EXPECT_GE(r.reclaim.f1, r.plain.f1) << path;
  EXPECT_GE(r.reclaim_all.f1, at_least) << path << " (every cell kept)";
}

const fs::path kSource = UMAMBA_SOURCE_DIR;
const fs::path kShared = UMAMBA_SHARED_DATA;

TEST(Postprocess_RoundTrip, dsb2018_nuclei_2d) {
  check(kSource / "examples/data/dsb2018/mask2d.tif", 0.95);
}

TEST(Postprocess_RoundTrip, go_nuclear_3d_1135) {
  check(kSource / "examples/data/go-nuclear/1135_mini_label.tif", 0.95);
}

TEST(Postprocess_RoundTrip, go_nuclear_3d_1136) {
  check(kSource / "examples/data/go-nuclear/1136_mini_label.tif", 0.95);
}

TEST(Postprocess_RoundTrip, neurips_cellseg_2d) {
  check(kShared / "cells2d/neurips-cellseg/labels/cell_00225_label.tiff", 0.95);
}

// Connected components of real label images (foreground, and the labels as a multi-label image)
// against the flood-fill reference, serial and on 2 threads.
TEST(Postprocess_Ccl, real_labels_match_flood_fill) {
  for (const char* name :
       {"examples/data/dsb2018/mask2d.tif", "examples/data/go-nuclear/1135_mini_label.tif",
        "examples/data/go-nuclear/1136_mini_label.tif"}) {
    const Image img = io::read_image(kSource / name).cast(DType::U16);
    const Extents e{img.depth(), img.height(), img.width()};
    const std::vector<uint16_t> values(img.data_as<uint16_t>(),
                                       img.data_as<uint16_t>() + e.pixels());
    for (bool multi : {false, true}) {
      for (int conn : e.is_3d() ? std::vector<int>{6, 18, 26} : std::vector<int>{4, 8}) {
        const auto expected = test::flood_fill_label(values, e, conn, multi);
        for (int threads : {1, 2}) {
          CclOptions o;
          o.connectivity = connectivity_from_int(conn, e.is_3d());
          o.multi_label = multi;
          o.threads = threads;
          std::vector<uint32_t> got(values.size());
          label_components(values.data(), e, got.data(), o);
          EXPECT_EQ(got, expected)
              << name << " conn " << conn << " multi " << multi << " threads " << threads;
        }
      }
    }
  }
}

}  // namespace
}  // namespace umamba::postprocess
