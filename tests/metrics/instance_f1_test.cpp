// Instance F1 against a plain restatement of the challenge rule: frame removal by the script's
// unique(mask*frame)[1:] logic, sequential relabelling with std::map, a dense IoU matrix and a
// maximum-cardinality matching found by augmenting paths (Kuhn), which is what the script's
// assignment maximises. Random cell images with perturbed predictions, 2D and 3D, every label
// dtype, ids beyond the dense tables, exact IoU = ½ ties, empty images, frame cells and tiling.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "core/error.h"
#include "core/image.h"
#include "metrics/instance_f1.h"

namespace um = umamba::metrics;
using umamba::DType;
using umamba::Image;
using umamba::Shape;

namespace {

struct Dims {
  int64_t z = 1, y = 1, x = 1;
  int64_t count() const { return z * y * x; }
};

using Labels = std::vector<int64_t>;

// The script's remove_boundary_cells + relabel_sequential (frame on every axis longer than 1).
Labels ref_prepare(Labels m, const Dims& d, int64_t border, bool keep_border) {
  if (!keep_border) {
    std::set<int64_t> in_frame;
    for (int64_t z = 0; z < d.z; ++z)
      for (int64_t y = 0; y < d.y; ++y)
        for (int64_t x = 0; x < d.x; ++x) {
          const bool frame = (d.z > 1 && (z < border || z >= d.z - border)) || y < border ||
                             y >= d.y - border || x < border || x >= d.x - border;
          in_frame.insert(frame ? m[(z * d.y + y) * d.x + x] : 0);
        }
    in_frame.erase(in_frame.begin());  // unique(...)[1:]
    for (auto& v : m)
      if (in_frame.count(v)) v = 0;
  }
  std::map<int64_t, int64_t> ids;
  for (int64_t v : m)
    if (v) ids[v] = 0;
  int64_t next = 1;
  for (auto& [v, id] : ids) id = next++;
  for (auto& v : m)
    if (v) v = ids[v];
  return m;
}

struct Ref {
  int64_t n_true = 0, n_pred = 0, tp = 0;
  double iou_sum = 0;
};

bool kuhn(int64_t g, const std::vector<std::vector<int64_t>>& adj, std::vector<int64_t>& match_p,
          std::vector<char>& seen) {
  for (int64_t p : adj[g]) {
    if (seen[p]) continue;
    seen[p] = 1;
    if (match_p[p] < 0 || kuhn(match_p[p], adj, match_p, seen)) {
      match_p[p] = g;
      return true;
    }
  }
  return false;
}

Ref ref_score(const Labels& g, const Labels& p, um::Threshold t) {
  Ref r;
  for (int64_t v : g) r.n_true = std::max(r.n_true, v);
  for (int64_t v : p) r.n_pred = std::max(r.n_pred, v);
  if (r.n_pred == 0) return r;
  std::vector<std::vector<int64_t>> overlap(r.n_true + 1, std::vector<int64_t>(r.n_pred + 1, 0));
  for (size_t i = 0; i < g.size(); ++i) overlap[g[i]][p[i]]++;
  std::vector<int64_t> ag(r.n_true + 1, 0), ap(r.n_pred + 1, 0);
  for (int64_t a = 0; a <= r.n_true; ++a)
    for (int64_t b = 0; b <= r.n_pred; ++b) ag[a] += overlap[a][b], ap[b] += overlap[a][b];
  std::vector<std::vector<int64_t>> adj(r.n_true + 1);
  for (int64_t a = 1; a <= r.n_true; ++a)
    for (int64_t b = 1; b <= r.n_pred; ++b) {
      const int64_t inter = overlap[a][b], uni = ag[a] + ap[b] - inter;
      if (inter > 0 && inter * t.den >= t.num * uni) adj[a].push_back(b);
    }
  std::vector<int64_t> match_p(r.n_pred + 1, -1);
  for (int64_t a = 1; a <= r.n_true; ++a) {
    std::vector<char> seen(r.n_pred + 1, 0);
    if (kuhn(a, adj, match_p, seen)) ++r.tp;
  }
  for (int64_t b = 1; b <= r.n_pred; ++b)
    if (match_p[b] > 0) {
      const int64_t a = match_p[b], inter = overlap[a][b];
      r.iou_sum += static_cast<double>(inter) / static_cast<double>(ag[a] + ap[b] - inter);
    }
  return r;
}

Image to_image(const Labels& m, const Dims& d, DType dtype) {
  Image img = Image::zeros(dtype, Shape{1, d.z, d.y, d.x});
  umamba::visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* p = img.data_as<T>();
    for (size_t i = 0; i < m.size(); ++i) p[i] = static_cast<T>(m[i]);
  });
  return img;
}

// Random ellipsoidal cells (later ones overwrite earlier ones) with ids drawn from `ids`.
Labels random_cells(const Dims& d, int n, std::mt19937& rng, const std::vector<int64_t>& ids) {
  Labels m(d.count(), 0);
  std::uniform_real_distribution<double> u(0, 1);
  for (int k = 0; k < n; ++k) {
    const double cz = u(rng) * d.z, cy = u(rng) * d.y, cx = u(rng) * d.x;
    const double rz = d.z > 1 ? 1 + u(rng) * 3 : 0.5, ry = 1 + u(rng) * 5, rx = 1 + u(rng) * 5;
    const int64_t id = ids[k % ids.size()];
    for (int64_t z = 0; z < d.z; ++z)
      for (int64_t y = 0; y < d.y; ++y)
        for (int64_t x = 0; x < d.x; ++x) {
          const double a = (z - cz) / rz, b = (y - cy) / ry, c = (x - cx) / rx;
          if (a * a + b * b + c * c <= 1.0) m[(z * d.y + y) * d.x + x] = id;
        }
  }
  return m;
}

// A perturbed copy: each pixel takes its neighbour's label with some probability, some cells
// vanish, and a few new cells appear.
Labels perturb(const Labels& m, const Dims& d, std::mt19937& rng, int64_t new_id) {
  Labels out = m;
  std::bernoulli_distribution flip(0.15), drop(0.1);
  std::map<int64_t, bool> dropped;
  for (int64_t v : m)
    if (v && !dropped.count(v)) dropped[v] = drop(rng);
  for (int64_t z = 0; z < d.z; ++z)
    for (int64_t y = 0; y < d.y; ++y)
      for (int64_t x = 1; x < d.x; ++x) {
        const int64_t i = (z * d.y + y) * d.x + x;
        if (flip(rng)) out[i] = m[i - 1];
        if (out[i] && dropped[out[i]]) out[i] = 0;
      }
  const Labels extra = random_cells(d, 3, rng, {new_id, new_id + 1, new_id + 2});
  for (size_t i = 0; i < out.size(); ++i)
    if (extra[i] && !out[i]) out[i] = extra[i];
  return out;
}

void expect_same(const um::F1Result& got, const Ref& want, const std::string& what) {
  EXPECT_EQ(got.counts.n_true, want.n_true) << what;
  EXPECT_EQ(got.counts.n_pred, want.n_pred) << what;
  EXPECT_EQ(got.counts.tp, want.tp) << what;
  EXPECT_NEAR(got.counts.matched_iou_sum, want.iou_sum, 1e-9) << what;
  if (want.n_pred > 0) {
    EXPECT_EQ(got.counts.fp, want.n_pred - want.tp) << what;
    EXPECT_EQ(got.counts.fn, want.n_true - want.tp) << what;
  } else {
    EXPECT_EQ(got.counts.fp, 0) << what;
    EXPECT_EQ(got.counts.fn, 0) << what;
  }
  double f1 = 0;
  if (want.tp > 0) {
    const double p = static_cast<double>(want.tp) / want.n_pred;
    const double r = static_cast<double>(want.tp) / want.n_true;
    f1 = 2 * (p * r) / (p + r);
  }
  EXPECT_EQ(got.f1, f1) << what;
}

}  // namespace

TEST(Metrics_InstanceF1, threshold_parses_decimals_exactly) {
  EXPECT_EQ(um::Threshold::parse("0.5").num, 1);
  EXPECT_EQ(um::Threshold::parse("0.5").den, 2);
  EXPECT_EQ(um::Threshold::parse("0.55").num, 11);
  EXPECT_EQ(um::Threshold::parse("0.55").den, 20);
  EXPECT_EQ(um::Threshold::parse(".7").den, 10);
  EXPECT_EQ(um::Threshold::parse("1").num, 1);
  EXPECT_EQ(um::Threshold::from_double(0.55).den, 20);
  EXPECT_EQ(um::Threshold::from_double(0.3).num, 3);
  EXPECT_THROW(um::Threshold::parse("1.5"), umamba::Error);
  EXPECT_THROW(um::Threshold::parse("abc"), umamba::Error);
  EXPECT_THROW(um::Threshold::parse(""), umamba::Error);
  EXPECT_TRUE(um::Threshold::parse("0.5").passes(1, 2));  // IoU exactly ½
  EXPECT_FALSE(um::Threshold::parse("0.5").passes(49, 99));
}

TEST(Metrics_InstanceF1, random_2d_matches_reference) {
  std::mt19937 rng(21);
  const Dims d{1, 60, 70};
  for (int trial = 0; trial < 30; ++trial) {
    std::vector<int64_t> ids;
    for (int k = 0; k < 40; ++k) ids.push_back(1 + (k * 37 + trial) % 500);  // gaps, repeats
    const Labels g = random_cells(d, 40, rng, ids);
    const Labels p = perturb(g, d, rng, 600);
    for (const char* th : {"0.5", "0.55", "0.7", "0.9"}) {
      um::F1Options o;
      o.threshold = um::Threshold::parse(th);
      o.keep_border = trial % 5 == 0;
      const auto got = um::instance_f1(to_image(g, d, DType::U16), to_image(p, d, DType::I32), o);
      const Ref want = ref_score(ref_prepare(g, d, 2, o.keep_border),
                                 ref_prepare(p, d, 2, o.keep_border), o.threshold);
      expect_same(got, want, "trial " + std::to_string(trial) + " t " + th);
    }
  }
}

TEST(Metrics_InstanceF1, thresholds_below_half_match_maximum_cardinality) {
  std::mt19937 rng(8);
  const Dims d{1, 50, 50};
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<int64_t> ids;
    for (int k = 1; k <= 60; ++k) ids.push_back(k);
    const Labels g = random_cells(d, 60, rng, ids);
    const Labels p = perturb(perturb(g, d, rng, 100), d, rng, 200);
    for (const char* th : {"0.1", "0.3", "0.45"}) {
      um::F1Options o;
      o.threshold = um::Threshold::parse(th);
      const auto got = um::instance_f1(to_image(g, d, DType::U8), to_image(p, d, DType::U16), o);
      const Ref want =
          ref_score(ref_prepare(g, d, 2, false), ref_prepare(p, d, 2, false), o.threshold);
      EXPECT_EQ(got.counts.tp, want.tp) << trial << " " << th;
      EXPECT_EQ(got.counts.n_true, want.n_true);
      EXPECT_EQ(got.counts.n_pred, want.n_pred);
    }
  }
}

TEST(Metrics_InstanceF1, random_3d_matches_reference) {
  std::mt19937 rng(5);
  const Dims d{12, 30, 30};
  for (int trial = 0; trial < 6; ++trial) {
    std::vector<int64_t> ids;
    for (int k = 1; k <= 25; ++k) ids.push_back(k * 3);
    const Labels g = random_cells(d, 25, rng, ids);
    const Labels p = perturb(g, d, rng, 1000);
    const auto got = um::instance_f1(to_image(g, d, DType::U32), to_image(p, d, DType::I64));
    expect_same(got, ref_score(ref_prepare(g, d, 2, false), ref_prepare(p, d, 2, false), {}),
                "3d trial " + std::to_string(trial));
  }
}

TEST(Metrics_InstanceF1, huge_ids_use_the_sparse_tables) {
  std::mt19937 rng(9);
  const Dims d{1, 40, 40};
  const std::vector<int64_t> ids = {4'000'000'000, 17, 3'000'000'001, 99'999'999, 5};
  const Labels g = random_cells(d, 15, rng, ids);
  const Labels p = perturb(g, d, rng, 2'000'000'000);
  const auto got = um::instance_f1(to_image(g, d, DType::U32), to_image(p, d, DType::I64));
  expect_same(got, ref_score(ref_prepare(g, d, 2, false), ref_prepare(p, d, 2, false), {}),
              "huge ids");
}

TEST(Metrics_InstanceF1, iou_of_exactly_half_is_a_match) {
  const Dims d{1, 10, 10};
  Labels g(d.count(), 0), p(d.count(), 0);
  g[5 * 10 + 5] = g[5 * 10 + 6] = 7;  // 2-pixel cell
  p[5 * 10 + 5] = 3;                  // 1 pixel of it: IoU = 1/2
  const auto r = um::instance_f1(to_image(g, d, DType::U8), to_image(p, d, DType::U8));
  EXPECT_EQ(r.counts.tp, 1);
  EXPECT_EQ(r.f1, 1.0);
  EXPECT_EQ(r.mean_matched_iou, 0.5);
  // A cell split in two exact halves: one match, one false positive.
  Labels g2(d.count(), 0), p2(d.count(), 0);
  for (int x = 3; x < 7; ++x) g2[4 * 10 + x] = 1;
  p2[4 * 10 + 3] = p2[4 * 10 + 4] = 1;
  p2[4 * 10 + 5] = p2[4 * 10 + 6] = 2;
  const auto r2 = um::instance_f1(to_image(g2, d, DType::U8), to_image(p2, d, DType::U8));
  EXPECT_EQ(r2.counts.tp, 1);
  EXPECT_EQ(r2.counts.fp, 1);
  EXPECT_EQ(r2.counts.fn, 0);
  EXPECT_DOUBLE_EQ(r2.f1, 2 * (0.5 * 1.0) / 1.5);
  // Just below one half is not a match.
  um::F1Options o;
  o.threshold = um::Threshold::parse("0.51");
  EXPECT_EQ(um::instance_f1(to_image(g, d, DType::U8), to_image(p, d, DType::U8), o).counts.tp, 0);
}

TEST(Metrics_InstanceF1, empty_images_follow_the_script) {
  const Dims d{1, 8, 8};
  const Labels empty(d.count(), 0);
  Labels one(d.count(), 0);
  one[3 * 8 + 3] = 1;
  const auto both = um::instance_f1(to_image(empty, d, DType::U8), to_image(empty, d, DType::U8));
  EXPECT_EQ(both.f1, 0.0);  // no TP -> 0, even for two empty images
  EXPECT_EQ(both.dice, 1.0);
  const auto no_gt = um::instance_f1(to_image(empty, d, DType::U8), to_image(one, d, DType::U8));
  EXPECT_EQ(no_gt.f1, 0.0);
  EXPECT_EQ(no_gt.counts.fp, 1);
  EXPECT_EQ(no_gt.counts.fn, 0);
  EXPECT_EQ(no_gt.dice, 0.0);
  const auto no_pred = um::instance_f1(to_image(one, d, DType::U8), to_image(empty, d, DType::U8));
  EXPECT_EQ(no_pred.counts.n_true, 1);
  EXPECT_EQ(no_pred.counts.fn, 0);  // the script reports TP = FP = FN = 0 without predictions
  EXPECT_EQ(no_pred.f1, 0.0);
  EXPECT_EQ(no_pred.panoptic_quality, 0.0);
}

TEST(Metrics_InstanceF1, single_pixels_and_frame_cells) {
  const Dims d{1, 9, 9};
  Labels g(d.count(), 0);
  g[4 * 9 + 4] = 1;  // interior single pixel
  g[1 * 9 + 4] = 2;  // in the 2-pixel frame
  g[4 * 9 + 7] = 3;  // in the frame on the right (x = 7 >= 9 - 2)
  g[2 * 9 + 2] = 4;  // just inside
  const auto r = um::instance_f1(to_image(g, d, DType::U16), to_image(g, d, DType::U16));
  EXPECT_EQ(r.counts.n_true, 2);
  EXPECT_EQ(r.counts.tp, 2);
  EXPECT_EQ(r.f1, 1.0);
  um::F1Options keep;
  keep.keep_border = true;
  const auto k = um::instance_f1(to_image(g, d, DType::U16), to_image(g, d, DType::U16), keep);
  EXPECT_EQ(k.counts.n_true, 4);
  // A predicted cell reaching the frame is removed even when its ground truth is not: an FN.
  Labels p = g;
  p[3 * 9 + 2] = 4;
  p[1 * 9 + 2] = 4;
  const auto f = um::instance_f1(to_image(g, d, DType::U16), to_image(p, d, DType::U16));
  EXPECT_EQ(f.counts.tp, 1);
  EXPECT_EQ(f.counts.fn, 1);
}

TEST(Metrics_InstanceF1, tiny_images_keep_the_smallest_frame_label_like_the_script) {
  // 4x4 without background: the whole image is frame and unique(mask*bd)[1:] keeps the smallest.
  const Dims d{1, 4, 4};
  Labels g(d.count(), 5);
  for (int i = 0; i < 8; ++i) g[i] = 9;
  const auto r = um::instance_f1(to_image(g, d, DType::U8), to_image(g, d, DType::U8));
  EXPECT_EQ(r.counts.n_true, 1);
  EXPECT_EQ(r.counts.tp, 1);
  EXPECT_EQ(r.counts.n_true,
            ref_score(ref_prepare(g, d, 2, false), ref_prepare(g, d, 2, false), {}).n_true);
}

TEST(Metrics_InstanceF1, large_images_are_scored_in_padded_tiles) {
  std::mt19937 rng(13);
  const Dims d{1, 130, 170};
  std::vector<int64_t> ids;
  for (int k = 1; k <= 120; ++k) ids.push_back(k);
  const Labels g = random_cells(d, 120, rng, ids);
  const Labels p = perturb(g, d, rng, 500);
  um::F1Options o;
  o.tile = 50;
  o.tile_from_pixels = 1;
  const auto got = um::instance_f1(to_image(g, d, DType::U16), to_image(p, d, DType::U16), o);
  EXPECT_TRUE(got.tiled);
  // Reference: zero-pad to 150 x 200 and score every 50 x 50 tile on its own.
  Ref sum;
  int64_t fp = 0, fn = 0;
  for (int64_t ty = 0; ty < 3; ++ty)
    for (int64_t tx = 0; tx < 4; ++tx) {
      const Dims td{1, 50, 50};
      Labels gt(td.count(), 0), pt(td.count(), 0);
      for (int64_t y = 0; y < 50; ++y)
        for (int64_t x = 0; x < 50; ++x) {
          const int64_t iy = ty * 50 + y, ix = tx * 50 + x;
          if (iy < d.y && ix < d.x) {
            gt[y * 50 + x] = g[iy * d.x + ix];
            pt[y * 50 + x] = p[iy * d.x + ix];
          }
        }
      const Ref r = ref_score(ref_prepare(gt, td, 2, false), ref_prepare(pt, td, 2, false), {});
      sum.n_true += r.n_true;
      sum.n_pred += r.n_pred;
      sum.tp += r.tp;
      sum.iou_sum += r.iou_sum;
      if (r.n_pred > 0) fp += r.n_pred - r.tp, fn += r.n_true - r.tp;
    }
  EXPECT_EQ(got.counts.n_true, sum.n_true);
  EXPECT_EQ(got.counts.n_pred, sum.n_pred);
  EXPECT_EQ(got.counts.tp, sum.tp);
  EXPECT_EQ(got.counts.fp, fp);
  EXPECT_EQ(got.counts.fn, fn);
  EXPECT_NEAR(got.counts.matched_iou_sum, sum.iou_sum, 1e-9);
}

TEST(Metrics_InstanceF1, extras_follow_stardist) {
  std::mt19937 rng(31);
  const Dims d{1, 64, 64};
  std::vector<int64_t> ids;
  for (int k = 1; k <= 30; ++k) ids.push_back(k);
  const Labels g = random_cells(d, 30, rng, ids);
  const Labels p = perturb(g, d, rng, 100);
  const auto got = um::instance_f1(to_image(g, d, DType::U16), to_image(p, d, DType::U16));
  const Labels gp = ref_prepare(g, d, 2, false), pp = ref_prepare(p, d, 2, false);
  const Ref half = ref_score(gp, pp, {});
  const double fp = half.n_pred - half.tp, fn = half.n_true - half.tp;
  EXPECT_NEAR(got.panoptic_quality, half.iou_sum / (half.tp + fp / 2 + fn / 2), 1e-12);
  EXPECT_NEAR(got.mean_matched_iou, half.iou_sum / half.tp, 1e-12);
  double mean = 0;
  for (int k = 0; k < um::kApThresholds; ++k) {
    const Ref r = ref_score(gp, pp, um::ap_threshold(k));
    const double want = static_cast<double>(r.tp) / (r.n_true + r.n_pred - r.tp);
    EXPECT_NEAR(got.ap[k], want, 1e-12) << k;
    mean += want / um::kApThresholds;
  }
  EXPECT_NEAR(got.mean_ap, mean, 1e-12);
}

TEST(Metrics_InstanceF1, rejects_mismatched_inputs) {
  const Image a = Image::zeros(DType::U8, Shape{1, 1, 5, 5});
  const Image b = Image::zeros(DType::U8, Shape{1, 1, 5, 6});
  const Image f = Image::zeros(DType::F32, Shape{1, 1, 5, 5});
  const Image c = Image::zeros(DType::U8, Shape{3, 1, 5, 5});
  EXPECT_THROW(um::instance_f1(a, b), umamba::Error);
  EXPECT_THROW(um::instance_f1(a, f), umamba::Error);
  EXPECT_THROW(um::instance_f1(c, c), umamba::Error);
  Image neg = Image::zeros(DType::I16, Shape{1, 1, 5, 5});
  neg.data_as<int16_t>()[12] = -3;
  EXPECT_THROW(um::instance_f1(neg, neg), umamba::Error);
}
