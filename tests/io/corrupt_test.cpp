// Corrupt, truncated and absurd inputs give FileError (naming the file), never a crash, a hang or
// an unbounded allocation. Seeds are the real files and files we write in each layout.
#include <gtest/gtest.h>
#include <tiffio.h>

#include <random>

#include "core/error.h"
#include "core/memory.h"
#include "io/image_io.h"
#include "io_test_util.h"

namespace umamba::io {
namespace {

using test::TempDir;

// Reads `path` fully and by one region; returns "ok", "ok, same pixels" when `original` is given
// and equals the full read, or the kind of error. Anything that is not an umamba::Error fails the
// test.
std::string outcome(const std::filesystem::path& path, const Image* original = nullptr) {
  try {
    auto reader = open_image(path);
    const Image full = reader->read();

    const Shape s = reader->info().shape;
    reader->read_region(Box{s.z - 1, s.y / 2, s.x / 3, 1, (s.y + 1) / 2, (s.x + 2) / 3});
    if (original != nullptr) return full.same_pixels(*original) ? "ok, same pixels" : "ok";
    return "ok";
  } catch (const FileError& e) {
    EXPECT_NE(std::string(e.what()).find(path.filename().string()), std::string::npos)
        << "message does not name the file: " << e.what();
    return "FileError";
  } catch (const Unsupported& e) {
    return "Unsupported";
  } catch (const Error& e) {
    return std::string("Error: ") + e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << path << ": escaped " << typeid(e).name() << ": " << e.what();
    return "foreign";
  }
}

std::vector<std::filesystem::path> seeds(const TempDir& dir) {
  std::vector<std::filesystem::path> files = {
      test::source_path("examples/data/dsb2018/mask2d.tif"),
      test::source_path("examples/data/go-nuclear/1136_mini_label.tif"),
      test::source_path("examples/data/totalsegmentator/example_seg.nii.gz"),
  };
  // Our own layouts: tiled deflate, planar zstd strips, LZW stack, BigTIFF, plain .nii.
  Image img = test::random_image(DType::U16, Shape{3, 2, 70, 90}, 5);
  for (int i = 0; i < 70 * 90 * 6; ++i) img.data_as<uint16_t>()[i] &= 0x0F0F;  // compressible
  WriteOptions tiled;
  tiled.tile_size = 32;
  write_image(dir / "tiled.tif", img, tiled);
  WriteOptions planar;
  planar.planar = true;
  planar.compression = Compression::Zstd;
  write_image(dir / "planar.tif", img, planar);
  WriteOptions lzw;
  lzw.compression = Compression::Lzw;
  lzw.bigtiff = true;
  write_image(dir / "big-lzw.tif", img.channel(0), lzw);
  write_image(dir / "plain.nii", img.channel(1));
  for (const char* name : {"tiled.tif", "planar.tif", "big-lzw.tif", "plain.nii"}) {
    files.push_back(dir / name);
  }
  return files;
}

TEST(Io_Corrupt, truncated_files_are_file_errors) {
  TempDir dir;
  for (const auto& seed : seeds(dir)) {
    const auto bytes = test::read_bytes(seed);
    ASSERT_EQ(outcome(seed), "ok") << seed;
    const Image original = read_image(seed);
    const auto cut = dir / ("cut" + seed.extension().string());
    std::vector<size_t> offsets = {0, 1, 4, 8, 16, 100, 347, 348, 351};
    for (int i = 1; i < 40; ++i) offsets.push_back(bytes.size() * i / 40);
    offsets.push_back(bytes.size() - 1);
    for (size_t n : offsets) {
      if (n >= bytes.size()) continue;
      test::write_bytes(cut, bytes, n);
      // Either an error, or (when only a trailing directory terminator is lost, which libtiff
      // reads as "no next page") every pixel intact: never wrong pixels.
      const std::string result = outcome(cut, &original);
      EXPECT_TRUE(result == "FileError" || result == "ok, same pixels")
          << seed.filename() << " cut at " << n << " of " << bytes.size() << ": " << result;
    }
  }
}

TEST(Io_Corrupt, flipped_bytes_read_or_fail_cleanly) {
  TempDir dir;
  std::mt19937_64 rng(2024);
  std::map<std::string, int> counts;
  for (const auto& seed : seeds(dir)) {
    const auto bytes = test::read_bytes(seed);
    const auto bad = dir / ("bad" + seed.extension().string());
    for (int trial = 0; trial < 60; ++trial) {
      auto copy = bytes;
      // Mostly the header and directory region (where damage matters), sometimes anywhere.
      const size_t span = trial % 3 == 0 ? copy.size() : std::min<size_t>(copy.size(), 512);
      const int flips = 1 + trial % 4;
      for (int f = 0; f < flips; ++f) copy[rng() % span] ^= static_cast<uint8_t>(1 + rng() % 255);
      test::write_bytes(bad, copy, copy.size());
      const std::string result = outcome(bad);
      EXPECT_TRUE(result == "ok" || result == "FileError" || result == "Unsupported")
          << seed.filename() << " trial " << trial << ": " << result;
      ++counts[result];
    }
  }
  EXPECT_GT(counts["FileError"], 0);
  for (const auto& [k, v] : counts) std::cout << "  " << k << ": " << v << "\n";
}

// Fuzzer finding: a deflate strip with an invalid literal/length code, which libtiff 4.5's
// libdeflate path decodes "successfully" with part of the buffer left unwritten (so a region read
// after a full read differed from it). Now an error naming the file.
TEST(Io_Corrupt, regression_corrupt_deflate_strip_is_an_error) {
  const auto path = test::source_path("tests/fuzz/regressions/tiff-deflate-silent-short-strip.tif");
  try {
    read_image(path);
    FAIL() << "corrupt deflate data accepted";
  } catch (const FileError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot be decoded"), std::string::npos) << e.what();
  }
}

// A TIFF that declares 10^12 pixels in one deflate strip of 10 bytes: refused at open, with no
// allocation of the declared size.
TEST(Io_Corrupt, absurd_declared_size_is_refused) {
  TempDir dir;
  const auto path = dir / "absurd.tif";
  TIFF* tif = TIFFOpen(path.c_str(), "w8");
  ASSERT_NE(tif, nullptr);
  TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, 1000000u);
  TIFFSetField(tif, TIFFTAG_IMAGELENGTH, 1000000u);
  TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, uint16_t{8});
  TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, uint16_t{1});
  TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
  TIFFSetField(tif, TIFFTAG_COMPRESSION, COMPRESSION_ADOBE_DEFLATE);
  TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, 1000000u);
  uint8_t junk[10] = {0x78, 0x9c, 1, 2, 3, 4, 5, 6, 7, 8};
  ASSERT_EQ(TIFFWriteRawStrip(tif, 0, junk, 10), 10);
  TIFFClose(tif);
  const size_t peak_before = peak_resident_bytes();
  try {
    open_image(path);
    FAIL() << "absurd file accepted";
  } catch (const FileError& e) {
    EXPECT_NE(std::string(e.what()).find("declares"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("absurd.tif"), std::string::npos) << e.what();
  }
  EXPECT_LT(peak_resident_bytes(), peak_before + (size_t{64} << 20));
}

// A plausible header whose decoded size passes the allocation limit: Unsupported, not a crash.
TEST(Io_Corrupt, over_the_allocation_limit_is_unsupported) {
  TempDir dir;
  const Image img = Image::zeros(DType::U8, Shape{1, 1, 1024, 1024});
  write_image(dir / "zeros.tif", img);
  write_image(dir / "zeros.nii.gz", img);
  const size_t saved = allocation_limit();
  set_allocation_limit(1 << 19);
  EXPECT_THROW(read_image(dir / "zeros.tif"), Unsupported);
  EXPECT_THROW(read_image(dir / "zeros.nii.gz"), Unsupported);
  set_allocation_limit(saved);
  EXPECT_TRUE(read_image(dir / "zeros.tif").same_pixels(img));
}

}  // namespace
}  // namespace umamba::io
