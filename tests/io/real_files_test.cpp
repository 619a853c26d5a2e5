// The real files of examples/data (and the NeurIPS pair from the shared data when present) read
// with the facts their READMEs state. Pixel-exact comparison against tifffile/nibabel is in
// tests/python/io_crosscheck.py (mode real).
#include <gtest/gtest.h>

#include <set>

#include "io/image_io.h"
#include "io_test_util.h"

namespace umamba::io {
namespace {

template <typename T>
std::set<T> values(const Image& img) {
  std::set<T> v;
  const T* p = img.data_as<T>();
  for (int64_t i = 0; i < img.element_count(); ++i) v.insert(p[i]);
  return v;
}

TEST(Io_Real, dsb2018_image_and_labels) {
  const Image img = read_image(test::source_path("examples/data/dsb2018/img2d.tif"));
  EXPECT_EQ(img.shape(), (Shape{1, 1, 512, 512}));
  EXPECT_EQ(img.dtype(), DType::U16);
  const Image mask = read_image(test::source_path("examples/data/dsb2018/mask2d.tif"));
  ASSERT_EQ(mask.dtype(), DType::U16);
  const auto labels = values<uint16_t>(mask);
  EXPECT_EQ(labels.size(), 126u);  // background + 125 nuclei
  EXPECT_EQ(*labels.rbegin(), 183);
}

TEST(Io_Real, go_nuclear_stacks_with_spacing) {
  struct Case {
    const char* stem;
    size_t nuclei;
    double z, xy;
  };
  for (const Case& c : {Case{"1135", 54, 0.28371836501901143, 0.12678642066720086},
                        Case{"1136", 32, 0.2837183895131086, 0.12756971653115998}}) {
    const std::string base = std::string("examples/data/go-nuclear/") + c.stem;
    auto raw = open_image(test::source_path(base + "_mini_raw.tif"));
    EXPECT_EQ(raw->info().shape, (Shape{1, 100, 100, 100}));
    EXPECT_EQ(raw->info().dtype, DType::U8);
    EXPECT_EQ(raw->info().geometry.unit, "um");
    EXPECT_DOUBLE_EQ(raw->info().geometry.spacing[0], c.z);
    EXPECT_DOUBLE_EQ(raw->info().geometry.spacing[1], c.xy);
    EXPECT_DOUBLE_EQ(raw->info().geometry.spacing[2], c.xy);
    const Image labels = read_image(test::source_path(base + "_mini_label.tif"));
    ASSERT_EQ(labels.dtype(), DType::U16);
    EXPECT_EQ(values<uint16_t>(labels).size(), c.nuclei + 1);
    EXPECT_EQ(labels.geometry().spacing, raw->info().geometry.spacing);
  }
}

TEST(Io_Real, neurips_int16_label_tiff) {
  const auto path = test::shared_path("cells2d/neurips-cellseg/labels/cell_00225_label.tiff");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " absent";
  auto reader = open_image(path);
  EXPECT_EQ(reader->info().metadata.at("tiff.compression"), "deflate");
  const Image labels = reader->read();
  EXPECT_EQ(labels.shape(), (Shape{1, 1, 1024, 1024}));
  ASSERT_EQ(labels.dtype(), DType::I16);
  EXPECT_EQ(values<int16_t>(labels), (std::set<int16_t>{0, 1, 2, 3, 4, 5, 6}));
}

}  // namespace
}  // namespace umamba::io
