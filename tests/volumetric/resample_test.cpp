// Resampling (volumetric/resample.h) against a plain reference written differently: every output
// voxel is evaluated directly in 3D (8 linear taps, or 64 cubic taps over spline coefficients that
// come from solving the B-spline tridiagonal system with the Thomas algorithm, not from the
// recursive filter), on random volumes up and down, with several channels, the separate-Z path and
// segmentations (one-hot per label, >= 0.5, later labels win). Plus the helpers (target shape,
// separate-Z rule) and the errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/image.h"
#include "volumetric/resample.h"

namespace uv = umamba::volumetric;
using umamba::DType;
using umamba::Image;
using umamba::Shape;

namespace {

// ---- plain reference ----------------------------------------------------------------------

double position(int64_t o, int64_t n, int64_t m) {
  return (static_cast<double>(o) + 0.5) * (static_cast<double>(n) / static_cast<double>(m)) - 0.5;
}

int64_t clamp(int64_t i, int64_t n) {
  return std::clamp<int64_t>(i, 0, n - 1);
}

// Spline coefficients of one line with mirror boundaries: (c[i-1] + 4c[i] + c[i+1]) / 6 = s[i],
// c[-1] = c[1], c[n] = c[n-2]; solved by the Thomas algorithm.
std::vector<double> spline_coefficients(const std::vector<double>& s) {
  const size_t n = s.size();
  if (n == 1) return s;
  std::vector<double> a(n, 1.0 / 6), b(n, 4.0 / 6), c(n, 1.0 / 6), d = s;
  c[0] = 2.0 / 6;
  a[n - 1] = 2.0 / 6;
  for (size_t i = 1; i < n; ++i) {
    const double w = a[i] / b[i - 1];
    b[i] -= w * c[i - 1];
    d[i] -= w * d[i - 1];
  }
  std::vector<double> x(n);
  x[n - 1] = d[n - 1] / b[n - 1];
  for (size_t i = n - 1; i-- > 0;) x[i] = (d[i] - c[i] * x[i + 1]) / b[i];
  return x;
}

double bspline3(double t) {
  t = std::fabs(t);
  if (t < 1) return (4.0 - 6.0 * t * t + 3.0 * t * t * t) / 6.0;
  if (t < 2) return (2.0 - t) * (2.0 - t) * (2.0 - t) / 6.0;
  return 0.0;
}

// One channel [Z,Y,X] as doubles.
struct Vol {
  int64_t z = 1, y = 1, x = 1;
  std::vector<double> v;
  double& at(int64_t a, int64_t b, int64_t c) {
    return v[static_cast<size_t>((a * y + b) * x + c)];
  }
  double at(int64_t a, int64_t b, int64_t c) const {
    return v[static_cast<size_t>((a * y + b) * x + c)];
  }
};

// skimage.transform.resize(mode="edge", anti_aliasing=False, clip) of one channel, evaluated
// directly in 3D. Axes whose size does not change are left alone (as resample.h states).
Vol reference_resize(const Vol& in, const uv::Shape3& m, int order, bool clip = true) {
  const uv::Shape3 n{in.z, in.y, in.x};
  Vol out{m[0], m[1], m[2], std::vector<double>(static_cast<size_t>(m[0] * m[1] * m[2]))};
  const int64_t pad = 12;
  Vol coef;  // order 3: coefficients of the edge-padded volume (axes that change only)
  std::array<int64_t, 3> off{0, 0, 0};
  if (order == 3) {
    std::array<int64_t, 3> pn{};
    for (int a = 0; a < 3; ++a) {
      off[a] = n[a] == m[a] ? 0 : pad;
      pn[a] = n[a] + 2 * off[a];
    }
    coef =
        Vol{pn[0], pn[1], pn[2], std::vector<double>(static_cast<size_t>(pn[0] * pn[1] * pn[2]))};
    for (int64_t a = 0; a < pn[0]; ++a)
      for (int64_t b = 0; b < pn[1]; ++b)
        for (int64_t c = 0; c < pn[2]; ++c)
          coef.at(a, b, c) =
              in.at(clamp(a - off[0], n[0]), clamp(b - off[1], n[1]), clamp(c - off[2], n[2]));
    for (int axis = 0; axis < 3; ++axis) {
      if (n[axis] == m[axis]) continue;
      std::array<int64_t, 3> p{};
      const int u = (axis + 1) % 3, w = (axis + 2) % 3;
      for (p[u] = 0; p[u] < pn[u]; ++p[u])
        for (p[w] = 0; p[w] < pn[w]; ++p[w]) {
          std::vector<double> line(static_cast<size_t>(pn[axis]));
          for (p[axis] = 0; p[axis] < pn[axis]; ++p[axis])
            line[static_cast<size_t>(p[axis])] = coef.at(p[0], p[1], p[2]);
          const auto c = spline_coefficients(line);
          for (p[axis] = 0; p[axis] < pn[axis]; ++p[axis])
            coef.at(p[0], p[1], p[2]) = c[static_cast<size_t>(p[axis])];
        }
    }
  }
  double lo = in.v[0], hi = in.v[0];
  for (double v : in.v) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  for (int64_t a = 0; a < m[0]; ++a)
    for (int64_t b = 0; b < m[1]; ++b)
      for (int64_t c = 0; c < m[2]; ++c) {
        const std::array<int64_t, 3> o{a, b, c};
        // Per axis: the taps and their weights.
        std::array<std::vector<std::pair<int64_t, double>>, 3> taps;
        for (int axis = 0; axis < 3; ++axis) {
          if (n[axis] == m[axis]) {
            taps[axis] = {{o[axis] + off[axis], 1.0}};
            continue;
          }
          const double x = position(o[axis], n[axis], m[axis]);
          if (order == 0) {
            taps[axis] = {{clamp(static_cast<int64_t>(std::floor(x + 0.5)), n[axis]), 1.0}};
          } else if (order == 1) {
            const double f = std::floor(x);
            taps[axis] = {{clamp(static_cast<int64_t>(f), n[axis]), 1.0 - (x - f)},
                          {clamp(static_cast<int64_t>(f) + 1, n[axis]), x - f}};
          } else {
            const double xp = x + static_cast<double>(pad);
            const int64_t f = static_cast<int64_t>(std::floor(xp));
            for (int64_t k = f - 1; k <= f + 2; ++k)
              taps[axis].push_back({k, bspline3(xp - static_cast<double>(k))});
          }
        }
        double sum = 0;
        for (const auto& [i, wi] : taps[0])
          for (const auto& [j, wj] : taps[1])
            for (const auto& [k, wk] : taps[2])
              sum += wi * wj * wk * (order == 3 ? coef.at(i, j, k) : in.at(i, j, k));
        if (clip) sum = std::clamp(sum, lo, hi);
        out.at(a, b, c) = sum;
      }
  return out;
}

Vol channel_of(const Image& img, int64_t c) {
  const Shape s = img.shape();
  Vol v{s.z, s.y, s.x, {}};
  for (int64_t z = 0; z < s.z; ++z)
    for (int64_t y = 0; y < s.y; ++y)
      for (int64_t x = 0; x < s.x; ++x) v.v.push_back(img.at<float>(c, z, y, x));
  return v;
}

Image random_volume(const Shape& s, std::mt19937& rng) {
  Image img = Image::zeros(DType::F32, s);
  std::normal_distribution<float> d(10.0f, 4.0f);
  float* p = img.data_as<float>();
  for (int64_t i = 0; i < s.elements(); ++i) p[i] = d(rng);
  return img;
}

double max_abs_diff(const Vol& a, const Vol& b) {
  double m = 0;
  for (size_t i = 0; i < a.v.size(); ++i) m = std::max(m, std::fabs(a.v[i] - b.v[i]));
  return m;
}

// nnU-Net's separate-Z path written plainly: every slice across `axis` resized in-plane (clipped
// per slice), then nearest (order_z 0) along the axis.
Vol reference_separate(const Vol& in, const uv::Shape3& m, int axis, int order) {
  const uv::Shape3 n{in.z, in.y, in.x};
  uv::Shape3 plane = m;
  plane[axis] = n[axis];
  Vol mid{plane[0], plane[1], plane[2],
          std::vector<double>(static_cast<size_t>(plane[0] * plane[1] * plane[2]))};
  for (int64_t s = 0; s < n[axis]; ++s) {
    uv::Shape3 sd = n, so = plane;
    sd[axis] = 1;
    so[axis] = 1;
    Vol slice{sd[0], sd[1], sd[2], {}};
    std::array<int64_t, 3> p{};
    for (p[0] = 0; p[0] < sd[0]; ++p[0])
      for (p[1] = 0; p[1] < sd[1]; ++p[1])
        for (p[2] = 0; p[2] < sd[2]; ++p[2]) {
          std::array<int64_t, 3> q = p;
          q[axis] = s;
          slice.v.push_back(in.at(q[0], q[1], q[2]));
        }
    const Vol r = reference_resize(slice, so, order);
    for (p[0] = 0; p[0] < so[0]; ++p[0])
      for (p[1] = 0; p[1] < so[1]; ++p[1])
        for (p[2] = 0; p[2] < so[2]; ++p[2]) {
          std::array<int64_t, 3> q = p;
          q[axis] = s;
          mid.at(q[0], q[1], q[2]) = r.at(p[0], p[1], p[2]);
        }
  }
  Vol out{m[0], m[1], m[2], std::vector<double>(static_cast<size_t>(m[0] * m[1] * m[2]))};
  std::array<int64_t, 3> p{};
  for (p[0] = 0; p[0] < m[0]; ++p[0])
    for (p[1] = 0; p[1] < m[1]; ++p[1])
      for (p[2] = 0; p[2] < m[2]; ++p[2]) {
        std::array<int64_t, 3> q = p;
        const double x = position(p[axis], n[axis], m[axis]);
        q[axis] = n[axis] == m[axis] ? p[axis]
                                     : clamp(static_cast<int64_t>(std::floor(x + 0.5)), n[axis]);
        out.at(p[0], p[1], p[2]) = mid.at(q[0], q[1], q[2]);
      }
  return out;
}

// nnU-Net's resize_segmentation written plainly: each label's mask resized (order 1) over the
// whole volume, the label written where >= 0.5, labels in increasing order.
std::vector<int64_t> reference_segmentation(const std::vector<int64_t>& lab, const uv::Shape3& n,
                                            const uv::Shape3& m) {
  std::map<int64_t, int> values;
  for (int64_t v : lab) values[v] = 1;
  std::vector<int64_t> out(static_cast<size_t>(m[0] * m[1] * m[2]), 0);
  for (const auto& [value, unused] : values) {
    Vol mask{n[0], n[1], n[2], {}};
    for (int64_t v : lab) mask.v.push_back(v == value ? 1.0 : 0.0);
    const Vol r = reference_resize(mask, m, 1);
    for (size_t i = 0; i < out.size(); ++i)
      if (r.v[i] >= 0.5) out[i] = value;
  }
  return out;
}

}  // namespace

TEST(Volumetric_Resample, target_shape_rounds_like_numpy) {
  // 5 · 1/2 = 2.5 -> 2 and 7 · 1/2 = 3.5 -> 4 (half to even); 30 · 3/2.5 = 36.
  EXPECT_EQ(uv::target_shape({5, 7, 30}, {1, 1, 3}, {2, 2, 2.5}), (uv::Shape3{2, 4, 36}));
  EXPECT_EQ(uv::target_shape({1, 10, 10}, {1, 1, 1}, {100, 1, 1}), (uv::Shape3{1, 10, 10}));
  EXPECT_THROW(uv::target_shape({5, 5, 5}, {1, 0, 1}, {1, 1, 1}), umamba::Error);
}

TEST(Volumetric_Resample, separate_z_rule) {
  EXPECT_EQ(uv::separate_z_axis({3.0, 0.8, 0.8}, {1, 1, 1}), 0);  // current anisotropic
  EXPECT_EQ(uv::separate_z_axis({1, 1, 1}, {0.7, 0.7, 2.5}), 2);  // target anisotropic
  EXPECT_EQ(uv::separate_z_axis({3, 3, 3}, {2.5, 0.8, 0.8}), 0);  // FLARE-like target
  EXPECT_EQ(uv::separate_z_axis({2, 1, 1}, {1, 1, 1}), -1);       // 2 <= 3
  EXPECT_EQ(uv::separate_z_axis({5, 5, 1}, {1, 1, 1}), -1);       // two axes share the max
  EXPECT_TRUE(uv::is_anisotropic({3.01, 1, 1}));
  EXPECT_FALSE(uv::is_anisotropic({3.0, 1, 1}));
}

TEST(Volumetric_Resample, linear_known_values) {
  Image img = Image::zeros(DType::F32, {1, 1, 1, 2});
  img.data_as<float>()[1] = 1.0f;
  const Image r = uv::resize(img, {1, 1, 4}, 1);
  const float* p = r.data_as<float>();
  EXPECT_FLOAT_EQ(p[0], 0.0f);
  EXPECT_FLOAT_EQ(p[1], 0.25f);
  EXPECT_FLOAT_EQ(p[2], 0.75f);
  EXPECT_FLOAT_EQ(p[3], 1.0f);
  // Geometry: spacing scales with old/new size.
  EXPECT_DOUBLE_EQ(r.geometry().spacing[2], 0.5);
}

TEST(Volumetric_Resample, random_matches_reference) {
  std::mt19937 rng(7);
  const std::vector<std::pair<Shape, uv::Shape3>> cases = {
      {{2, 5, 7, 9}, {9, 4, 13}},    // mixed up/down, two channels
      {{1, 6, 6, 6}, {3, 11, 6}},    // one axis unchanged
      {{1, 1, 17, 23}, {1, 8, 40}},  // 2D
      {{1, 4, 3, 2}, {7, 9, 1}},     // to a single voxel along X
      {{1, 1, 1, 5}, {1, 1, 12}}};
  for (int order : {0, 1, 3}) {
    for (const auto& [s, m] : cases) {
      const Image img = random_volume(s, rng);
      const Image got = uv::resize(img, m, order);
      ASSERT_EQ(got.shape(), (Shape{s.c, m[0], m[1], m[2]}));
      for (int64_t c = 0; c < s.c; ++c) {
        const Vol want = reference_resize(channel_of(img, c), m, order);
        EXPECT_LT(max_abs_diff(channel_of(got, c), want), 2e-5)
            << "order " << order << " shape " << umamba::to_string(s) << " channel " << c;
      }
    }
  }
}

TEST(Volumetric_Resample, cubic_keeps_constants_and_clips_steps) {
  Image flat = Image::zeros(DType::F32, {1, 4, 5, 6});
  std::fill(flat.data_as<float>(), flat.data_as<float>() + flat.element_count(), 3.5f);
  const Image r = uv::resize(flat, {9, 2, 13}, 3);
  for (int64_t i = 0; i < r.element_count(); ++i) ASSERT_NEAR(r.data_as<float>()[i], 3.5f, 1e-5);
  // A step overshoots with a cubic spline; clip keeps the input's range.
  Image step = Image::zeros(DType::U8, {1, 1, 1, 8});
  for (int i = 4; i < 8; ++i) step.data_as<uint8_t>()[i] = 100;
  const Image c = uv::resize(step, {1, 1, 29}, 3, true);
  const Image u = uv::resize(step, {1, 1, 29}, 3, false);
  float lo = 1e9f, hi = -1e9f, ulo = 1e9f, uhi = -1e9f;
  for (int i = 0; i < 29; ++i) {
    lo = std::min(lo, c.data_as<float>()[i]);
    hi = std::max(hi, c.data_as<float>()[i]);
    ulo = std::min(ulo, u.data_as<float>()[i]);
    uhi = std::max(uhi, u.data_as<float>()[i]);
  }
  EXPECT_GE(lo, 0.0f);
  EXPECT_LE(hi, 100.0f);
  EXPECT_LT(ulo, 0.0f);  // the unclipped spline does overshoot
  EXPECT_GT(uhi, 100.0f);
}

TEST(Volumetric_Resample, separate_axis_matches_reference) {
  std::mt19937 rng(11);
  for (int axis : {0, 2}) {
    for (int order : {1, 3}) {
      const Shape s{2, 5, 8, 7};
      const uv::Shape3 m{axis == 0 ? 12 : 10, 13, axis == 2 ? 3 : 5};
      const Image img = random_volume(s, rng);
      uv::ResampleOptions o;
      o.order = order;
      o.order_z = 0;
      o.separate_axis = axis;
      const Image got = uv::resample_data(img, m, o);
      for (int64_t c = 0; c < s.c; ++c) {
        const Vol want = reference_separate(channel_of(img, c), m, axis, order);
        EXPECT_LT(max_abs_diff(channel_of(got, c), want), 2e-5)
            << "axis " << axis << " order " << order;
      }
    }
  }
}

TEST(Volumetric_Resample, segmentation_matches_reference) {
  std::mt19937 rng(3);
  for (const auto& [s, m] : std::vector<std::pair<Shape, uv::Shape3>>{
           {{1, 6, 9, 8}, {11, 4, 17}}, {{1, 12, 10, 10}, {5, 21, 9}}}) {
    // Blobs of labels -1..5 so that masks have structure (not only isolated voxels).
    Image lab = Image::zeros(DType::I16, s);
    std::uniform_int_distribution<int> label(-1, 5);
    for (int64_t z = 0; z < s.z; ++z)
      for (int64_t y = 0; y < s.y; ++y)
        for (int64_t x = 0; x < s.x; ++x)
          lab.at<int16_t>(0, z, y, x) =
              static_cast<int16_t>(((z / 2 + y / 3 + x / 2) % 7 == 0) ? label(rng) : (x / 4) % 3);
    uv::ResampleOptions o;
    o.order = 1;
    const Image got = uv::resample_segmentation(lab, m, o);
    ASSERT_EQ(got.dtype(), DType::I16);
    std::vector<int64_t> in;
    for (int64_t i = 0; i < lab.element_count(); ++i) in.push_back(lab.data_as<int16_t>()[i]);
    const auto want = reference_segmentation(in, {s.z, s.y, s.x}, m);
    int64_t differ = 0;
    for (size_t i = 0; i < want.size(); ++i) differ += got.data_as<int16_t>()[i] != want[i];
    EXPECT_EQ(differ, 0) << umamba::to_string(s);
  }
}

TEST(Volumetric_Resample, segmentation_separate_axis_takes_nearest_slices) {
  Image lab = Image::zeros(DType::U8, {1, 3, 4, 4});
  for (int64_t z = 0; z < 3; ++z)
    for (int64_t y = 0; y < 4; ++y)
      for (int64_t x = 0; x < 4; ++x) lab.at<uint8_t>(0, z, y, x) = static_cast<uint8_t>(z + 1);
  uv::ResampleOptions o;
  o.order = 1;
  o.separate_axis = 0;
  const Image got = uv::resample_segmentation(lab, {6, 8, 8}, o);
  // Slice o of 6 samples input slice floor((o + 0.5) / 2 + 0.25): 0,0,1,1,2,2.
  for (int64_t z = 0; z < 6; ++z) EXPECT_EQ(got.at<uint8_t>(0, z, 3, 5), z / 2 + 1) << z;
}

TEST(Volumetric_Resample, argmax_first_maximum_wins) {
  Image p = Image::zeros(DType::F32, {3, 1, 1, 3});
  float* v = p.data_as<float>();
  // voxel 0: class 2; voxel 1: tie 0/1 -> 0; voxel 2: class 1
  const float vals[9] = {0.1f, 0.4f, 0.2f, 0.2f, 0.4f, 0.7f, 0.7f, 0.2f, 0.1f};
  std::copy(vals, vals + 9, v);
  const Image a = uv::argmax_channels(p, DType::U8);
  EXPECT_EQ(a.data_as<uint8_t>()[0], 2);
  EXPECT_EQ(a.data_as<uint8_t>()[1], 0);
  EXPECT_EQ(a.data_as<uint8_t>()[2], 1);
}

TEST(Volumetric_Resample, errors_name_the_problem) {
  const Image img = Image::zeros(DType::F32, {1, 2, 2, 2});
  EXPECT_THROW(uv::resize(img, {2, 2, 2}, 2), umamba::Error);
  EXPECT_THROW(uv::resize(img, {0, 2, 2}, 1), umamba::Error);
  uv::ResampleOptions o;
  EXPECT_THROW(uv::resample_segmentation(img, {3, 3, 3}, o), umamba::Error);  // float labels
  o.order = 1;
  o.order_z = 1;
  o.separate_axis = 0;
  const Image lab = Image::zeros(DType::U8, {1, 2, 2, 2});
  EXPECT_THROW(uv::resample_segmentation(lab, {3, 3, 3}, o), umamba::Error);
  try {
    uv::resize(img, {2, 2, 2}, 5);
    FAIL();
  } catch (const umamba::Error& e) {
    EXPECT_NE(std::string(e.what()).find("order 5"), std::string::npos) << e.what();
  }
}
