// Three-class targets and their inverse: the recipe against a brute-force reference, hole filling,
// relabelling, the reclaim mode on planted cells, and the round trip on synthetic cells of 8-12 px
// scored with the NeurIPS F1 rule (plain mode's figure beside it).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/error.h"
#include "metrics/instance_f1.h"
#include "postprocess/reference.h"
#include "postprocess/targets.h"
#include "synth/synth.h"

namespace umamba::postprocess {
namespace {

using test::flood_fill_label;

// The recipe written out directly: B0 by definition, the dilation as "within L1 distance
// width-1 of B0", the interior filter with the flood-fill labeller.
template <typename L>
std::vector<uint8_t> reference_classes(const std::vector<L>& labels, const Extents& e, int width,
                                       bool spill, int64_t min_interior) {
  const int64_t n = e.pixels();
  auto inside = [&](int64_t z, int64_t y, int64_t x) {
    return z >= 0 && z < e.z && y >= 0 && y < e.y && x >= 0 && x < e.x;
  };
  std::vector<uint8_t> b0(n, 0), b(n, 0), interior(n, 0), out(n, 0);
  const auto cross = test::neighbourhood(e.z > 1 ? 6 : 4, e.z > 1);
  for (int64_t p = 0; p < n; ++p) {
    const int64_t x = p % e.x, y = (p / e.x) % e.y, z = p / (e.x * e.y);
    if (labels[p] == 0) continue;
    for (const auto& d : cross)
      if (inside(z + d[0], y + d[1], x + d[2]) &&
          labels[((z + d[0]) * e.y + y + d[1]) * e.x + x + d[2]] != labels[p])
        b0[p] = 1;
  }
  const int r = width - 1;
  for (int64_t p = 0; p < n; ++p) {
    const int64_t x = p % e.x, y = (p / e.x) % e.y, z = p / (e.x * e.y);
    for (int dz = (e.z > 1 ? -r : 0); dz <= (e.z > 1 ? r : 0) && !b[p]; ++dz)
      for (int dy = -r; dy <= r && !b[p]; ++dy)
        for (int dx = -r; dx <= r; ++dx) {
          if (std::abs(dz) + std::abs(dy) + std::abs(dx) > r) continue;
          if (inside(z + dz, y + dy, x + dx) && b0[((z + dz) * e.y + y + dy) * e.x + x + dx]) {
            b[p] = 1;
            break;
          }
        }
    if (!spill && labels[p] == 0) b[p] = 0;
    interior[p] = labels[p] != 0 && !b[p];
  }
  const auto pieces = flood_fill_label(interior, e, e.z > 1 ? 6 : 4, false);
  std::map<uint32_t, int64_t> size;
  for (uint32_t l : pieces) ++size[l];
  for (int64_t p = 0; p < n; ++p)
    out[p] = b[p] ? 2 : (interior[p] && size[pieces[p]] >= min_interior ? 1 : 0);
  return out;
}

// Random instance images: blobs split into labelled regions (touching instances, background).
std::vector<uint16_t> random_instances(const Extents& e, uint32_t seed, int labels) {
  return test::blob_image<uint16_t>(e, e.z > 1 ? 2 : 3, 0.45, seed, labels);
}

TEST(Postprocess_Targets, classes_match_reference) {
  uint32_t seed = 1;
  for (int width : {1, 2, 3})
    for (bool spill : {true, false})
      for (int64_t min_interior : {int64_t{0}, int64_t{16}}) {
        for (const Extents& e : {Extents{1, 61, 77}, Extents{1, 1, 40}, Extents{9, 17, 23}}) {
          const auto labels = random_instances(e, seed++, 5);
          std::vector<uint8_t> got(labels.size());
          ClassTargetOptions o;
          o.boundary_width = width;
          o.spill = spill;
          o.min_interior_size = min_interior;
          instances_to_classes(labels.data(), e, got.data(), o);
          ASSERT_EQ(got, reference_classes(labels, e, width, spill, min_interior))
              << fmt::format("width {} spill {} min {} extents {}x{}x{}", width, spill,
                             min_interior, e.z, e.y, e.x);
        }
      }
}

// A 7x7 square alone: the recipe's band is its outer two rings plus one ring outside (the
// spill, 4-adjacent pixels only); the 3x3 centre is interior unless min_interior_size > 9.
TEST(Postprocess_Targets, planted_square) {
  const Extents e{1, 11, 11};
  std::vector<uint8_t> labels(e.pixels(), 0);
  for (int y = 2; y <= 8; ++y)
    for (int x = 2; x <= 8; ++x) labels[y * 11 + x] = 1;
  std::vector<uint8_t> classes(e.pixels());
  ClassTargetOptions o;
  o.min_interior_size = 0;
  instances_to_classes(labels.data(), e, classes.data(), o);
  auto at = [&](int y, int x) { return static_cast<int>(classes[y * 11 + x]); };
  EXPECT_EQ(at(5, 5), kInterior);
  EXPECT_EQ(at(4, 4), kInterior);
  EXPECT_EQ(at(3, 3), kBoundary);
  EXPECT_EQ(at(2, 2), kBoundary);
  EXPECT_EQ(at(1, 5), kBoundary);    // spill, 4-adjacent to the edge
  EXPECT_EQ(at(1, 1), kBackground);  // diagonal: not reached by the cross
  EXPECT_EQ(at(0, 5), kBackground);
  o.min_interior_size = 10;  // the 3x3 interior goes to background
  instances_to_classes(labels.data(), e, classes.data(), o);
  EXPECT_EQ(at(5, 5), kBackground);
  o.spill = false;
  instances_to_classes(labels.data(), e, classes.data(), o);
  EXPECT_EQ(at(1, 5), kBackground);
  EXPECT_EQ(at(2, 5), kBoundary);
}

TEST(Postprocess_Targets, image_edge_is_not_a_boundary) {
  const Extents e{1, 8, 8};
  std::vector<uint8_t> labels(e.pixels(), 3), classes(e.pixels());
  ClassTargetOptions o;
  o.min_interior_size = 0;
  instances_to_classes(labels.data(), e, classes.data(), o);
  for (uint8_t c : classes) EXPECT_EQ(c, kInterior);
}

TEST(Postprocess_Targets, relabel_and_remove_small) {
  std::vector<uint32_t> l = {0, 7, 7, 3, 0, 9, 3, 7, 12};
  EXPECT_EQ(relabel_sequential(l.data(), l.size()), 4u);
  EXPECT_EQ(l, (std::vector<uint32_t>{0, 1, 1, 2, 0, 3, 2, 1, 4}));
  remove_small(l.data(), l.size(), 2);
  EXPECT_EQ(l, (std::vector<uint32_t>{0, 1, 1, 2, 0, 0, 2, 1, 0}));
}

TEST(Postprocess_Targets, fill_holes) {
  const Extents e{1, 12, 12};
  std::vector<uint32_t> l(e.pixels(), 0);
  auto set = [&](int y, int x, uint32_t v) { l[y * 12 + x] = v; };
  // Ring of label 1 around (3,3) holding a 1-pixel hole; ring of label 2 whose hole also touches
  // label 3 (not filled); label 4 touching the image edge around a notch (not a hole).
  for (int y = 2; y <= 4; ++y)
    for (int x = 2; x <= 4; ++x) set(y, x, 1);
  set(3, 3, 0);
  for (int y = 6; y <= 10; ++y)
    for (int x = 6; x <= 10; ++x) set(y, x, 2);
  set(8, 8, 0);
  set(8, 9, 0);
  set(8, 10, 3);
  for (int x = 0; x <= 4; ++x) set(8, x, 4);
  set(9, 0, 4);
  set(9, 2, 4);
  set(9, 4, 4);
  auto filled = l;
  fill_holes(filled.data(), e, 0);
  EXPECT_EQ(filled[3 * 12 + 3], 1u);
  EXPECT_EQ(filled[8 * 12 + 8], 0u);
  EXPECT_EQ(filled[9 * 12 + 1], 0u);
  filled = l;
  fill_holes(filled.data(), e, 0);
  auto limited = l;
  fill_holes(limited.data(), e, 1);
  EXPECT_EQ(limited[3 * 12 + 3], 1u);
  // A 3D cavity is a hole only when closed in Z as well.
  const Extents v{5, 5, 5};
  std::vector<uint32_t> cube(v.pixels(), 1);
  cube[(2 * 5 + 2) * 5 + 2] = 0;
  fill_holes(cube.data(), v, 0);
  EXPECT_EQ(cube[(2 * 5 + 2) * 5 + 2], 1u);
}

TEST(Postprocess_Targets, class_map_from_probabilities_and_checks) {
  Image p = Image::zeros(DType::F32, Shape{3, 1, 1, 4});
  float* d = p.data_as<float>();
  // pixel: background, interior, boundary, tie (background = interior -> lower class)
  const float v[3][4] = {
      {0.8f, 0.1f, 0.1f, 0.4f}, {0.1f, 0.7f, 0.2f, 0.4f}, {0.1f, 0.2f, 0.7f, 0.2f}};
  for (int c = 0; c < 3; ++c)
    for (int x = 0; x < 4; ++x) d[c * 4 + x] = v[c][x];
  const Image c = class_map(p);
  EXPECT_EQ(c.data_as<uint8_t>()[0], 0);
  EXPECT_EQ(c.data_as<uint8_t>()[1], 1);
  EXPECT_EQ(c.data_as<uint8_t>()[2], 2);
  EXPECT_EQ(c.data_as<uint8_t>()[3], 0);
  Image bad = Image::zeros(DType::U8, Shape{1, 1, 2, 2});
  bad.data_as<uint8_t>()[3] = 5;
  try {
    class_map(bad);
    FAIL() << "no exception";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("value 5"), std::string::npos) << err.what();
  }
  EXPECT_THROW(class_map(Image::zeros(DType::F32, Shape{2, 1, 2, 2})), Error);
  EXPECT_THROW(instance_mode_from_name("watershed"), Error);
}

// Plain mode is the components of the interior class, nothing else.
TEST(Postprocess_Instances, plain_is_interior_components) {
  const Extents e{1, 90, 110};
  const auto classes = test::random_image<uint8_t>(e, 0.8, 5, 2);
  std::vector<uint8_t> interior(classes.size());
  for (size_t i = 0; i < classes.size(); ++i) interior[i] = classes[i] == 1;
  InstanceOptions o;
  o.mode = InstanceMode::Plain;
  std::vector<uint32_t> got(classes.size());
  uint32_t expected_n = 0;
  const auto expected = flood_fill_label(interior, e, 8, false, &expected_n);
  EXPECT_EQ(classes_to_instances(classes.data(), e, got.data(), o), expected_n);
  EXPECT_EQ(got, expected);
}

// Isolated discs (radius 3..12) and spheres survive the round trip exactly in reclaim mode: the
// interior seeds grow back over the band, the spill ring is trimmed. The smallest discs have no
// interior left after the recipe's 16-pixel filter and come back as boundary-only instances.
TEST(Postprocess_Instances, reclaim_restores_isolated_cells) {
  const Extents e{1, 200, 260};
  std::vector<uint16_t> gt(e.pixels(), 0);
  uint16_t label = 0;
  int cx = 15;
  for (int r = 2; r <= 12; ++r) {
    ++label;
    for (int y = -r; y <= r; ++y)
      for (int x = -r; x <= r; ++x)
        if (x * x + y * y <= r * r + r) gt[(100 + y) * e.x + cx + x] = label;
    cx += 2 * r + 6;
  }
  std::vector<uint8_t> classes(e.pixels());
  instances_to_classes(gt.data(), e, classes.data(), ClassTargetOptions{});
  std::vector<uint32_t> got(e.pixels());
  const uint32_t n = classes_to_instances(classes.data(), e, got.data(), InstanceOptions{});
  EXPECT_EQ(n, label);
  std::vector<uint32_t> expected(gt.begin(), gt.end());  // numbered in raster order, as results
  relabel_sequential(expected.data(), e.pixels());
  for (int64_t p = 0; p < e.pixels(); ++p) ASSERT_EQ(got[p], expected[p]) << "pixel " << p;

  // Plain mode loses every disc whose interior vanished and shrinks the rest.
  InstanceOptions plain;
  plain.mode = InstanceMode::Plain;
  const uint32_t n_plain = classes_to_instances(classes.data(), e, got.data(), plain);
  EXPECT_LT(n_plain, label);

  const Extents v{24, 24, 24};
  std::vector<uint16_t> ball(v.pixels(), 0);
  for (int64_t p = 0; p < v.pixels(); ++p) {
    const int64_t x = p % 24 - 12, y = (p / 24) % 24 - 12, z = p / 576 - 12;
    if (x * x + y * y + z * z <= 64) ball[p] = 1;
  }
  std::vector<uint8_t> vc(v.pixels());
  instances_to_classes(ball.data(), v, vc.data(), ClassTargetOptions{});
  std::vector<uint32_t> vg(v.pixels());
  EXPECT_EQ(classes_to_instances(vc.data(), v, vg.data(), InstanceOptions{}), 1u);
  for (int64_t p = 0; p < v.pixels(); ++p) ASSERT_EQ(vg[p], ball[p]) << "voxel " << p;
}

// Touching cells: the band between them is split, every cell keeps its identity.
TEST(Postprocess_Instances, reclaim_separates_touching_cells) {
  const Extents e{1, 40, 60};
  std::vector<uint16_t> gt(e.pixels(), 0);
  for (int y = 10; y < 30; ++y)
    for (int x = 5; x < 55; ++x) gt[y * e.x + x] = x < 22 ? 1 : (x < 38 ? 2 : 3);
  std::vector<uint8_t> classes(e.pixels());
  instances_to_classes(gt.data(), e, classes.data(), ClassTargetOptions{});
  std::vector<uint32_t> got(e.pixels());
  ASSERT_EQ(classes_to_instances(classes.data(), e, got.data(), InstanceOptions{}), 3u);
  Image gt_image = Image::zeros(DType::U16, Shape{1, 1, e.y, e.x});
  std::copy(gt.begin(), gt.end(), gt_image.data_as<uint16_t>());
  Image got_image = Image::zeros(DType::U32, Shape{1, 1, e.y, e.x});
  std::copy(got.begin(), got.end(), got_image.data_as<uint32_t>());
  EXPECT_EQ(metrics::instance_f1(gt_image, got_image).counts.tp, 3);
  // Interior pixels keep the label of their own cell.
  for (int64_t p = 0; p < e.pixels(); ++p)
    if (classes[p] == kInterior) {
      ASSERT_EQ(got[p], gt[p]);
    }
}

TEST(Postprocess_Instances, min_size_and_image_wrapper) {
  Image classes = Image::zeros(DType::U8, Shape{1, 1, 20, 20});
  uint8_t* c = classes.data_as<uint8_t>();
  for (int y = 2; y < 10; ++y)
    for (int x = 2; x < 10; ++x) c[y * 20 + x] = 1;  // 64 px
  c[15 * 20 + 15] = 1;                               // 1 px
  InstanceOptions o;
  o.mode = InstanceMode::Plain;
  uint32_t n = 0;
  Image out = classes_to_instances(classes, o, &n);
  EXPECT_EQ(n, 2u);
  EXPECT_EQ(out.dtype(), DType::U16);
  o.min_size = 2;
  out = classes_to_instances(classes, o, &n);
  EXPECT_EQ(n, 1u);
  EXPECT_EQ(out.data_as<uint16_t>()[15 * 20 + 15], 0);
  std::vector<uint32_t> many(70000 * 2, 0);
  for (size_t i = 0; i < many.size(); i += 2) many[i] = static_cast<uint32_t>(i / 2 + 1);
  EXPECT_EQ(
      label_image(many.data(), Extents{1, 1, static_cast<int64_t>(many.size())}, 70000, {}).dtype(),
      DType::U32);
}

// The round trip on synthetic cells of 8-12 px (src/synth): reclaim >= 0.90, plain beside it.
TEST(Postprocess_Instances, round_trip_synthetic_small_cells) {
  synth::SynthParams params;
  params.height = 512;
  params.width = 512;
  params.diameter = 10.0;
  params.diameter_spread = 0.1;  // diameters 8.2 .. 12.2 px
  params.density = 0.3;
  params.seed = 11;
  const synth::SynthResult s = synth::generate(params);
  const Image classes = instances_to_classes(s.labels, ClassTargetOptions{});
  const Image reclaim = classes_to_instances(classes, InstanceOptions{});
  InstanceOptions po;
  po.mode = InstanceMode::Plain;
  const Image plain = classes_to_instances(classes, po);
  const auto fr = metrics::instance_f1(s.labels, reclaim);
  const auto fp = metrics::instance_f1(s.labels, plain);
  std::printf(
      "synthetic 8-12 px cells (%lld placed): reclaim F1 %.4f (tp %lld of %lld), plain F1 "
      "%.4f (tp %lld, %lld predicted)\n",
      static_cast<long long>(s.cells_placed), fr.f1, static_cast<long long>(fr.counts.tp),
      static_cast<long long>(fr.counts.n_true), fp.f1, static_cast<long long>(fp.counts.tp),
      static_cast<long long>(fp.counts.n_pred));
  RecordProperty("reclaim_f1", std::to_string(fr.f1));
  RecordProperty("plain_f1", std::to_string(fp.f1));
  EXPECT_GE(fr.f1, 0.90);
  EXPECT_GT(fr.f1, fp.f1);
}

}  // namespace
}  // namespace umamba::postprocess
