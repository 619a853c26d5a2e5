// NIfTI reading and writing: round trips of every dtype with geometry, the reference header kept
// by label writes, scaling, the real TotalSegmentator CT with its affine, header validation.
#include <gtest/gtest.h>
#include <nifti1_io.h>

#include <cmath>
#include <cstring>
#include <set>

#include "core/error.h"
#include "io/image_io.h"
#include "io_test_util.h"

namespace umamba::io {
namespace {

using test::random_image;
using test::TempDir;

Geometry oblique_geometry() {
  Geometry g;
  g.spacing = {2.5, 0.8, 0.6};  // [Z,Y,X]
  g.unit = "mm";
  g.origin = {12.5, -30.0, 7.25};
  // A rotation of 30 degrees about world z: columns are the index axes' directions.
  const double c = std::cos(M_PI / 6), s = std::sin(M_PI / 6);
  g.direction = {c, -s, 0, s, c, 0, 0, 0, 1};
  return g;
}

void expect_geometry_near(const Geometry& a, const Geometry& b, double tol) {
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(a.spacing[i], b.spacing[i], tol) << "spacing " << i;
    EXPECT_NEAR(a.origin[i], b.origin[i], tol) << "origin " << i;
  }
  for (int i = 0; i < 9; ++i) EXPECT_NEAR(a.direction[i], b.direction[i], tol) << "direction " << i;
  EXPECT_EQ(a.unit, b.unit);
}

nifti_1_header raw_header(const std::filesystem::path& p) {
  nifti_1_header h;
  int swapped = 0;
  nifti_1_header* read = nifti_read_header(p.c_str(), &swapped, 1);
  EXPECT_NE(read, nullptr) << p;
  if (read == nullptr) return h;
  h = *read;
  free(read);
  return h;
}

TEST(Io_Nifti, roundtrip_every_dtype_with_geometry) {
  TempDir dir;
  uint32_t seed = 0;
  for (DType dtype : test::kAllDTypes) {
    for (const char* ext : {".nii", ".nii.gz"}) {
      for (int64_t channels : {1, 2}) {
        Image img = random_image(dtype, Shape{channels, 5, 7, 9}, seed++);
        img.geometry() = oblique_geometry();
        const auto path = dir / (std::string("v") + std::to_string(seed) + ext);
        write_image(path, img);
        auto reader = open_image(path);
        EXPECT_EQ(reader->info().format, "nifti");
        ASSERT_EQ(reader->info().dtype, dtype);
        ASSERT_EQ(reader->info().shape, img.shape());
        const Image back = reader->read();
        ASSERT_TRUE(back.same_pixels(img)) << dtype_name(dtype) << ext << " C=" << channels;
        expect_geometry_near(back.geometry(), img.geometry(), 1e-5);
        EXPECT_EQ(reader->info().metadata.at("nifti.compressed"),
                  std::string(ext) == ".nii" ? "none" : "gzip");
      }
    }
  }
}

TEST(Io_Nifti, region_reads_equal_crops) {
  TempDir dir;
  Image img = random_image(DType::I16, Shape{1, 6, 9, 11}, 4);
  img.geometry() = oblique_geometry();
  write_image(dir / "a.nii.gz", img);
  auto reader = open_image(dir / "a.nii.gz");
  const Box b{1, 2, 3, 4, 5, 6};
  const Image r = reader->read_region(b);
  EXPECT_TRUE(r.same_pixels(img.region(b).clone()));
  // The region's origin is voxel (3,2,1) of the full image in world coordinates (the geometry as
  // read back: NIfTI stores it in float32).
  const Geometry& g = reader->info().geometry;
  for (int row = 0; row < 3; ++row) {
    const double want = g.origin[row] + g.direction[row * 3 + 0] * 3 * g.spacing[2] +
                        g.direction[row * 3 + 1] * 2 * g.spacing[1] +
                        g.direction[row * 3 + 2] * 1 * g.spacing[0];
    EXPECT_NEAR(r.geometry().origin[row], want, 1e-9);
  }
  EXPECT_THROW(reader->read_region(Box{0, 0, 0, 7, 1, 1}), Error);
}

TEST(Io_Nifti, labels_keep_the_reference_header) {
  TempDir dir;
  const auto ct = test::source_path("examples/data/totalsegmentator/example_ct_sm.nii.gz");
  const Image image = read_image(ct);
  Image labels = Image::zeros(DType::I32, image.shape());
  labels.at<int32_t>(0, 3, 4, 5) = 300;
  labels.at<int32_t>(0, 0, 0, 0) = 7;
  WriteOptions opt;
  opt.reference = ct;
  write_labels(dir / "seg.nii.gz", labels, opt);
  const nifti_1_header ref = raw_header(ct);
  const nifti_1_header out = raw_header(dir / "seg.nii.gz");
  EXPECT_EQ(out.datatype, DT_UINT16);
  EXPECT_EQ(out.bitpix, 16);
  EXPECT_EQ(out.scl_slope, 1.0f);
  EXPECT_EQ(out.scl_inter, 0.0f);
  EXPECT_EQ(out.sform_code, ref.sform_code);
  EXPECT_EQ(out.qform_code, ref.qform_code);
  EXPECT_EQ(out.xyzt_units, ref.xyzt_units);
  EXPECT_EQ(std::memcmp(out.srow_x, ref.srow_x, sizeof ref.srow_x), 0);
  EXPECT_EQ(std::memcmp(out.srow_y, ref.srow_y, sizeof ref.srow_y), 0);
  EXPECT_EQ(std::memcmp(out.srow_z, ref.srow_z, sizeof ref.srow_z), 0);
  EXPECT_EQ(std::memcmp(out.pixdim + 1, ref.pixdim + 1, 3 * sizeof(float)), 0);
  EXPECT_EQ(out.quatern_b, ref.quatern_b);
  EXPECT_EQ(out.qoffset_x, ref.qoffset_x);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(out.dim[i], ref.dim[i]);
  const Image back = read_image(dir / "seg.nii.gz");
  EXPECT_TRUE(back.same_pixels(labels.cast(DType::U16)));
  expect_geometry_near(back.geometry(), image.geometry(), 0);
  // Labels up to 255 are u8, as nnU-Net writes segmentations.
  labels.at<int32_t>(0, 3, 4, 5) = 255;
  write_labels(dir / "seg8.nii.gz", labels, opt);
  EXPECT_EQ(raw_header(dir / "seg8.nii.gz").datatype, DT_UINT8);
  // A reference of another size is refused, and nothing is left behind.
  EXPECT_THROW(write_labels(dir / "bad.nii.gz", Image::zeros(DType::U8, Shape{1, 2, 2, 2}), opt),
               Error);
  EXPECT_FALSE(std::filesystem::exists(dir / "bad.nii.gz"));
}

TEST(Io_Nifti, scaling_is_applied_as_nibabel_does) {
  TempDir dir;
  Image img = random_image(DType::I16, Shape{1, 2, 3, 4}, 8);
  write_image(dir / "s.nii", img);
  // Patch scl_slope (byte 112) and scl_inter (byte 116) of the uncompressed header.
  auto bytes = test::read_bytes(dir / "s.nii");
  const float slope = 0.5f, inter = -10.0f;
  std::memcpy(bytes.data() + 112, &slope, 4);
  std::memcpy(bytes.data() + 116, &inter, 4);
  test::write_bytes(dir / "s.nii", bytes, bytes.size());
  const Image back = read_image(dir / "s.nii");
  ASSERT_EQ(back.dtype(), DType::F32);
  for (int64_t i = 0; i < img.element_count(); ++i) {
    EXPECT_FLOAT_EQ(back.data_as<float>()[i], img.data_as<int16_t>()[i] * 0.5f - 10.0f);
  }
  // NaN slope (nibabel's "unset") means no scaling.
  const float nan = std::nanf("");
  std::memcpy(bytes.data() + 112, &nan, 4);
  test::write_bytes(dir / "s.nii", bytes, bytes.size());
  EXPECT_TRUE(read_image(dir / "s.nii").same_pixels(img));
}

TEST(Io_Nifti, real_totalsegmentator_ct_and_labels) {
  const auto ct = test::source_path("examples/data/totalsegmentator/example_ct_sm.nii.gz");
  const auto seg = test::source_path("examples/data/totalsegmentator/example_seg.nii.gz");
  auto reader = open_image(ct);
  const ImageInfo& info = reader->info();
  EXPECT_EQ(info.shape, (Shape{1, 30, 101, 122}));
  EXPECT_EQ(info.dtype, DType::I16);
  EXPECT_EQ(info.geometry.unit, "mm");
  for (double s : info.geometry.spacing) EXPECT_DOUBLE_EQ(s, 3.0);
  // sform (code 2) translation, as nibabel reports it
  EXPECT_NEAR(info.geometry.origin[0], -177.95632935, 1e-5);
  EXPECT_NEAR(info.geometry.origin[1], 11.31900024, 1e-5);
  EXPECT_NEAR(info.geometry.origin[2], 94.30175781, 1e-5);
  EXPECT_EQ(info.geometry.direction, (std::array<double, 9>{1, 0, 0, 0, 1, 0, 0, 0, 1}));
  EXPECT_EQ(info.metadata.at("nifti.affine_source"), "sform");
  const Image img = reader->read();
  int16_t lo = 32767, hi = -32768;
  for (int64_t i = 0; i < img.element_count(); ++i) {
    lo = std::min(lo, img.data_as<int16_t>()[i]);
    hi = std::max(hi, img.data_as<int16_t>()[i]);
  }
  EXPECT_LE(lo, -900);  // air in Hounsfield units
  EXPECT_GE(hi, 300);   // bone
  const Image labels = read_image(seg);
  ASSERT_EQ(labels.dtype(), DType::U8);
  std::set<int> classes;
  for (int64_t i = 0; i < labels.element_count(); ++i) classes.insert(labels.data_as<uint8_t>()[i]);
  EXPECT_EQ(classes.size(), 42u);  // background + 41 organ classes (examples/data/README.md)
  EXPECT_TRUE(classes.count(1) && classes.count(5) && classes.count(52));
}

TEST(Io_Nifti, invalid_headers_are_file_errors) {
  TempDir dir;
  const Image img = random_image(DType::U8, Shape{1, 2, 3, 4}, 1);
  write_image(dir / "ok.nii", img);
  const auto good = test::read_bytes(dir / "ok.nii");
  auto expect_file_error = [&](const char* what, auto patch, const char* message) {
    auto bytes = good;
    patch(bytes);
    test::write_bytes(dir / "bad.nii", bytes, bytes.size());
    try {
      read_image(dir / "bad.nii");
      ADD_FAILURE() << what << ": no error";
    } catch (const FileError& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << what << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find("bad.nii"), std::string::npos);
    }
  };
  auto put16 = [](std::vector<uint8_t>& b, size_t at, int16_t v) { std::memcpy(&b[at], &v, 2); };
  auto put32 = [](std::vector<uint8_t>& b, size_t at, int32_t v) { std::memcpy(&b[at], &v, 4); };
  expect_file_error(
      "nifti-2", [&](auto& b) { put32(b, 0, 540); }, "NIfTI-2");
  expect_file_error(
      "garbage size", [&](auto& b) { put32(b, 0, 1234); }, "not a NIfTI-1");
  expect_file_error(
      "no magic", [&](auto& b) { std::memcpy(&b[344], "abc", 4); }, "magic");
  expect_file_error(
      "pair", [&](auto& b) { std::memcpy(&b[344], "ni1", 4); }, "pair");
  expect_file_error(
      "dim0", [&](auto& b) { put16(b, 40, 9); }, "dim[0]");
  expect_file_error(
      "negative dim", [&](auto& b) { put16(b, 44, -3); }, "size -3");
  expect_file_error(
      "complex", [&](auto& b) { put16(b, 70, DT_COMPLEX64); }, "not supported");
  expect_file_error(
      "bitpix", [&](auto& b) { put16(b, 72, 16); }, "bitpix");
  expect_file_error(
      "huge",
      [&](auto& b) {
        put16(b, 42, 32767);
        put16(b, 44, 32767);
        put16(b, 46, 32767);
      },
      "declares");
  expect_file_error(
      "5d",
      [&](auto& b) {
        put16(b, 40, 5);
        put16(b, 50, 2);
      },
      "dimensions 5-7");
}

}  // namespace
}  // namespace umamba::io
