// Exact Euclidean distance transform: see edt.h for the method and its sources.
#include "volumetric/edt.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"

namespace umamba::volumetric {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Lines along Z or Y are gathered this many neighbouring columns at a time, so that every cache
// line read from the strided axis is used whole.
constexpr int64_t kGroup = 16;

void check_arguments(const Extents& e, const Spacing& s) {
  UMAMBA_CHECK(e.z >= 1 && e.y >= 1 && e.x >= 1,
               "distance transform: extents must be positive, got {}x{}x{} (ZxYxX)", e.z, e.y, e.x);
  for (int a = 0; a < 3; ++a) {
    UMAMBA_CHECK(std::isfinite(s[a]) && s[a] > 0,
                 "distance transform: spacing of axis {} must be positive and finite, got {}", a,
                 s[a]);
  }
}

bool has_finite(const double* line, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (line[i] != kInf) return true;
  return false;
}

// Values beyond the cap can no longer end within it (later passes only add): drop them.
void drop_beyond(double* line, int64_t n, double cap) {
  if (cap == kInf) return;
  for (int64_t i = 0; i < n; ++i)
    if (line[i] > cap) line[i] = kInf;
}

// Pass along X: every row is contiguous.
void pass_x(double* data, const Extents& e, double w, double cap) {
  const int64_t n = e.x;
  const int64_t rows = e.z * e.y;
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, rows, 64), [&](const auto& range) {
    std::vector<double> f(n), zs(n + 1);
    std::vector<int64_t> v(n);
    for (int64_t r = range.begin(); r != range.end(); ++r) {
      double* line = data + r * n;
      if (!has_finite(line, n)) continue;  // all +inf stays all +inf
      std::copy(line, line + n, f.begin());
      lower_envelope_1d(f.data(), n, w, line, v.data(), zs.data());
      drop_beyond(line, n, cap);
    }
  });
}

// Pass along an axis of extent n whose elements are `stride` apart; `outer` blocks of `stride`
// contiguous columns each (Z: outer 1, stride Y*X; Y: outer Z, stride X).
void pass_strided(double* data, int64_t n, int64_t stride, int64_t outer, double w, double cap) {
  const int64_t groups_per_block = (stride + kGroup - 1) / kGroup;
  const int64_t tasks = outer * groups_per_block;
  const int64_t block = n * stride;
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, tasks, 4), [&](const auto& range) {
    std::vector<double> in(n * kGroup), out(n), zs(n + 1);
    std::vector<int64_t> v(n);
    for (int64_t t = range.begin(); t != range.end(); ++t) {
      const int64_t o = t / groups_per_block;
      const int64_t c0 = (t % groups_per_block) * kGroup;
      const int64_t g = std::min(kGroup, stride - c0);
      double* base = data + o * block + c0;
      for (int64_t i = 0; i < n; ++i) {
        const double* src = base + i * stride;
        for (int64_t j = 0; j < g; ++j) in[j * n + i] = src[j];
      }
      for (int64_t j = 0; j < g; ++j) {
        if (!has_finite(in.data() + j * n, n)) continue;  // all +inf stays all +inf
        lower_envelope_1d(in.data() + j * n, n, w, out.data(), v.data(), zs.data());
        drop_beyond(out.data(), n, cap);
        for (int64_t i = 0; i < n; ++i) base[i * stride + j] = out[i];
      }
    }
  });
}

// The first pass straight from the feature mask: along each line the nearest feature before and
// after every voxel (two sweeps), d = ((p − q)·w)², the same value the lower envelope gives for
// f ∈ {0, +inf}, without building it. Writes every voxel of `out`.
void binary_pass(const uint8_t* feature, double* out, int64_t n, int64_t stride, int64_t outer,
                 double w, double cap) {
  const int64_t groups_per_block = (stride + kGroup - 1) / kGroup;
  const int64_t tasks = outer * groups_per_block;
  const int64_t block = n * stride;
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, tasks, 4), [&](const auto& range) {
    int64_t last[kGroup];
    for (int64_t t = range.begin(); t != range.end(); ++t) {
      const int64_t o = t / groups_per_block;
      const int64_t c0 = (t % groups_per_block) * kGroup;
      const int64_t g = std::min(kGroup, stride - c0);
      const int64_t base = o * block + c0;
      std::fill(last, last + g, int64_t{-1});
      for (int64_t i = 0; i < n; ++i) {
        const uint8_t* f = feature + base + i * stride;
        double* d = out + base + i * stride;
        for (int64_t j = 0; j < g; ++j) {
          if (f[j]) last[j] = i;
          const double q = static_cast<double>(i - last[j]) * w;
          d[j] = last[j] < 0 ? kInf : q * q;
        }
      }
      std::fill(last, last + g, int64_t{-1});
      for (int64_t i = n - 1; i >= 0; --i) {
        const uint8_t* f = feature + base + i * stride;
        double* d = out + base + i * stride;
        for (int64_t j = 0; j < g; ++j) {
          if (f[j]) last[j] = i;
          if (last[j] >= 0) {
            const double q = static_cast<double>(i - last[j]) * w;
            d[j] = std::min(d[j], q * q);
          }
          if (d[j] > cap) d[j] = kInf;
        }
      }
    }
  });
}

}  // namespace

void lower_envelope_1d(const double* f, int64_t n, double w, double* d, int64_t* v, double* z) {
  const double w2 = w * w;
  int64_t k = -1;  // index of the rightmost parabola of the envelope
  for (int64_t q = 0; q < n; ++q) {
    if (f[q] == kInf) continue;
    if (k < 0) {
      k = 0;
      v[0] = q;
      z[0] = -kInf;
      z[1] = kInf;
      continue;
    }
    double s = 0;
    for (;;) {
      const int64_t r = v[k];
      // Intersection of the parabolas rooted at r and q, in index units.
      s = ((f[q] - f[r]) + w2 * static_cast<double>(q - r) * static_cast<double>(q + r)) /
          (2.0 * w2 * static_cast<double>(q - r));
      if (s <= z[k] && k > 0) {
        --k;
      } else {
        break;
      }
    }
    if (s <= z[k]) {  // k == 0 and q's parabola lies below r's everywhere
      v[0] = q;
      continue;
    }
    ++k;
    v[k] = q;
    z[k] = s;
    z[k + 1] = kInf;
  }
  if (k < 0) {
    std::fill(d, d + n, kInf);
    return;
  }
  int64_t j = 0;
  for (int64_t p = 0; p < n; ++p) {
    while (z[j + 1] < static_cast<double>(p)) ++j;
    const double t = static_cast<double>(p - v[j]) * w;
    d[p] = f[v[j]] + t * t;
  }
}

void squared_distance_transform(const uint8_t* feature, const Extents& e, const Spacing& s,
                                double* out, double max_distance) {
  check_arguments(e, s);
  UMAMBA_CHECK(max_distance >= 0, "distance transform: max_distance must be >= 0, got {}",
               max_distance);
  const int64_t count = e.count();
  const double cap = max_distance * max_distance * (1 + 1e-12);
  // The first axis longer than one voxel starts from the mask; the others refine.
  if (e.z > 1) {
    binary_pass(feature, out, e.z, e.y * e.x, 1, s[0], cap);
  } else if (e.y > 1) {
    binary_pass(feature, out, e.y, e.x, e.z, s[1], cap);
  } else if (e.x > 1) {
    binary_pass(feature, out, e.x, 1, e.z * e.y, s[2], cap);
  } else {
    out[0] = feature[0] ? 0.0 : kInf;
  }
  (void)count;
  if (e.z > 1 && e.y > 1) pass_strided(out, e.y, e.x, e.z, s[1], cap);
  if ((e.z > 1 || e.y > 1) && e.x > 1) pass_x(out, e, s[2], cap);
}

void distance_transform(const uint8_t* feature, const Extents& e, const Spacing& s, double* out) {
  squared_distance_transform(feature, e, s, out);
  const int64_t count = e.count();
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, count, 1 << 16), [&](const auto& range) {
    for (int64_t i = range.begin(); i != range.end(); ++i) out[i] = std::sqrt(out[i]);
  });
}

}  // namespace umamba::volumetric
