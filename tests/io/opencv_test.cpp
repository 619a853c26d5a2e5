// PNG/JPEG/BMP through OpenCV (or the clear refusal of a build without it).
#include <gtest/gtest.h>

#include "core/error.h"
#include "io/image_io.h"
#include "io_test_util.h"

namespace umamba::io {
namespace {

using test::random_image;
using test::TempDir;

#ifdef UMAMBA_TEST_OPENCV

TEST(Io_OpenCV, png_roundtrip_grey_rgb_rgba_8_and_16_bit) {
  TempDir dir;
  for (DType dtype : {DType::U8, DType::U16}) {
    for (int64_t channels : {1, 3, 4}) {
      const Image img = random_image(dtype, Shape{channels, 1, 33, 47}, 3);
      write_image(dir / "a.png", img);
      auto reader = open_image(dir / "a.png");
      EXPECT_EQ(reader->info().format, "png");
      EXPECT_EQ(reader->info().shape, img.shape());
      EXPECT_EQ(reader->info().dtype, dtype);
      ASSERT_TRUE(reader->read().same_pixels(img)) << dtype_name(dtype) << " C=" << channels;
      const Box b{0, 5, 7, 1, 20, 30};
      EXPECT_TRUE(reader->read_region(b).same_pixels(img.region(b).clone()));
    }
  }
}

// A 2×1 BMP written byte by byte (BMP stores blue, green, red): our channel 0 must be red.
TEST(Io_OpenCV, bmp_channels_are_rgb) {
  TempDir dir;
  std::vector<uint8_t> bmp = {'B', 'M', 62, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0,  // file header
                              40, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 24, 0, 0, 0, 0, 0, 8, 0, 0,
                              0, 0x13, 0x0B, 0, 0, 0x13, 0x0B, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                              // pixel (0,0) red, pixel (1,0) blue, 2 bytes row padding
                              0, 0, 255, 255, 0, 0, 0, 0};
  test::write_bytes(dir / "rb.bmp", bmp, bmp.size());
  const Image img = read_image(dir / "rb.bmp");
  ASSERT_EQ(img.shape(), (Shape{3, 1, 1, 2}));
  EXPECT_EQ(img.at<uint8_t>(0, 0, 0, 0), 255);  // R of the red pixel
  EXPECT_EQ(img.at<uint8_t>(2, 0, 0, 0), 0);
  EXPECT_EQ(img.at<uint8_t>(0, 0, 0, 1), 0);
  EXPECT_EQ(img.at<uint8_t>(2, 0, 0, 1), 255);  // B of the blue pixel
  // And our BMP writer puts them back in the same bytes.
  write_image(dir / "out.bmp", img);
  EXPECT_TRUE(read_image(dir / "out.bmp").same_pixels(img));
}

TEST(Io_OpenCV, jpeg_is_close) {
  TempDir dir;
  Image img = Image::zeros(DType::U8, Shape{3, 1, 32, 48});
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < 32; ++y)
      for (int64_t x = 0; x < 48; ++x) img.at<uint8_t>(c, 0, y, x) = uint8_t(40 * c + 2 * x + y);
  write_image(dir / "a.jpg", img);
  const Image back = read_image(dir / "a.jpg");
  ASSERT_EQ(back.shape(), img.shape());
  int worst = 0;
  for (int64_t i = 0; i < img.element_count(); ++i) {
    worst = std::max(worst, std::abs(int(back.data_as<uint8_t>()[i]) - img.data_as<uint8_t>()[i]));
  }
  EXPECT_LE(worst, 8);
}

TEST(Io_OpenCV, labels_and_limits) {
  TempDir dir;
  Image labels = Image::zeros(DType::I32, Shape{1, 1, 4, 4});
  labels.at<int32_t>(0, 0, 1, 1) = 1000;
  write_labels(dir / "l.png", labels);
  const Image back = read_image(dir / "l.png");
  EXPECT_EQ(back.dtype(), DType::U16);
  EXPECT_EQ(back.at<uint16_t>(0, 0, 1, 1), 1000);
  labels.at<int32_t>(0, 0, 1, 1) = 70000;
  EXPECT_THROW(write_labels(dir / "l32.png", labels), Error);
  EXPECT_THROW(write_labels(dir / "l.jpg", Image::zeros(DType::U8, Shape{1, 1, 2, 2})), Error);
  EXPECT_THROW(write_image(dir / "f.png", Image::zeros(DType::F32, Shape{1, 1, 2, 2})), Error);
  EXPECT_THROW(write_image(dir / "z.png", Image::zeros(DType::U8, Shape{1, 2, 2, 2})), Error);
}

TEST(Io_OpenCV, corrupt_files_are_file_errors) {
  TempDir dir;
  write_image(dir / "a.png", random_image(DType::U8, Shape{3, 1, 64, 64}, 1));
  const auto bytes = test::read_bytes(dir / "a.png");
  for (size_t n :
       {size_t{0}, size_t{7}, size_t{20}, size_t{40}, bytes.size() / 2, bytes.size() - 13}) {
    test::write_bytes(dir / "t.png", bytes, n);
    EXPECT_THROW(read_image(dir / "t.png"), FileError) << "truncated at " << n;
  }
  // A PNG header claiming 100000 × 100000 pixels is refused before decoding.
  auto big = bytes;
  const uint8_t dims[8] = {0, 1, 0x86, 0xA0, 0, 1, 0x86, 0xA0};
  std::memcpy(big.data() + 16, dims, 8);
  test::write_bytes(dir / "big.png", big, big.size());
  EXPECT_THROW(read_image(dir / "big.png"), Error);
}

TEST(Io_OpenCV, real_neurips_png) {
  const auto png = test::shared_path("cells2d/neurips-cellseg/images/cell_00225.png");
  if (!std::filesystem::exists(png)) GTEST_SKIP() << png << " absent";
  const Image img = read_image(png);
  EXPECT_EQ(img.shape(), (Shape{3, 1, 1024, 1024}));
  EXPECT_EQ(img.dtype(), DType::U8);
}

#else

TEST(Io_OpenCV, build_without_opencv_says_so) {
  TempDir dir;
  test::write_bytes(dir / "a.png", {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}, 8);
  try {
    read_image(dir / "a.png");
    FAIL() << "expected Unsupported";
  } catch (const Unsupported& e) {
    EXPECT_NE(std::string(e.what()).find("lacks"), std::string::npos) << e.what();
  }
  EXPECT_THROW(write_image(dir / "b.png", Image::zeros(DType::U8, Shape{1, 1, 2, 2})), Unsupported);
  EXPECT_FALSE(is_supported_image("x.png"));
  EXPECT_TRUE(is_supported_image("x.TIF"));
}

#endif

}  // namespace
}  // namespace umamba::io
