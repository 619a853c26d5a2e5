// Resampling to a target shape: see resample.h for the semantics, the method and its sources.
#include "volumetric/resample.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <vector>

#include "core/error.h"
#include "core/memory.h"

namespace umamba::volumetric {

namespace {

// SciPy pads lines by this many edge voxels before the spline prefilter in mode "nearest"
// (scipy.ndimage._interpolation._prepad_for_spline_filter).
constexpr int64_t kSplinePad = 12;

// Neighbouring lines of a strided axis processed together (every cache line read is used whole).
constexpr int64_t kGroup = 16;

// Where each output voxel of one axis reads its input, and with which weights.
struct AxisTaps {
  int order = 1;
  int64_t n_in = 1, n_out = 1;
  // order 0/1: out[o] = w0·in[i0] + w1·in[i1] (indices clamped to the axis)
  std::vector<int64_t> i0, i1;
  std::vector<double> w0, w1;
  // order 3: out[o] = Σ_k w3[o][k]·c[base[o] + k], c = prefiltered line padded by kSplinePad
  std::vector<int64_t> base;
  std::vector<std::array<double, 4>> w3;
};

// The sample position of output voxel o (scipy.ndimage.zoom, grid_mode=True).
double sample_position(int64_t o, double zoom) {
  return (static_cast<double>(o) + 0.5) * zoom - 0.5;
}

AxisTaps make_taps(int64_t n, int64_t m, int order) {
  AxisTaps t;
  t.order = order;
  t.n_in = n;
  t.n_out = m;
  const double zoom = static_cast<double>(n) / static_cast<double>(m);
  auto clamp = [n](int64_t i) { return std::clamp<int64_t>(i, 0, n - 1); };
  if (order == 3) {
    t.base.resize(static_cast<size_t>(m));
    t.w3.resize(static_cast<size_t>(m));
    for (int64_t o = 0; o < m; ++o) {
      const double x = sample_position(o, zoom) + static_cast<double>(kSplinePad);
      const double f = std::floor(x);
      const double u = x - f;
      const double v = 1.0 - u;
      t.base[static_cast<size_t>(o)] = static_cast<int64_t>(f) - 1;
      // Cubic B-spline weights of the taps floor(x) - 1 .. floor(x) + 2.
      t.w3[static_cast<size_t>(o)] = {v * v * v / 6.0, (3.0 * u * u * u - 6.0 * u * u + 4.0) / 6.0,
                                      (3.0 * v * v * v - 6.0 * v * v + 4.0) / 6.0, u * u * u / 6.0};
    }
    return t;
  }
  t.i0.resize(static_cast<size_t>(m));
  t.i1.resize(static_cast<size_t>(m));
  t.w0.resize(static_cast<size_t>(m));
  t.w1.resize(static_cast<size_t>(m));
  for (int64_t o = 0; o < m; ++o) {
    const double x = sample_position(o, zoom);
    const size_t k = static_cast<size_t>(o);
    if (order == 0) {
      t.i0[k] = t.i1[k] = clamp(static_cast<int64_t>(std::floor(x + 0.5)));
      t.w0[k] = 1.0;
      t.w1[k] = 0.0;
    } else {
      const double f = std::floor(x);
      const double u = x - f;
      t.i0[k] = clamp(static_cast<int64_t>(f));
      t.i1[k] = clamp(static_cast<int64_t>(f) + 1);
      t.w0[k] = 1.0 - u;
      t.w1[k] = u;
    }
  }
  return t;
}

// The outputs [lo, hi) of an order-0/1 axis whose taps touch input [a, b], and the input range
// [in_lo, in_hi] those outputs read. Empty (lo == hi) when none does.
struct Reach {
  int64_t lo = 0, hi = 0, in_lo = 0, in_hi = -1;
};
Reach reach(const AxisTaps& t, int64_t a, int64_t b) {
  Reach r;
  r.lo = t.n_out;
  r.hi = 0;
  for (int64_t o = 0; o < t.n_out; ++o) {
    const size_t k = static_cast<size_t>(o);
    const bool touches = (t.i0[k] >= a && t.i0[k] <= b && t.w0[k] != 0.0) ||
                         (t.i1[k] >= a && t.i1[k] <= b && t.w1[k] != 0.0);
    if (touches) {
      r.lo = std::min(r.lo, o);
      r.hi = std::max(r.hi, o + 1);
    }
  }
  if (r.lo >= r.hi) return Reach{};
  r.in_lo = t.n_in;
  r.in_hi = -1;
  for (int64_t o = r.lo; o < r.hi; ++o) {
    const size_t k = static_cast<size_t>(o);
    r.in_lo = std::min({r.in_lo, t.i0[k], t.i1[k]});
    r.in_hi = std::max({r.in_hi, t.i0[k], t.i1[k]});
  }
  return r;
}

// The taps of outputs [lo, hi) re-based to read an input that starts at in_lo and has n voxels.
AxisTaps restrict_taps(const AxisTaps& t, int64_t lo, int64_t hi, int64_t in_lo, int64_t n) {
  AxisTaps r;
  r.order = t.order;
  r.n_in = n;
  r.n_out = hi - lo;
  for (int64_t o = lo; o < hi; ++o) {
    const size_t k = static_cast<size_t>(o);
    r.i0.push_back(t.i0[k] - in_lo);
    r.i1.push_back(t.i1[k] - in_lo);
    r.w0.push_back(t.w0[k]);
    r.w1.push_back(t.w1[k]);
  }
  return r;
}

// In-place cubic B-spline prefilter of `g` interleaved lines of length n (element (p, j) at
// line[p * g + j]) with mirror boundary conditions, as scipy.ndimage's NI_SplineFilter1D (gain,
// causal initialisation by the full mirrored sum, causal and anticausal recursions).
void spline_prefilter(double* line, int64_t n, int64_t g) {
  if (n < 2) return;
  const double z = std::sqrt(3.0) - 2.0;
  const double gain = (1.0 - z) * (1.0 - 1.0 / z);
  for (int64_t p = 0; p < n * g; ++p) line[p] *= gain;
  const double z_n_1 = std::pow(z, static_cast<double>(n - 1));
  for (int64_t j = 0; j < g; ++j) {
    double c0 = line[j] + z_n_1 * line[(n - 1) * g + j];
    double zi = z;
    for (int64_t i = 1; i < n - 1; ++i) {
      c0 += zi * (line[i * g + j] + z_n_1 * line[(n - 1 - i) * g + j]);
      zi *= z;
    }
    line[j] = c0 / (1.0 - z_n_1 * z_n_1);
  }
  for (int64_t i = 1; i < n; ++i)
    for (int64_t j = 0; j < g; ++j) line[i * g + j] += z * line[(i - 1) * g + j];
  for (int64_t j = 0; j < g; ++j) {
    double& last = line[(n - 1) * g + j];
    last = (z * line[(n - 2) * g + j] + last) * z / (z * z - 1.0);
  }
  for (int64_t i = n - 2; i >= 0; --i)
    for (int64_t j = 0; j < g; ++j) line[i * g + j] = z * (line[(i + 1) * g + j] - line[i * g + j]);
}

// One pass along an axis: `in` is [outer, t.n_in, inner], `out` [outer, t.n_out, inner], float32
// (images) or double (segmentation masks, where 0.5 ties must be decided as in float64)
// contiguous. Lines run in parallel, kGroup neighbouring lines (along `inner`) at a time.
template <typename T>
void resize_axis(const T* in, T* out, int64_t outer, int64_t inner, const AxisTaps& t) {
  const int64_t n = t.n_in, m = t.n_out;
  const int64_t groups = (inner + kGroup - 1) / kGroup;
  const bool cubic = t.order == 3;
  const int64_t padded = cubic ? n + 2 * kSplinePad : n;
  tbb::parallel_for(
      tbb::blocked_range<int64_t>(0, outer * groups, 1), [&](const tbb::blocked_range<int64_t>& r) {
        std::vector<double> buf(static_cast<size_t>(padded * kGroup));
        for (int64_t job = r.begin(); job != r.end(); ++job) {
          const int64_t oi = job / groups;
          const int64_t j0 = (job % groups) * kGroup;
          const int64_t g = std::min(kGroup, inner - j0);
          const T* src = in + oi * n * inner + j0;
          T* dst = out + oi * m * inner + j0;
          double* b = buf.data();
          if (cubic) {
            for (int64_t p = 0; p < padded; ++p) {
              const int64_t i = std::clamp<int64_t>(p - kSplinePad, 0, n - 1);
              for (int64_t j = 0; j < g; ++j) b[p * g + j] = src[i * inner + j];
            }
            spline_prefilter(b, padded, g);
            for (int64_t o = 0; o < m; ++o) {
              const auto& w = t.w3[static_cast<size_t>(o)];
              const double* c = b + t.base[static_cast<size_t>(o)] * g;
              for (int64_t j = 0; j < g; ++j) {
                dst[o * inner + j] = static_cast<T>(w[0] * c[j] + w[1] * c[g + j] +
                                                    w[2] * c[2 * g + j] + w[3] * c[3 * g + j]);
              }
            }
          } else {
            for (int64_t i = 0; i < n; ++i)
              for (int64_t j = 0; j < g; ++j) b[i * g + j] = src[i * inner + j];
            for (int64_t o = 0; o < m; ++o) {
              const size_t k = static_cast<size_t>(o);
              const double* c0 = b + t.i0[k] * g;
              const double* c1 = b + t.i1[k] * g;
              const double w0 = t.w0[k], w1 = t.w1[k];
              for (int64_t j = 0; j < g; ++j)
                dst[o * inner + j] = static_cast<T>(w0 * c0[j] + w1 * c1[j]);
            }
          }
        }
      });
}

void check_order(int order, const char* what) {
  UMAMBA_CHECK(order == 0 || order == 1 || order == 3,
               "{}: interpolation order {} is not supported (0, 1 or 3)", what, order);
}

void check_shape(const Shape3& shape, const char* what) {
  for (int a = 0; a < 3; ++a) {
    UMAMBA_CHECK(shape[a] >= 1, "{}: target size of axis {} (ZYX) must be at least 1, got {}", what,
                 a, shape[a]);
  }
}

// A float32 contiguous copy of `image` (any dtype and strides).
Image to_float(const Image& image) {
  if (image.dtype() == DType::F32 && image.is_contiguous()) return image;
  Image f = Image::zeros(DType::F32, image.shape(), image.geometry());
  f.copy_from(image);
  return f;
}

// Resizes a contiguous [C, dims] buffer axis by axis with the given taps (nullptr: axis
// unchanged). Returns the final buffer [C, out dims].
template <typename T>
std::vector<T> resize_axes(std::vector<T> data, int64_t c, Shape3 dims,
                           const std::array<const AxisTaps*, 3>& taps) {
  std::vector<T> next;
  for (int a = 0; a < 3; ++a) {
    const AxisTaps* t = taps[static_cast<size_t>(a)];
    if (t == nullptr) continue;
    int64_t outer = c, inner = 1;
    for (int b = 0; b < a; ++b) outer *= dims[static_cast<size_t>(b)];
    for (int b = a + 1; b < 3; ++b) inner *= dims[static_cast<size_t>(b)];
    const int64_t count = outer * t->n_out * inner;
    checked_allocation_size(static_cast<uint64_t>(count), sizeof(T), "resampling buffer");
    next.assign(static_cast<size_t>(count), T(0));
    resize_axis(data.data(), next.data(), outer, inner, *t);
    data.swap(next);
    dims[static_cast<size_t>(a)] = t->n_out;
  }
  return data;
}

Geometry scaled_geometry(const Geometry& g, const Shape3& from, const Shape3& to) {
  Geometry out = g;
  for (int a = 0; a < 3; ++a) {
    out.spacing[static_cast<size_t>(a)] = g.spacing[static_cast<size_t>(a)] *
                                          static_cast<double>(from[static_cast<size_t>(a)]) /
                                          static_cast<double>(to[static_cast<size_t>(a)]);
  }
  return out;
}

Shape3 dims_of(const Image& image) {
  return {image.shape().z, image.shape().y, image.shape().x};
}

// The resize of a float32 contiguous image; `clip_axis` -1: clip per channel, 0-2: clip per
// channel and slice across that axis (whose size must not change), `clip` false: no clipping.
Image resize_float(const Image& f, const Shape3& shape, int order, bool clip, int clip_axis) {
  const Shape s = f.shape();
  const Shape3 dims = dims_of(f);
  std::array<AxisTaps, 3> taps;
  std::array<const AxisTaps*, 3> use{nullptr, nullptr, nullptr};
  for (int a = 0; a < 3; ++a) {
    const size_t k = static_cast<size_t>(a);
    if (dims[k] == shape[k]) continue;  // zoom 1 reproduces the samples
    taps[k] = make_taps(dims[k], shape[k], order);
    use[k] = &taps[k];
  }
  const float* p = f.data_as<float>();
  std::vector<float> data(p, p + s.elements());
  std::vector<float> out = resize_axes(std::move(data), s.c, dims, use);
  Image result = Image::zeros(DType::F32, {s.c, shape[0], shape[1], shape[2]},
                              scaled_geometry(f.geometry(), dims, shape));
  std::copy(out.begin(), out.end(), result.data_as<float>());
  if (!clip || order == 0 || order == 1) return result;  // convex weights stay in range
  // Ranges of the input: per channel, or per channel and slice across clip_axis.
  const int64_t slices = clip_axis < 0 ? 1 : dims[static_cast<size_t>(clip_axis)];
  std::vector<float> lo(static_cast<size_t>(s.c * slices), std::numeric_limits<float>::infinity());
  std::vector<float> hi(lo.size(), -std::numeric_limits<float>::infinity());
  auto slice_of = [&](int64_t z, int64_t y, int64_t x) -> int64_t {
    return clip_axis == 0 ? z : clip_axis == 1 ? y : clip_axis == 2 ? x : 0;
  };
  for (int64_t c = 0; c < s.c; ++c)
    for (int64_t z = 0; z < s.z; ++z)
      for (int64_t y = 0; y < s.y; ++y)
        for (int64_t x = 0; x < s.x; ++x) {
          const float v = p[((c * s.z + z) * s.y + y) * s.x + x];
          if (std::isnan(v)) continue;  // NumPy's nanmin/nanmax when NaN is present
          const size_t k = static_cast<size_t>(c * slices + slice_of(z, y, x));
          lo[k] = std::min(lo[k], v);
          hi[k] = std::max(hi[k], v);
        }
  float* q = result.data_as<float>();
  const Shape rs = result.shape();
  tbb::parallel_for(int64_t{0}, rs.c * rs.z, [&](int64_t cz) {
    const int64_t c = cz / rs.z, z = cz % rs.z;
    for (int64_t y = 0; y < rs.y; ++y)
      for (int64_t x = 0; x < rs.x; ++x) {
        const size_t k = static_cast<size_t>(c * slices + slice_of(z, y, x));
        float& v = q[((c * rs.z + z) * rs.y + y) * rs.x + x];
        if (lo[k] <= hi[k]) v = std::clamp(v, lo[k], hi[k]);
      }
  });
  return result;
}

// map_coordinates along one axis (order 0 or 1, mode "nearest"): float32 [C, dims] -> the axis
// resized to m.
Image resize_one_axis(const Image& f, int axis, int64_t m, int order) {
  Shape3 shape = dims_of(f);
  shape[static_cast<size_t>(axis)] = m;
  return resize_float(f, shape, order, false, -1);
}

}  // namespace

Shape3 target_shape(const Shape3& shape, const Spacing3& spacing, const Spacing3& new_spacing) {
  Shape3 out{};
  for (int a = 0; a < 3; ++a) {
    const size_t k = static_cast<size_t>(a);
    UMAMBA_CHECK(std::isfinite(spacing[k]) && spacing[k] > 0 && std::isfinite(new_spacing[k]) &&
                     new_spacing[k] > 0,
                 "target shape: spacings must be positive and finite, axis {} (ZYX) has {} -> {}",
                 a, spacing[k], new_spacing[k]);
    // NumPy: np.round((old_spacing / new_spacing) * old_shape), half to even.
    const double v = (spacing[k] / new_spacing[k]) * static_cast<double>(shape[k]);
    out[k] = std::max<int64_t>(1, static_cast<int64_t>(std::nearbyint(v)));
  }
  return out;
}

bool is_anisotropic(const Spacing3& s, double threshold) {
  const double mx = std::max({s[0], s[1], s[2]});
  const double mn = std::min({s[0], s[1], s[2]});
  return mx / mn > threshold;
}

int separate_z_axis(const Spacing3& current, const Spacing3& target, double threshold) {
  const Spacing3* s = is_anisotropic(current, threshold)  ? &current
                      : is_anisotropic(target, threshold) ? &target
                                                          : nullptr;
  if (s == nullptr) return -1;
  const double mx = std::max({(*s)[0], (*s)[1], (*s)[2]});
  int axis = -1, count = 0;
  for (int a = 0; a < 3; ++a) {
    if (mx / (*s)[static_cast<size_t>(a)] == 1.0) {  // nnU-Net's get_lowres_axis
      axis = a;
      ++count;
    }
  }
  return count == 1 ? axis : -1;
}

Image resize(const Image& image, const Shape3& shape, int order, bool clip) {
  check_order(order, "resize");
  check_shape(shape, "resize");
  UMAMBA_CHECK(!image.empty(), "resize: the image is empty");
  return resize_float(to_float(image), shape, order, clip, -1);
}

Image resample_data(const Image& image, const Shape3& shape, const ResampleOptions& options) {
  check_order(options.order, "resample");
  UMAMBA_CHECK(options.order_z == 0 || options.order_z == 1,
               "resample: order along the separate axis must be 0 or 1, got {}", options.order_z);
  UMAMBA_CHECK(options.separate_axis >= -1 && options.separate_axis <= 2,
               "resample: separate axis must be -1, 0, 1 or 2, got {}", options.separate_axis);
  check_shape(shape, "resample");
  UMAMBA_CHECK(!image.empty(), "resample: the image is empty");
  const Image f = to_float(image);
  const Shape3 dims = dims_of(f);
  if (dims == shape) return f.data() == image.data() ? f.clone() : f;
  const int a = options.separate_axis;
  if (a < 0) return resize_float(f, shape, options.order, true, -1);
  // In-plane per slice (clipped per slice), then the separate axis.
  Shape3 plane = shape;
  plane[static_cast<size_t>(a)] = dims[static_cast<size_t>(a)];
  Image in_plane = resize_float(f, plane, options.order, true, a);
  if (plane == shape) return in_plane;
  Image out = resize_one_axis(in_plane, a, shape[static_cast<size_t>(a)], options.order_z);
  out.geometry() = scaled_geometry(image.geometry(), dims, shape);
  return out;
}

Image resample_segmentation(const Image& labels, const Shape3& shape,
                            const ResampleOptions& options) {
  UMAMBA_CHECK(options.order == 0 || options.order == 1,
               "resample segmentation: one-hot order {} is not supported (0 or 1)", options.order);
  UMAMBA_CHECK(options.separate_axis >= -1 && options.separate_axis <= 2,
               "resample segmentation: separate axis must be -1, 0, 1 or 2, got {}",
               options.separate_axis);
  UMAMBA_CHECK(options.order_z == 0,
               "resample segmentation: labels along the separate axis are taken by nearest "
               "(order_z 0, nnU-Net's default); order_z {} is not supported",
               options.order_z);
  check_shape(shape, "resample segmentation");
  UMAMBA_CHECK(!labels.empty() && labels.channels() == 1,
               "resample segmentation: expected one channel of labels, got {}",
               to_string(labels.shape()));
  UMAMBA_CHECK(!dtype_is_float(labels.dtype()),
               "resample segmentation: labels must be integers, got {}",
               dtype_name(labels.dtype()));
  const Shape3 dims = dims_of(labels);
  const Geometry geometry = scaled_geometry(labels.geometry(), dims, shape);
  if (dims == shape) {
    Image same = labels.clone();
    same.geometry() = geometry;
    return same;
  }
  const Shape s = labels.shape();
  const int64_t n = s.pixels();
  // Labels as int64 with each label's bounding box.
  std::vector<int64_t> lab(static_cast<size_t>(n));
  visit_dtype(labels.dtype(), [&](auto tag) {
    using T = decltype(tag);
    int64_t i = 0;
    for (int64_t z = 0; z < s.z; ++z)
      for (int64_t y = 0; y < s.y; ++y)
        for (int64_t x = 0; x < s.x; ++x) lab[static_cast<size_t>(i++)] = labels.at<T>(0, z, y, x);
  });
  struct Bbox {
    Shape3 lo{INT64_MAX, INT64_MAX, INT64_MAX};
    Shape3 hi{-1, -1, -1};
  };
  std::map<int64_t, Bbox> boxes;  // sorted: nnU-Net's np.unique order
  {
    int64_t i = 0;
    for (int64_t z = 0; z < s.z; ++z)
      for (int64_t y = 0; y < s.y; ++y)
        for (int64_t x = 0; x < s.x; ++x) {
          Bbox& b = boxes[lab[static_cast<size_t>(i++)]];
          const Shape3 p{z, y, x};
          for (size_t k = 0; k < 3; ++k) {
            b.lo[k] = std::min(b.lo[k], p[k]);
            b.hi[k] = std::max(b.hi[k], p[k]);
          }
        }
  }
  const int a = options.separate_axis;
  // The one-hot pass: all axes, or the in-plane axes when an axis is separate.
  Shape3 first = shape;
  if (a >= 0) first[static_cast<size_t>(a)] = dims[static_cast<size_t>(a)];
  std::array<AxisTaps, 3> taps;
  for (size_t k = 0; k < 3; ++k) {
    // An unchanged axis: order-0 taps are the identity.
    taps[k] = make_taps(dims[k], first[k], dims[k] == first[k] ? 0 : options.order);
  }
  std::vector<int64_t> out(static_cast<size_t>(first[0] * first[1] * first[2]), 0);
  const bool only_skippable_zero = !boxes.empty() && boxes.begin()->first == 0;
  for (const auto& [value, box] : boxes) {
    // Label 0 as the smallest label writes 0 over zeros: nothing to do.
    if (value == 0 && only_skippable_zero) continue;
    std::array<Reach, 3> r;
    bool empty = false;
    for (size_t k = 0; k < 3; ++k) {
      r[k] = reach(taps[k], box.lo[k], box.hi[k]);
      empty = empty || r[k].lo >= r[k].hi;
    }
    if (empty) continue;
    const Shape3 sub{r[0].in_hi - r[0].in_lo + 1, r[1].in_hi - r[1].in_lo + 1,
                     r[2].in_hi - r[2].in_lo + 1};
    std::vector<double> mask(static_cast<size_t>(sub[0] * sub[1] * sub[2]));
    for (int64_t z = 0; z < sub[0]; ++z)
      for (int64_t y = 0; y < sub[1]; ++y)
        for (int64_t x = 0; x < sub[2]; ++x) {
          const int64_t src = ((z + r[0].in_lo) * s.y + (y + r[1].in_lo)) * s.x + (x + r[2].in_lo);
          mask[static_cast<size_t>((z * sub[1] + y) * sub[2] + x)] =
              lab[static_cast<size_t>(src)] == value ? 1.0 : 0.0;
        }
    std::array<AxisTaps, 3> local;
    std::array<const AxisTaps*, 3> use{};
    for (size_t k = 0; k < 3; ++k) {
      local[k] = restrict_taps(taps[k], r[k].lo, r[k].hi, r[k].in_lo, sub[k]);
      use[k] = &local[k];
    }
    const std::vector<double> hot = resize_axes(std::move(mask), 1, sub, use);
    const Shape3 od{r[0].hi - r[0].lo, r[1].hi - r[1].lo, r[2].hi - r[2].lo};
    for (int64_t z = 0; z < od[0]; ++z)
      for (int64_t y = 0; y < od[1]; ++y)
        for (int64_t x = 0; x < od[2]; ++x) {
          if (hot[static_cast<size_t>((z * od[1] + y) * od[2] + x)] >= 0.5) {
            out[static_cast<size_t>(((z + r[0].lo) * first[1] + (y + r[1].lo)) * first[2] + x +
                                    r[2].lo)] = value;
          }
        }
  }
  // Along the separate axis: nearest labels (map_coordinates order 0, mode "nearest").
  Image result = Image::zeros(labels.dtype(), {1, shape[0], shape[1], shape[2]}, geometry);
  std::vector<int64_t> index(static_cast<size_t>(shape[static_cast<size_t>(a < 0 ? 0 : a)]));
  if (a >= 0) {
    const AxisTaps t = make_taps(dims[static_cast<size_t>(a)], shape[static_cast<size_t>(a)], 0);
    for (size_t o = 0; o < index.size(); ++o) index[o] = t.i0[o];
  }
  visit_dtype(labels.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* q = result.data_as<T>();
    for (int64_t z = 0; z < shape[0]; ++z)
      for (int64_t y = 0; y < shape[1]; ++y)
        for (int64_t x = 0; x < shape[2]; ++x) {
          Shape3 p{z, y, x};
          if (a >= 0)
            p[static_cast<size_t>(a)] = index[static_cast<size_t>(p[static_cast<size_t>(a)])];
          q[(z * shape[1] + y) * shape[2] + x] =
              static_cast<T>(out[static_cast<size_t>((p[0] * first[1] + p[1]) * first[2] + p[2])]);
        }
  });
  return result;
}

Image argmax_channels(const Image& probabilities, DType dtype) {
  UMAMBA_CHECK(dtype == DType::U8 || dtype == DType::U16,
               "argmax: class maps are u8 or u16, got {}", dtype_name(dtype));
  const Image p = to_float(probabilities);
  const Shape s = p.shape();
  UMAMBA_CHECK(s.c <= (dtype == DType::U8 ? 256 : 65536), "argmax: {} classes do not fit {}", s.c,
               dtype_name(dtype));
  Image out = Image::zeros(dtype, {1, s.z, s.y, s.x}, p.geometry());
  const float* src = p.data_as<float>();
  const int64_t n = s.pixels();
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, uint8_t> || std::is_same_v<T, uint16_t>) {
      T* dst = out.data_as<T>();
      tbb::parallel_for(tbb::blocked_range<int64_t>(0, n, 1 << 14), [&](const auto& r) {
        for (int64_t i = r.begin(); i != r.end(); ++i) {
          int64_t best = 0;
          float bv = src[i];
          for (int64_t c = 1; c < s.c; ++c) {
            const float v = src[c * n + i];
            if (v > bv) {
              bv = v;
              best = c;
            }
          }
          dst[i] = static_cast<T>(best);
        }
      });
    }
  });
  return out;
}

}  // namespace umamba::volumetric
