// Measurements and outlines: planted objects with known values; every outline of random blobs
// encloses exactly its object's pixels plus its holes (shoelace area), in 8- and 4-connectivity.
// The skimage regionprops_table cross-check is tests/python/postprocess_crosscheck.py.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "core/error.h"
#include "postprocess/ccl.h"
#include "postprocess/measure.h"
#include "postprocess/outlines.h"
#include "postprocess/reference.h"
#include "postprocess/targets.h"

namespace umamba::postprocess {
namespace {

TEST(Postprocess_Measure, planted_rectangles_2d) {
  Image labels = Image::zeros(DType::U16, Shape{1, 1, 20, 30});
  labels.geometry().spacing = {1.0, 0.5, 0.25};
  Image intensity = Image::zeros(DType::F32, Shape{2, 1, 20, 30});
  for (int y = 2; y < 6; ++y)  // label 7: rows 2..5, cols 3..12 (4 x 10)
    for (int x = 3; x < 13; ++x) labels.at<uint16_t>(0, 0, y, x) = 7;
  labels.at<uint16_t>(0, 0, 15, 20) = 2;  // one pixel
  for (int y = 0; y < 20; ++y)
    for (int x = 0; x < 30; ++x) {
      intensity.at<float>(0, 0, y, x) = static_cast<float>(x);
      intensity.at<float>(1, 0, y, x) = static_cast<float>(100 - y);
    }
  const RegionTable t = region_properties(labels, intensity);
  ASSERT_EQ(t.rows.size(), 2u);
  auto get = [&](size_t row, const char* col) { return t.rows[row][t.column(col)]; };
  EXPECT_EQ(get(0, "label"), 2);
  EXPECT_EQ(get(1, "label"), 7);
  EXPECT_EQ(get(1, "area"), 40);
  EXPECT_DOUBLE_EQ(get(1, "area_physical"), 40 * 0.5 * 0.25);
  EXPECT_EQ(get(1, "bbox-0"), 2);
  EXPECT_EQ(get(1, "bbox-1"), 3);
  EXPECT_EQ(get(1, "bbox-2"), 6);
  EXPECT_EQ(get(1, "bbox-3"), 13);
  EXPECT_DOUBLE_EQ(get(1, "centroid-0"), 3.5);
  EXPECT_DOUBLE_EQ(get(1, "centroid-1"), 7.5);
  EXPECT_DOUBLE_EQ(get(1, "equivalent_diameter_area"), std::sqrt(4 * 40 / std::numbers::pi));
  EXPECT_DOUBLE_EQ(get(1, "intensity_mean-0"), 7.5);
  EXPECT_DOUBLE_EQ(get(1, "intensity_min-0"), 3);
  EXPECT_DOUBLE_EQ(get(1, "intensity_max-0"), 12);
  EXPECT_DOUBLE_EQ(get(1, "intensity_mean-1"), 96.5);
  EXPECT_DOUBLE_EQ(get(0, "intensity_mean-1"), 85);
  EXPECT_THROW(t.column("perimeter"), Error);
  const std::string csv = to_csv(t);
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "label,area,area_physical,bbox-0,bbox-1,bbox-2,bbox-3,centroid-0,centroid-1,"
            "equivalent_diameter_area,equivalent_diameter_physical,intensity_mean-0,"
            "intensity_mean-1,intensity_min-0,intensity_min-1,intensity_max-0,intensity_max-1");
  EXPECT_NE(csv.find("\n7,40,5,2,3,6,13,3.5,7.5,"), std::string::npos) << csv;
  // One intensity channel: names without the channel suffix.
  const RegionTable grey = region_properties(labels, intensity.channel(1));
  EXPECT_EQ(grey.rows[1][grey.column("intensity_max")], 98);
  // Mismatched sizes and float labels are errors.
  EXPECT_THROW(region_properties(labels, Image::zeros(DType::U8, Shape{1, 1, 20, 31})), Error);
  EXPECT_THROW(region_properties(Image::zeros(DType::F32, Shape{1, 1, 2, 2})), Error);
}

TEST(Postprocess_Measure, planted_box_3d) {
  Image labels = Image::zeros(DType::U32, Shape{1, 6, 7, 8});
  labels.geometry().spacing = {2.0, 0.5, 0.5};
  for (int z = 1; z < 4; ++z)
    for (int y = 2; y < 4; ++y)
      for (int x = 0; x < 5; ++x) labels.at<uint32_t>(0, z, y, x) = 1;
  const RegionTable t = region_properties(labels);
  ASSERT_EQ(t.rows.size(), 1u);
  EXPECT_EQ(t.rows[0][t.column("area")], 30);
  EXPECT_DOUBLE_EQ(t.rows[0][t.column("area_physical")], 30 * 0.5);
  EXPECT_EQ(t.rows[0][t.column("bbox-0")], 1);
  EXPECT_EQ(t.rows[0][t.column("bbox-5")], 5);
  EXPECT_DOUBLE_EQ(t.rows[0][t.column("centroid-0")], 2);
  EXPECT_DOUBLE_EQ(t.rows[0][t.column("centroid-2")], 2);
  EXPECT_DOUBLE_EQ(t.rows[0][t.column("equivalent_diameter_area")],
                   std::cbrt(6 * 30 / std::numbers::pi));
}

// Pixels of `mask` plus the background it encloses: everything the background flood fill from
// the image edge does not reach (background 4-connected around 8-connected objects and
// 8-connected around 4-connected ones).
int64_t enclosed_area(const std::vector<uint8_t>& mask, const test::Extents& e, int bg_conn) {
  std::vector<uint8_t> outside(mask.size(), 0);
  std::vector<int64_t> stack;
  for (int64_t y = 0; y < e.y; ++y)
    for (int64_t x = 0; x < e.x; ++x)
      if ((y == 0 || x == 0 || y == e.y - 1 || x == e.x - 1) && !mask[y * e.x + x]) {
        outside[y * e.x + x] = 1;
        stack.push_back(y * e.x + x);
      }
  const auto offsets = test::neighbourhood(bg_conn, false);
  while (!stack.empty()) {
    const int64_t p = stack.back();
    stack.pop_back();
    for (const auto& d : offsets) {
      const int64_t y = p / e.x + d[1], x = p % e.x + d[2];
      if (y < 0 || x < 0 || y >= e.y || x >= e.x) continue;
      const int64_t q = y * e.x + x;
      if (mask[q] || outside[q]) continue;
      outside[q] = 1;
      stack.push_back(q);
    }
  }
  int64_t n = 0;
  for (uint8_t v : outside) n += !v;
  return n;
}

void expect_outline_areas(bool eight) {
  const test::Extents e{1, 120, 150};
  const auto blobs = test::blob_image<uint8_t>(e, 3, 0.55, eight ? 3 : 4);
  std::vector<uint32_t> labels(e.pixels());
  CclOptions o;
  o.connectivity = eight ? Connectivity::C8 : Connectivity::C4;
  const uint32_t n = label_components(blobs.data(), e, labels.data(), o);
  ASSERT_GT(n, 20u);
  const auto outlines = trace_outlines(labels.data(), e.y, e.x, eight);
  ASSERT_EQ(outlines.size(), n);
  for (const Outline& outline : outlines) {
    std::vector<uint8_t> alone(labels.size(), 0);
    for (size_t i = 0; i < labels.size(); ++i) alone[i] = labels[i] == outline.label;
    ASSERT_EQ(outline.vertices.front(), outline.vertices.back());
    ASSERT_EQ(polygon_area(outline), static_cast<double>(enclosed_area(alone, e, eight ? 4 : 8)))
        << "label " << outline.label << (eight ? " 8-conn" : " 4-conn");
  }
}

TEST(Postprocess_Outlines, polygon_area_is_object_plus_holes) {
  expect_outline_areas(true);
  expect_outline_areas(false);
}

TEST(Postprocess_Outlines, shapes_and_geojson) {
  // A single pixel, an L, and two pixels touching at a corner (one object with 8-connectivity).
  const int64_t h = 6, w = 8;
  std::vector<uint32_t> l(h * w, 0);
  l[1 * w + 1] = 1;
  l[1 * w + 4] = l[2 * w + 4] = l[2 * w + 5] = 2;
  l[4 * w + 1] = l[5 * w + 2] = 3;
  const auto o = trace_outlines(l.data(), h, w, true);
  ASSERT_EQ(o.size(), 3u);
  EXPECT_EQ(o[0].vertices,
            (std::vector<std::array<int64_t, 2>>{{1, 1}, {2, 1}, {2, 2}, {1, 2}, {1, 1}}));
  EXPECT_EQ(polygon_area(o[1]), 3);
  EXPECT_EQ(o[1].vertices.size(), 7u);  // 6 corners + closure
  EXPECT_EQ(polygon_area(o[2]), 2);     // both pixels, through the shared corner
  const auto o4 = trace_outlines(l.data(), h, w, false);
  EXPECT_EQ(polygon_area(o4[2]), 1);  // 4-connected: only the first pixel's piece
  const std::string json = outlines_geojson(o);
  EXPECT_EQ(json.rfind("{\"type\":\"FeatureCollection\"", 0), 0u);
  EXPECT_NE(json.find("\"objectType\":\"detection\""), std::string::npos);
  EXPECT_NE(json.find("[[[1,1],[2,1],[2,2],[1,2],[1,1]]]"), std::string::npos) << json;
}

TEST(Postprocess_Outlines, overlay_marks_boundaries) {
  Image image = Image::zeros(DType::U16, Shape{1, 1, 10, 10});
  for (int y = 0; y < 10; ++y)
    for (int x = 0; x < 10; ++x) image.at<uint16_t>(0, 0, y, x) = static_cast<uint16_t>(x * 100);
  Image labels = Image::zeros(DType::U8, Shape{1, 1, 10, 10});
  for (int y = 2; y < 7; ++y)
    for (int x = 2; x < 7; ++x) labels.at<uint8_t>(0, 0, y, x) = 1;
  const Image rgb = overlay_outlines(image, labels);
  EXPECT_EQ(rgb.shape(), (Shape{3, 1, 10, 10}));
  // Inside the object (not on its edge) and outside: the grey image, equal in R, G and B.
  EXPECT_EQ(rgb.at<uint8_t>(0, 0, 4, 4), rgb.at<uint8_t>(1, 0, 4, 4));
  EXPECT_EQ(rgb.at<uint8_t>(0, 0, 0, 9), 255);
  EXPECT_EQ(rgb.at<uint8_t>(0, 0, 0, 0), 0);
  // On the edge: a saturated colour (channels differ).
  const bool coloured = rgb.at<uint8_t>(0, 0, 2, 4) != rgb.at<uint8_t>(1, 0, 2, 4) ||
                        rgb.at<uint8_t>(1, 0, 2, 4) != rgb.at<uint8_t>(2, 0, 2, 4);
  EXPECT_TRUE(coloured);
  EXPECT_THROW(overlay_outlines(image, Image::zeros(DType::U8, Shape{1, 1, 9, 10})), Error);
  EXPECT_THROW(trace_outlines(Image::zeros(DType::U8, Shape{1, 2, 9, 10})), Error);
}

}  // namespace
}  // namespace umamba::postprocess
