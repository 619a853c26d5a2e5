// Plain reference implementations and input generators for the post-processing tests.
//
// flood_fill_label is the naive labeller every fast path is compared against: a breadth-first
// flood fill started at each unlabelled foreground pixel in raster order, so its numbering is the
// raster order of each component's first pixel.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "postprocess/ccl.h"

namespace umamba::test {

using postprocess::Extents;

// All offsets (dz, dy, dx) of a neighbourhood: 4/8 in-plane, 6/18/26 in 3D (as in ccl.h, 6 means
// 4 and 18/26 mean 8 on a 2D image).
inline std::vector<std::array<int, 3>> neighbourhood(int connectivity, bool is_3d) {
  if (!is_3d) {
    if (connectivity == 6) connectivity = 4;
    if (connectivity == 18 || connectivity == 26) connectivity = 8;
  }
  std::vector<std::array<int, 3>> out;
  for (int dz = -1; dz <= 1; ++dz)
    for (int dy = -1; dy <= 1; ++dy)
      for (int dx = -1; dx <= 1; ++dx) {
        const int l1 = std::abs(dz) + std::abs(dy) + std::abs(dx);
        if (l1 == 0) continue;
        if ((connectivity == 4 || connectivity == 8) && dz != 0) continue;
        if ((connectivity == 4 || connectivity == 6) && l1 > 1) continue;
        if (connectivity == 18 && l1 > 2) continue;
        out.push_back({dz, dy, dx});
      }
  return out;
}

template <typename T>
std::vector<uint32_t> flood_fill_label(const std::vector<T>& in, const Extents& e, int connectivity,
                                       bool multi_label, uint32_t* count = nullptr) {
  const auto offsets = neighbourhood(connectivity, e.z > 1);
  std::vector<uint32_t> out(in.size(), 0);
  uint32_t n = 0;
  std::deque<int64_t> queue;
  for (int64_t start = 0; start < e.pixels(); ++start) {
    if (in[start] == 0 || out[start] != 0) continue;
    out[start] = ++n;
    queue.push_back(start);
    while (!queue.empty()) {
      const int64_t p = queue.front();
      queue.pop_front();
      const int64_t z = p / (e.y * e.x), y = (p / e.x) % e.y, x = p % e.x;
      for (const auto& d : offsets) {
        const int64_t zz = z + d[0], yy = y + d[1], xx = x + d[2];
        if (zz < 0 || zz >= e.z || yy < 0 || yy >= e.y || xx < 0 || xx >= e.x) continue;
        const int64_t q = (zz * e.y + yy) * e.x + xx;
        if (in[q] == 0 || out[q] != 0) continue;
        if (multi_label && in[q] != in[p]) continue;
        out[q] = n;
        queue.push_back(q);
      }
    }
  }
  if (count) *count = n;
  return out;
}

// Bernoulli noise: each pixel is foreground with probability `density`; foreground values are 1,
// or uniform in 1..labels when labels > 1.
template <typename T>
std::vector<T> random_image(const Extents& e, double density, uint32_t seed, int labels = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::uniform_int_distribution<int> v(1, std::max(1, labels));
  std::vector<T> out(static_cast<size_t>(e.pixels()), T{0});
  for (auto& p : out)
    if (u(rng) < density) p = static_cast<T>(v(rng));
  return out;
}

// Blobs: noise smoothed with a box filter of radius r (separable), thresholded at `level`
// (0..1): irregular objects a few r across, with long runs. With labels > 1 the foreground is cut
// into regions of values 1..labels along the smooth field.
template <typename T>
std::vector<T> blob_image(const Extents& e, int r, double level, uint32_t seed, int labels = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> f(static_cast<size_t>(e.pixels()));
  for (auto& p : f) p = u(rng);
  auto blur_axis = [&](int64_t n, int64_t stride, int64_t count_outer, auto index_of) {
    std::vector<float> line(static_cast<size_t>(n));
    for (int64_t o = 0; o < count_outer; ++o) {
      const int64_t base = index_of(o);
      for (int64_t i = 0; i < n; ++i) {
        float s = 0;
        int c = 0;
        for (int64_t k = std::max<int64_t>(0, i - r); k <= std::min<int64_t>(n - 1, i + r); ++k) {
          s += f[base + k * stride];
          ++c;
        }
        line[i] = s / c;
      }
      for (int64_t i = 0; i < n; ++i) f[base + i * stride] = line[i];
    }
  };
  // X lines, then Y lines, then Z lines.
  blur_axis(e.x, 1, e.z * e.y, [&](int64_t o) { return o * e.x; });
  blur_axis(e.y, e.x, e.z * e.x, [&](int64_t o) { return (o / e.x) * e.y * e.x + (o % e.x); });
  if (e.z > 1) blur_axis(e.z, e.y * e.x, e.y * e.x, [&](int64_t o) { return o; });
  std::vector<float> sorted = f;
  const size_t k = std::min(sorted.size() - 1, static_cast<size_t>(level * sorted.size()));
  std::nth_element(sorted.begin(), sorted.begin() + k, sorted.end());
  const float threshold = sorted[k];
  // Multi-label: the smooth field cut into bands of values, so that equal values form regions.
  std::vector<T> out(f.size(), T{0});
  for (size_t i = 0; i < f.size(); ++i)
    if (f[i] > threshold)
      out[i] =
          static_cast<T>(labels > 1 ? 1 + static_cast<int>((f[i] - threshold) * 300) % labels : 1);
  return out;
}

}  // namespace umamba::test
