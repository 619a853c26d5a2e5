// Connected components: the run-based labeller (serial, parallel, band merger) against the naive
// flood fill of reference.h, on random inputs of many densities, every connectivity, 2D and 3D,
// odd sizes, several dtypes; planted objects with known answers.
#include <gtest/gtest.h>

#include <numeric>
#include <random>

#include "core/error.h"
#include "postprocess/band_merger.h"
#include "postprocess/ccl.h"
#include "postprocess/opencv_peer.h"
#include "postprocess/reference.h"

namespace umamba::postprocess {
namespace {

using test::blob_image;
using test::flood_fill_label;
using test::random_image;

const std::vector<Extents> kSizes2d = {{1, 1, 1},     {1, 1, 70},   {1, 70, 1},
                                       {1, 2, 2},     {1, 33, 65},  {1, 64, 64},
                                       {1, 100, 129}, {1, 37, 200}, {1, 5, 1000}};
const std::vector<Extents> kSizes3d = {{2, 1, 1},    {3, 3, 3},    {5, 7, 9},
                                       {9, 31, 130}, {17, 33, 65}, {4, 1, 77}};
const std::vector<double> kDensities = {0.0, 0.02, 0.1, 0.3, 0.45, 0.5, 0.55, 0.7, 0.9, 1.0};

template <typename T>
void expect_matches_reference(const std::vector<T>& in, const Extents& e, int conn, bool multi,
                              const std::string& what, int threads = 1, int64_t band_rows = 0) {
  uint32_t expected_count = 0;
  const auto expected = flood_fill_label(in, e, conn, multi, &expected_count);
  std::vector<uint32_t> got(in.size(), 0xDEADBEEF);
  CclOptions options;
  options.connectivity = connectivity_from_int(conn, e.is_3d());
  options.multi_label = multi;
  options.threads = threads;
  options.band_rows = band_rows;
  const uint32_t count = label_components(in.data(), e, got.data(), options);
  ASSERT_EQ(count, expected_count) << what;
  ASSERT_EQ(got, expected) << what;
}

std::string describe(const Extents& e, int conn, double density, const char* type) {
  return fmt::format("{}x{}x{} conn {} density {} {}", e.z, e.y, e.x, conn, density, type);
}

TEST(Postprocess_Ccl, random_matches_flood_fill_2d) {
  uint32_t seed = 1;
  for (const auto& e : kSizes2d)
    for (int conn : {4, 8})
      for (double d : kDensities) {
        const auto in = random_image<uint8_t>(e, d, seed++);
        expect_matches_reference(in, e, conn, false, describe(e, conn, d, "u8"));
      }
}

TEST(Postprocess_Ccl, random_matches_flood_fill_3d) {
  uint32_t seed = 100;
  for (const auto& e : kSizes3d)
    for (int conn : {6, 18, 26})
      for (double d : kDensities) {
        const auto in = random_image<uint8_t>(e, d, seed++);
        expect_matches_reference(in, e, conn, false, describe(e, conn, d, "u8"));
      }
}

TEST(Postprocess_Ccl, blobs_match_flood_fill) {
  uint32_t seed = 200;
  for (double level : {0.3, 0.5, 0.7}) {
    for (int conn : {4, 8}) {
      const Extents e{1, 257, 301};
      expect_matches_reference(blob_image<uint8_t>(e, 3, level, seed++), e, conn, false,
                               describe(e, conn, level, "blob u8"));
    }
    for (int conn : {6, 18, 26}) {
      const Extents e{23, 41, 67};
      expect_matches_reference(blob_image<uint8_t>(e, 2, level, seed++), e, conn, false,
                               describe(e, conn, level, "blob u8"));
    }
  }
}

// Every dtype: u16 takes the other SIMD path, wider types the scalar one; values above 255 and
// negative values are foreground.
TEST(Postprocess_Ccl, dtypes_match_flood_fill) {
  const Extents e2{1, 45, 131};
  const Extents e3{7, 19, 70};
  uint32_t seed = 300;
  for (double d : {0.1, 0.5, 0.9}) {
    auto make = [&](const Extents& e, auto tag) {
      using T = decltype(tag);
      auto in = random_image<T>(e, d, seed++);
      for (size_t i = 0; i < in.size(); ++i)
        if (in[i] != 0) in[i] = static_cast<T>(i % 3 == 0 ? T(-1) : T(257 % 128 + 1));
      return in;
    };
    expect_matches_reference(make(e2, uint16_t{}), e2, 8, false, describe(e2, 8, d, "u16"));
    expect_matches_reference(make(e2, int16_t{}), e2, 4, false, describe(e2, 4, d, "i16"));
    expect_matches_reference(make(e2, int32_t{}), e2, 8, false, describe(e2, 8, d, "i32"));
    expect_matches_reference(make(e3, uint32_t{}), e3, 26, false, describe(e3, 26, d, "u32"));
    expect_matches_reference(make(e3, int64_t{}), e3, 6, false, describe(e3, 6, d, "i64"));
    expect_matches_reference(make(e3, uint64_t{}), e3, 18, false, describe(e3, 18, d, "u64"));
    expect_matches_reference(make(e2, int8_t{}), e2, 8, false, describe(e2, 8, d, "i8"));
  }
}

TEST(Postprocess_Ccl, multi_label_matches_flood_fill) {
  uint32_t seed = 400;
  for (int labels : {2, 3, 7}) {
    for (double d : {0.3, 0.6, 0.95}) {
      for (int conn : {4, 8}) {
        const Extents e{1, 61, 133};
        expect_matches_reference(random_image<uint16_t>(e, d, seed++, labels), e, conn, true,
                                 describe(e, conn, d, "multi noise"));
      }
      for (int conn : {6, 18, 26}) {
        const Extents e{9, 21, 37};
        expect_matches_reference(random_image<int32_t>(e, d, seed++, labels), e, conn, true,
                                 describe(e, conn, d, "multi noise"));
      }
    }
    for (int conn : {4, 8}) {
      const Extents e{1, 150, 170};
      expect_matches_reference(blob_image<uint8_t>(e, 4, 0.4, seed++, labels), e, conn, true,
                               describe(e, conn, 0.4, "multi blob"));
    }
    for (int conn : {6, 18, 26}) {
      const Extents e{15, 40, 50};
      expect_matches_reference(blob_image<uint8_t>(e, 2, 0.4, seed++, labels), e, conn, true,
                               describe(e, conn, 0.4, "multi blob"));
    }
  }
}

TEST(Postprocess_Ccl, parallel_equals_serial) {
  uint32_t seed = 500;
  const Extents e2{1, 203, 331};
  const Extents e3{13, 29, 71};
  for (int threads : {2, 3, 4}) {
    for (int64_t band_rows : {int64_t{0}, int64_t{1}, int64_t{2}, int64_t{7}, int64_t{29},
                              int64_t{64}, int64_t{1000}}) {
      for (int conn : {4, 8}) {
        const std::string what = fmt::format("threads {} band_rows {}", threads, band_rows);
        expect_matches_reference(blob_image<uint8_t>(e2, 3, 0.5, seed++), e2, conn, false,
                                 what + " blob " + describe(e2, conn, 0.5, "u8"), threads,
                                 band_rows);
        expect_matches_reference(random_image<uint8_t>(e2, 0.5, seed++), e2, conn, false,
                                 what + " noise " + describe(e2, conn, 0.5, "u8"), threads,
                                 band_rows);
        expect_matches_reference(blob_image<uint16_t>(e2, 3, 0.3, seed++, 3), e2, conn, true,
                                 what + " multi " + describe(e2, conn, 0.3, "u16"), threads,
                                 band_rows);
      }
      for (int conn : {6, 18, 26}) {
        const std::string what = fmt::format("threads {} band_rows {}", threads, band_rows);
        expect_matches_reference(blob_image<uint8_t>(e3, 2, 0.5, seed++), e3, conn, false,
                                 what + " blob " + describe(e3, conn, 0.5, "u8"), threads,
                                 band_rows);
        expect_matches_reference(random_image<uint8_t>(e3, 0.4, seed++), e3, conn, false,
                                 what + " noise " + describe(e3, conn, 0.4, "u8"), threads,
                                 band_rows);
        expect_matches_reference(random_image<int32_t>(e3, 0.7, seed++, 2), e3, conn, true,
                                 what + " multi " + describe(e3, conn, 0.7, "i32"), threads,
                                 band_rows);
      }
    }
  }
}

TEST(Postprocess_Ccl, threads_zero_uses_tbb_default) {
  const Extents e{1, 300, 300};
  expect_matches_reference(blob_image<uint8_t>(e, 3, 0.5, 42), e, 8, false, "threads 0", 0);
}

// Shapes whose answer is known without a reference.
TEST(Postprocess_Ccl, planted_objects) {
  auto count_of = [](const std::vector<uint8_t>& in, const Extents& e, int conn) {
    std::vector<uint32_t> out(in.size());
    CclOptions o;
    o.connectivity = connectivity_from_int(conn, e.is_3d());
    return label_components(in.data(), e, out.data(), o);
  };
  // Checkerboard: one component with diagonals, one per pixel without.
  {
    const Extents e{1, 31, 67};
    std::vector<uint8_t> in(e.pixels());
    int64_t fg = 0;
    for (int64_t y = 0; y < e.y; ++y)
      for (int64_t x = 0; x < e.x; ++x) fg += in[y * e.x + x] = (x + y) % 2 == 0;
    EXPECT_EQ(count_of(in, e, 8), 1u);
    EXPECT_EQ(count_of(in, e, 4), static_cast<uint32_t>(fg));
  }
  // A U shape: the two arms meet only in the last row; the first pixel's component gets 1.
  {
    const Extents e{1, 20, 30};
    std::vector<uint8_t> in(e.pixels(), 0);
    for (int64_t y = 0; y < 20; ++y) in[y * 30 + 2] = in[y * 30 + 27] = 1;
    for (int64_t x = 2; x <= 27; ++x) in[19 * 30 + x] = 1;
    in[5 * 30 + 15] = 1;  // an isolated dot between the arms, found after the left arm starts
    std::vector<uint32_t> out(in.size());
    CclOptions o;
    EXPECT_EQ(label_components(in.data(), e, out.data(), o), 2u);
    EXPECT_EQ(out[2], 1u);
    EXPECT_EQ(out[27], 1u);
    EXPECT_EQ(out[5 * 30 + 15], 2u);
  }
  // 3D diagonals: a space diagonal needs 26, a face diagonal 18.
  {
    const Extents e{10, 10, 10};
    std::vector<uint8_t> space(e.pixels(), 0), face(e.pixels(), 0);
    for (int64_t i = 0; i < 10; ++i) {
      space[(i * 10 + i) * 10 + i] = 1;
      face[(i * 10 + i) * 10 + 4] = 1;
    }
    EXPECT_EQ(count_of(space, e, 26), 1u);
    EXPECT_EQ(count_of(space, e, 18), 10u);
    EXPECT_EQ(count_of(space, e, 6), 10u);
    EXPECT_EQ(count_of(face, e, 26), 1u);
    EXPECT_EQ(count_of(face, e, 18), 1u);
    EXPECT_EQ(count_of(face, e, 6), 10u);
  }
  // Discs on a grid: count and per-label areas.
  {
    const Extents e{1, 200, 200};
    std::vector<uint8_t> in(e.pixels(), 0);
    for (int cy = 20; cy < 200; cy += 40)
      for (int cx = 20; cx < 200; cx += 40)
        for (int y = -8; y <= 8; ++y)
          for (int x = -8; x <= 8; ++x)
            if (x * x + y * y <= 64) in[(cy + y) * 200 + cx + x] = 255;
    std::vector<uint32_t> out(in.size());
    CclOptions o;
    o.connectivity = Connectivity::C4;
    ASSERT_EQ(label_components(in.data(), e, out.data(), o), 25u);
    std::vector<int> area(26, 0);
    for (uint32_t l : out) ++area[l];
    for (int l = 2; l <= 25; ++l) EXPECT_EQ(area[l], area[1]);
  }
}

TEST(Postprocess_Ccl, image_wrapper) {
  const Extents e{3, 40, 50};
  const auto data = blob_image<uint16_t>(e, 2, 0.5, 77);
  Image img = Image::zeros(DType::U16, Shape{1, e.z, e.y, e.x});
  std::copy(data.begin(), data.end(), img.data_as<uint16_t>());
  img.geometry().spacing = {2.0, 0.5, 0.5};
  uint32_t count = 0;
  CclOptions o;
  o.connectivity = Connectivity::C26;
  const Image labels = label_components(img, o, &count);
  EXPECT_EQ(labels.dtype(), DType::U32);
  EXPECT_EQ(labels.shape(), (Shape{1, e.z, e.y, e.x}));
  EXPECT_EQ(labels.geometry().spacing, img.geometry().spacing);
  uint32_t expected_count = 0;
  const auto expected = flood_fill_label(data, e, 26, false, &expected_count);
  EXPECT_EQ(count, expected_count);
  EXPECT_TRUE(std::equal(expected.begin(), expected.end(), labels.data_as<uint32_t>()));

  // A strided view (a region) is labelled as its own image.
  const Image view = img.region(Box{1, 5, 7, 2, 20, 30});
  const Image view_labels = label_components(view, o);
  const Image copy_labels = label_components(view.clone(), o);
  EXPECT_TRUE(view_labels.same_pixels(copy_labels));

  EXPECT_THROW(label_components(Image::zeros(DType::F32, Shape{1, 1, 4, 4}), o), Error);
  EXPECT_THROW(label_components(Image::zeros(DType::U8, Shape{3, 1, 4, 4}), o), Error);
  EXPECT_THROW(label_components(Image(), o), Error);
  o.connectivity = Connectivity::C8;  // 2D connectivity on a volume
  EXPECT_THROW(label_components(img, o), Error);
}

TEST(Postprocess_Ccl, connectivity_values) {
  EXPECT_EQ(connectivity_from_int(0, false), Connectivity::C8);
  EXPECT_EQ(connectivity_from_int(0, true), Connectivity::C26);
  EXPECT_EQ(connectivity_from_int(6, false), Connectivity::C4);
  EXPECT_EQ(connectivity_from_int(26, false), Connectivity::C8);
  EXPECT_EQ(connectivity_from_int(18, true), Connectivity::C18);
  EXPECT_THROW(connectivity_from_int(8, true), Error);
  EXPECT_THROW(connectivity_from_int(5, false), Error);
  try {
    connectivity_from_int(12, true);
    FAIL() << "no exception";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("12"), std::string::npos);
  }
}

// Band-wise labelling joined by BandMerger equals labelling the whole image.
template <typename T>
void expect_bands_equal_whole(const std::vector<T>& in, const Extents& e, int conn, bool multi,
                              uint32_t seed) {
  CclOptions o;
  o.connectivity = connectivity_from_int(conn, e.is_3d());
  o.multi_label = multi;
  std::vector<uint32_t> whole(in.size());
  const uint32_t n = label_components(in.data(), e, whole.data(), o);

  const int64_t planes = e.is_3d() ? e.z : e.y;
  const int64_t plane_pixels = e.is_3d() ? e.y * e.x : e.x;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> height(1, std::max<int64_t>(1, planes / 3));
  BandMerger merger(e, o.connectivity);
  std::vector<uint32_t> banded(in.size());
  std::vector<std::pair<int64_t, int64_t>> bands;  // first plane, planes
  for (int64_t p = 0; p < planes;) {
    const int64_t h = std::min(planes - p, height(rng));
    const Extents be = e.is_3d() ? Extents{h, e.y, e.x} : Extents{1, h, e.x};
    const T* src = in.data() + p * plane_pixels;
    uint32_t* dst = banded.data() + p * plane_pixels;
    const uint32_t count = label_components(src, be, dst, o);
    if (multi) {
      merger.add_band(dst, h, count, src);
    } else {
      merger.add_band(dst, h, count);
    }
    bands.emplace_back(p, h);
    p += h;
  }
  ASSERT_EQ(merger.finish(), n);
  ASSERT_EQ(merger.band_count(), bands.size());
  for (size_t b = 0; b < bands.size(); ++b)
    merger.relabel(b, banded.data() + bands[b].first * plane_pixels,
                   bands[b].second * plane_pixels);
  ASSERT_EQ(banded, whole) << fmt::format("{}x{}x{} conn {} multi {} bands {}", e.z, e.y, e.x, conn,
                                          multi, bands.size());
}

TEST(Postprocess_BandMerger, bands_equal_whole_image) {
  uint32_t seed = 600;
  for (int round = 0; round < 4; ++round) {
    for (int conn : {4, 8}) {
      const Extents e{1, 157, 203};
      expect_bands_equal_whole(blob_image<uint8_t>(e, 3, 0.5, seed), e, conn, false, seed);
      ++seed;
      expect_bands_equal_whole(random_image<uint8_t>(e, 0.5, seed), e, conn, false, seed);
      ++seed;
      expect_bands_equal_whole(blob_image<uint16_t>(e, 3, 0.3, seed, 4), e, conn, true, seed);
      ++seed;
    }
    for (int conn : {6, 18, 26}) {
      const Extents e{31, 23, 41};
      expect_bands_equal_whole(blob_image<uint8_t>(e, 2, 0.5, seed), e, conn, false, seed);
      ++seed;
      expect_bands_equal_whole(random_image<uint8_t>(e, 0.45, seed), e, conn, false, seed);
      ++seed;
      expect_bands_equal_whole(random_image<int32_t>(e, 0.7, seed, 3), e, conn, true, seed);
      ++seed;
    }
  }
}

TEST(Postprocess_BandMerger, misuse_is_an_error) {
  const Extents e{1, 10, 10};
  std::vector<uint32_t> band(50, 0);
  BandMerger m(e, Connectivity::C8);
  m.add_band(band.data(), 5, 0);
  EXPECT_THROW(m.finish(), Error);                     // only half the image
  EXPECT_THROW(m.add_band(band.data(), 6, 0), Error);  // past the end
  band[3] = 2;
  EXPECT_THROW(m.add_band(band.data(), 5, 1), Error);  // label above count
  band[3] = 0;
  m.add_band(band.data(), 5, 0);
  EXPECT_EQ(m.finish(), 0u);
  EXPECT_THROW(m.add_band(band.data(), 1, 0), Error);
  EXPECT_THROW(m.final_label(0, 1), Error);
}

}  // namespace
}  // namespace umamba::postprocess

namespace umamba::postprocess {
namespace {

// An independent implementation: OpenCV's connectedComponents (2D, binary) gives the same
// partition (its block-based scans number components in another order, so the labels are
// compared through a one-to-one map).
TEST(Postprocess_Ccl, matches_opencv) {
  if (!opencv_peer::available()) GTEST_SKIP() << "built without OpenCV";
  opencv_peer::set_threads(1);
  uint32_t seed = 700;
  for (const Extents& e : {Extents{1, 1, 1}, Extents{1, 77, 131}, Extents{1, 300, 517}}) {
    for (int conn : {4, 8}) {
      for (double d : {0.1, 0.5, 0.9}) {
        const auto noise = random_image<uint8_t>(e, d, seed++);
        const auto blobs = blob_image<uint8_t>(e, 3, d, seed++);
        for (const auto* in : {&noise, &blobs}) {
          std::vector<int32_t> cv_labels(in->size());
          const uint32_t n_cv = opencv_peer::label(in->data(), e.y, e.x, conn, cv_labels.data());
          std::vector<uint32_t> ours(in->size());
          CclOptions o;
          o.connectivity = connectivity_from_int(conn, false);
          ASSERT_EQ(label_components(in->data(), e, ours.data(), o), n_cv);
          std::vector<int64_t> to_cv(n_cv + 1, -1), to_ours(n_cv + 1, -1);
          for (size_t i = 0; i < ours.size(); ++i) {
            const uint32_t a = ours[i], b = static_cast<uint32_t>(cv_labels[i]);
            ASSERT_LE(b, n_cv);
            if (to_cv[a] < 0) to_cv[a] = b;
            if (to_ours[b] < 0) to_ours[b] = a;
            ASSERT_EQ(to_cv[a], b) << fmt::format("{}x{} conn {} pixel {}", e.y, e.x, conn, i);
            ASSERT_EQ(to_ours[b], a) << fmt::format("{}x{} conn {} pixel {}", e.y, e.x, conn, i);
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace umamba::postprocess
