// A 20,000 × 20,000 uint8 TIFF (400 MB of pixels) written band by band and read back by regions,
// with the process's peak resident memory measured (VmHWM) and held far below the image's size.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>

#include "core/memory.h"
#include "io/image_io.h"
#include "io_test_util.h"

namespace umamba::io {
namespace {

constexpr int64_t kSide = 20000;
constexpr size_t kImageBytes = size_t(kSide) * kSide;  // 400 MB
constexpr size_t kMemoryBound = 100u << 20;            // a quarter of the image

// Texture with structure at several scales (so deflate has work, and tiles differ).
inline uint8_t pixel(int64_t y, int64_t x) {
  return static_cast<uint8_t>(((x >> 3) ^ (y >> 3)) + ((x * y) >> 11) + (x % 7) * 3);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

TEST(Io_TiffLarge, band_writer_and_region_reads_stay_far_below_image_size) {
  test::TempDir dir;
  const auto path = dir / "large.tif";
  ASSERT_TRUE(reset_peak_resident()) << "VmHWM cannot be reset on this system";
  const size_t baseline = current_resident_bytes();

  // Write: bands of 1000 rows (not a multiple of the 512-row tiles) into tiled deflate.
  auto t0 = std::chrono::steady_clock::now();
  {
    TiffBandWriter writer(path, Shape{1, 1, kSide, kSide}, DType::U8);
    Image band = Image::zeros(DType::U8, Shape{1, 1, 1000, kSide});
    for (int64_t y0 = 0; y0 < kSide; y0 += 1000) {
      uint8_t* p = band.data_as<uint8_t>();
      for (int64_t y = 0; y < 1000; ++y)
        for (int64_t x = 0; x < kSide; ++x) p[y * kSide + x] = pixel(y0 + y, x);
      writer.write_band(band);
    }
    writer.finish();
  }
  const double write_s = seconds_since(t0);
  const size_t write_peak = peak_resident_bytes();
  EXPECT_LT(write_peak - baseline, kMemoryBound) << "writing peak " << write_peak;

  // Read: 2048 × 2048 regions over the whole image, every pixel checked.
  ASSERT_TRUE(reset_peak_resident());
  t0 = std::chrono::steady_clock::now();
  auto reader = open_image(path);
  EXPECT_EQ(reader->info().shape, (Shape{1, 1, kSide, kSide}));
  EXPECT_EQ(reader->info().metadata.at("tiff.layout"), "tiles 512x512");
  int64_t wrong = 0;
  for (int64_t y0 = 0; y0 < kSide; y0 += 2048) {
    for (int64_t x0 = 0; x0 < kSide; x0 += 2048) {
      const Box box{
          0, y0, x0, 1, std::min<int64_t>(2048, kSide - y0), std::min<int64_t>(2048, kSide - x0)};
      const Image r = reader->read_region(box);
      const uint8_t* p = r.data_as<uint8_t>();
      for (int64_t y = 0; y < box.dy; ++y)
        for (int64_t x = 0; x < box.dx; ++x) wrong += p[y * box.dx + x] != pixel(y0 + y, x0 + x);
    }
  }
  const double read_s = seconds_since(t0);
  const size_t read_peak = peak_resident_bytes();
  EXPECT_EQ(wrong, 0);
  EXPECT_LT(read_peak - baseline, kMemoryBound) << "reading peak " << read_peak;
  const double file_mb = std::filesystem::file_size(path) / 1e6;
  std::printf(
      "20000x20000 u8 (%.0f MB raw, %.1f MB deflate file): write %.2f s, peak +%.1f MB; "
      "read by 2048^2 regions %.2f s, peak +%.1f MB (baseline %.1f MB)\n",
      kImageBytes / 1e6, file_mb, write_s, (write_peak - baseline) / 1e6, read_s,
      (read_peak - baseline) / 1e6, baseline / 1e6);
}

}  // namespace
}  // namespace umamba::io
