// Per-label DSC and NSD: see label_scores.h for the definitions and their sources.
#include "metrics/label_scores.h"

#include <tbb/blocked_range.h>
#include <tbb/combinable.h>
#include <tbb/parallel_for.h>
#include <tbb/parallel_reduce.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "metrics/label_map.h"
#include "volumetric/edt.h"
#include "volumetric/surface.h"

namespace umamba::metrics {

namespace {

namespace uv = umamba::volumetric;

constexpr int64_t kMaxLabel = int64_t{1} << 20;

struct Stats {
  std::vector<int64_t> g, p, both;  // voxel counts per label id
  // Bounding box of each label in either image: min and max (inclusive) of z, y, x.
  std::vector<std::array<int64_t, 6>> box;
};

int64_t max_label(const Image& image, const char* what) {
  // Unsigned 8- and 16-bit labels need no scan: their range bounds the tables.
  if (image.dtype() == DType::U8) return 255;
  if (image.dtype() == DType::U16) return 65535;
  const Image ch = image.channel(0);
  const Shape s = ch.shape(), st = ch.strides();
  return detail::visit_labels(image, [&](auto tag) {
    using T = decltype(tag);
    const T* base = ch.data_as<T>();
    struct MM {
      int64_t lo = 0, hi = 0;
    };
    tbb::combinable<MM> mm;
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, s.z * s.y, 16), [&](const auto& range) {
      MM& m = mm.local();
      T lo = 0, hi = 0;
      for (int64_t r = range.begin(); r != range.end(); ++r) {
        const T* row = base + (r / s.y) * st.z + (r % s.y) * st.y;
        if (st.x == 1) {
          for (int64_t x = 0; x < s.x; ++x) lo = std::min(lo, row[x]), hi = std::max(hi, row[x]);
        } else {
          for (int64_t x = 0; x < s.x; ++x)
            lo = std::min(lo, row[x * st.x]), hi = std::max(hi, row[x * st.x]);
        }
      }
      m.lo = std::min(m.lo, static_cast<int64_t>(lo));
      m.hi = std::max(m.hi, static_cast<int64_t>(hi));
    });
    MM all;
    mm.combine_each([&](const MM& m) {
      all.lo = std::min(all.lo, m.lo);
      all.hi = std::max(all.hi, m.hi);
    });
    UMAMBA_CHECK(all.lo >= 0, "{}: labels must be >= 0, found {}", what, all.lo);
    UMAMBA_CHECK(all.hi <= kMaxLabel, "{}: label {} exceeds the largest supported label {}", what,
                 all.hi, kMaxLabel);
    return all.hi;
  });
}

Stats label_stats(const Image& gt, const Image& pred, int64_t n) {
  const Image g0 = gt.channel(0), p0 = pred.channel(0);
  const Shape s = g0.shape();
  constexpr int64_t kBig = std::numeric_limits<int64_t>::max();
  auto fresh = [&] {
    Stats st;
    st.g.assign(n + 1, 0);
    st.p.assign(n + 1, 0);
    st.both.assign(n + 1, 0);
    st.box.assign(n + 1, {kBig, kBig, kBig, -1, -1, -1});
    return st;
  };
  tbb::combinable<Stats> locals(fresh);
  detail::visit_labels(gt, [&](auto tg) {
    using TG = decltype(tg);
    detail::visit_labels(pred, [&](auto tp) {
      using TP = decltype(tp);
      const TG* gb = g0.data_as<TG>();
      const TP* pb = p0.data_as<TP>();
      const Shape gs = g0.strides(), ps = p0.strides();
      tbb::parallel_for(tbb::blocked_range<int64_t>(0, s.z * s.y, 8), [&](const auto& range) {
        Stats& st = locals.local();
        auto grow = [&](int64_t l, int64_t z, int64_t y, int64_t x) {
          auto& b = st.box[l];
          b[0] = std::min(b[0], z), b[1] = std::min(b[1], y), b[2] = std::min(b[2], x);
          b[3] = std::max(b[3], z), b[4] = std::max(b[4], y), b[5] = std::max(b[5], x);
        };
        for (int64_t r = range.begin(); r != range.end(); ++r) {
          const int64_t z = r / s.y, y = r % s.y;
          const TG* a = gb + z * gs.z + y * gs.y;
          const TP* b = pb + z * ps.z + y * ps.y;
          // Runs of equal labels grow the boxes once per run, not once per voxel.
          int64_t ru = 0, rv = 0, su = 0, sv = 0;  // current run label and start, per image
          const bool contiguous = gs.x == 1 && ps.x == 1;
          for (int64_t x = 0; x < s.x; ++x) {
            if (contiguous && ru == 0 && rv == 0) {
              // Background in both: skip it 16 voxels at a time.
              while (x + 16 <= s.x) {
                uint64_t any = 0;
                for (int k = 0; k < 16; ++k)
                  any |= static_cast<uint64_t>(a[x + k]) | static_cast<uint64_t>(b[x + k]);
                if (any) break;
                x += 16;
              }
              if (x >= s.x) break;
            }
            const int64_t u = static_cast<int64_t>(a[x * gs.x]);
            const int64_t v = static_cast<int64_t>(b[x * ps.x]);
            if (u != ru) {
              if (ru) st.g[ru] += x - su, grow(ru, z, y, su), grow(ru, z, y, x - 1);
              ru = u, su = x;
            }
            if (v != rv) {
              if (rv) st.p[rv] += x - sv, grow(rv, z, y, sv), grow(rv, z, y, x - 1);
              rv = v, sv = x;
            }
            if (u == v && u) ++st.both[u];
          }
          if (ru) st.g[ru] += s.x - su, grow(ru, z, y, su), grow(ru, z, y, s.x - 1);
          if (rv) st.p[rv] += s.x - sv, grow(rv, z, y, sv), grow(rv, z, y, s.x - 1);
        }
      });
    });
  });
  Stats all = fresh();
  locals.combine_each([&](const Stats& st) {
    for (int64_t l = 0; l <= n; ++l) {
      all.g[l] += st.g[l];
      all.p[l] += st.p[l];
      all.both[l] += st.both[l];
      for (int k = 0; k < 3; ++k) {
        all.box[l][k] = std::min(all.box[l][k], st.box[l][k]);
        all.box[l][k + 3] = std::max(all.box[l][k + 3], st.box[l][k + 3]);
      }
    }
  });
  return all;
}

std::vector<int64_t> labels_to_score(const Stats& st, const LabelScoreOptions& o) {
  if (!o.labels.empty()) {
    for (int64_t l : o.labels)
      UMAMBA_CHECK(l > 0, "label {} cannot be scored: labels are > 0 (0 is background)", l);
    return o.labels;
  }
  std::vector<int64_t> out;
  for (int64_t l = 1; l < static_cast<int64_t>(st.g.size()); ++l)
    if (st.g[l] || st.p[l]) out.push_back(l);
  return out;
}

LabelScore counts_of(const Stats& st, int64_t l, const LabelScoreOptions& o) {
  LabelScore sc;
  sc.label = l;
  if (l < static_cast<int64_t>(st.g.size())) {
    sc.gt_voxels = st.g[l];
    sc.pred_voxels = st.p[l];
    sc.intersection = st.both[l];
  }
  if (sc.gt_voxels == 0 && sc.pred_voxels == 0) {
    sc.dsc = o.both_absent;
  } else {
    sc.dsc = 2.0 * static_cast<double>(sc.intersection) /
             static_cast<double>(sc.gt_voxels + sc.pred_voxels);
  }
  return sc;
}

// Crops (image == label) over `box` into a contiguous byte mask.
void crop_mask(const Image& image, int64_t label, const std::array<int64_t, 6>& box,
               std::vector<uint8_t>& mask) {
  const Image ch = image.channel(0);
  const Shape st = ch.strides();
  const int64_t dz = box[3] - box[0] + 1, dy = box[4] - box[1] + 1, dx = box[5] - box[2] + 1;
  mask.assign(dz * dy * dx, 0);
  detail::visit_labels(image, [&](auto tag) {
    using T = decltype(tag);
    const T* base = ch.data_as<T>();
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, dz * dy, 16), [&](const auto& range) {
      for (int64_t r = range.begin(); r != range.end(); ++r) {
        const int64_t z = r / dy, y = r % dy;
        const T* row = base + (box[0] + z) * st.z + (box[1] + y) * st.y + box[2] * st.x;
        uint8_t* out = mask.data() + r * dx;
        if (st.x == 1) {
          const T l = static_cast<T>(label);  // label <= kMaxLabel fits T: it was found in T
          for (int64_t x = 0; x < dx; ++x) out[x] = row[x] == l;
        } else {
          for (int64_t x = 0; x < dx; ++x) out[x] = static_cast<int64_t>(row[x * st.x]) == label;
        }
      }
    });
  });
}

struct Sums {
  double area = 0, within = 0;
};

// Σ measure over the surface corners of `codes`, and the part whose squared distance `d2` to the
// other surface is within the tolerance. Deterministic order of summation.
Sums surface_sums(const std::vector<uint8_t>& codes, const std::vector<double>& table,
                  const std::vector<double>& d2, bool is_3d, double tolerance) {
  const int64_t n = static_cast<int64_t>(codes.size());
  // d ≤ τ in real arithmetic: distances equal to τ (common: 3 mm voxels and τ = 3, or
  // 0.8² + 0.6² = 1) reach the EDT with a rounding error of a few ulps whose sign depends on the
  // order of the sums and on which of several equally near surfels was found; 1e-12 relative
  // absorbs it, far below any real gap between distinct distances on a voxel grid.
  const double limit2 = tolerance * tolerance * (1 + 1e-12);
  return tbb::parallel_deterministic_reduce(
      tbb::blocked_range<int64_t>(0, n, 1 << 15), Sums{},
      [&](const tbb::blocked_range<int64_t>& range, Sums s) {
        for (int64_t i = range.begin(); i != range.end(); ++i) {
          const uint8_t c = codes[i];
          if (!uv::is_surface_code(c, is_3d)) continue;
          s.area += table[c];
          if (d2[i] <= limit2) s.within += table[c];
        }
        return s;
      },
      [](Sums a, const Sums& b) {
        a.area += b.area;
        a.within += b.within;
        return a;
      });
}

}  // namespace

double surface_dice(const uint8_t* gt, const uint8_t* pred, const uv::Extents& e,
                    const uv::Spacing& spacing, double tolerance, LabelScore* out) {
  UMAMBA_CHECK(std::isfinite(tolerance) && tolerance >= 0,
               "NSD: the tolerance must be >= 0 and finite, got {}", tolerance);
  const bool is_3d = e.z > 1;
  const uv::Extents ce = uv::corner_extents(e);
  const auto table = uv::surface_measure_table(is_3d, spacing);
  std::vector<uint8_t> code_g(ce.count()), code_p(ce.count()), surf(ce.count());
  uv::neighbour_codes(gt, e, code_g.data());
  uv::neighbour_codes(pred, e, code_p.data());
  std::vector<double> d2(ce.count());
  auto mark = [&](const std::vector<uint8_t>& codes) {
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, ce.count(), 1 << 16), [&](const auto& r) {
      for (int64_t i = r.begin(); i != r.end(); ++i) surf[i] = uv::is_surface_code(codes[i], is_3d);
    });
  };
  // Distances from the predicted surfels to the ground-truth surface, then the other way.
  mark(code_g);
  uv::squared_distance_transform(surf.data(), ce, spacing, d2.data(), tolerance);
  const Sums p = surface_sums(code_p, table, d2, is_3d, tolerance);
  mark(code_p);
  uv::squared_distance_transform(surf.data(), ce, spacing, d2.data(), tolerance);
  const Sums g = surface_sums(code_g, table, d2, is_3d, tolerance);
  if (out) {
    out->gt_surface = g.area;
    out->pred_surface = p.area;
    out->gt_surface_within = g.within;
    out->pred_surface_within = p.within;
    out->tolerance = tolerance;
  }
  const double total = g.area + p.area;
  if (total == 0) return std::numeric_limits<double>::quiet_NaN();
  return (g.within + p.within) / total;
}

std::vector<LabelScore> dice_per_label(const Image& gt, const Image& pred,
                                       const LabelScoreOptions& o) {
  detail::check_same_shape(gt, pred, "DSC");
  const int64_t n =
      std::max(max_label(gt, "DSC (ground truth)"), max_label(pred, "DSC (prediction)"));
  const Stats st = label_stats(gt, pred, n);
  std::vector<LabelScore> out;
  for (int64_t l : labels_to_score(st, o)) out.push_back(counts_of(st, l, o));
  return out;
}

std::vector<LabelScore> surface_dice_per_label(const Image& gt, const Image& pred,
                                               const uv::Spacing& spacing,
                                               const std::function<double(int64_t)>& tolerance,
                                               const LabelScoreOptions& o) {
  detail::check_same_shape(gt, pred, "NSD");
  const int64_t n =
      std::max(max_label(gt, "NSD (ground truth)"), max_label(pred, "NSD (prediction)"));
  const Stats st = label_stats(gt, pred, n);
  std::vector<LabelScore> out;
  std::vector<uint8_t> mg, mp;
  for (int64_t l : labels_to_score(st, o)) {
    LabelScore sc = counts_of(st, l, o);
    sc.tolerance = tolerance(l);
    if (sc.gt_voxels == 0 && sc.pred_voxels == 0) {
      sc.nsd = o.both_absent;
    } else if (sc.gt_voxels == 0 || sc.pred_voxels == 0) {
      sc.nsd = 0;
    } else {
      const auto& box = st.box[l];
      crop_mask(gt, l, box, mg);
      crop_mask(pred, l, box, mp);
      const uv::Extents e{box[3] - box[0] + 1, box[4] - box[1] + 1, box[5] - box[2] + 1};
      // A one-slice crop of a 3D volume is still a 3D surface: keep the slab's top and bottom.
      if (e.z == 1 && gt.depth() > 1) {
        const int64_t plane = e.y * e.x;
        std::vector<uint8_t> g3(3 * plane, 0), p3(3 * plane, 0);
        std::copy(mg.begin(), mg.end(), g3.begin() + plane);
        std::copy(mp.begin(), mp.end(), p3.begin() + plane);
        sc.nsd = surface_dice(g3.data(), p3.data(), {3, e.y, e.x}, spacing, sc.tolerance, &sc);
      } else {
        sc.nsd = surface_dice(mg.data(), mp.data(), e, spacing, sc.tolerance, &sc);
      }
    }
    out.push_back(sc);
  }
  return out;
}

}  // namespace umamba::metrics
