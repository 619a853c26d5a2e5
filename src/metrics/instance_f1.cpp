// Instance F1 by the NeurIPS 2022 Cell Segmentation rule: see instance_f1.h.
#include "metrics/instance_f1.h"

#include <tbb/blocked_range.h>
#include <tbb/combinable.h>
#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "metrics/hungarian.h"
#include "metrics/label_map.h"

namespace umamba::metrics {

namespace {

// Ids up to this value are mapped through dense tables; larger ids through hash tables.
constexpr int64_t kDenseIdLimit = int64_t{1} << 24;

// A box of the image to score: [z0, z0+dz) × [y0, y0+dy) × [x0, x0+dx); pixels outside the image
// are background (the zero padding of tiles).
struct Region {
  int64_t z0 = 0, y0 = 0, x0 = 0;
  int64_t dz = 1, dy = 1, dx = 1;
  int64_t count() const { return dz * dy * dx; }
};

struct Relabelled {
  std::vector<uint32_t> ids;  // region [Z,Y,X], 0 = background, cells 1..count
  int64_t count = 0;
};

// Region rows: for row r = (z, y) of the region, the image row pointer and how many pixels of it
// exist (the rest is padding).
template <typename T>
struct RowAccess {
  const T* base;
  Shape strides;
  Shape shape;
  Region region;

  // Number of real pixels in region row r (0 when the row is entirely padding).
  int64_t valid(int64_t r) const {
    const int64_t z = region.z0 + r / region.dy, y = region.y0 + r % region.dy;
    if (z >= shape.z || y >= shape.y) return 0;
    return std::max<int64_t>(0, std::min(region.dx, shape.x - region.x0));
  }
  const T* row(int64_t r) const {
    const int64_t z = region.z0 + r / region.dy, y = region.y0 + r % region.dy;
    return base + z * strides.z + y * strides.y + region.x0 * strides.x;
  }
  int64_t rows() const { return region.dz * region.dy; }
};

// Frame test for region row r: true when the whole row lies in the frame.
bool row_in_frame(const Region& g, int64_t r, int64_t border) {
  const int64_t z = r / g.dy, y = r % g.dy;
  if (g.dz > 1 && (z < border || z >= g.dz - border)) return true;
  return y < border || y >= g.dy - border;
}

template <typename T>
Relabelled relabel(const Image& image, const Region& g, const F1Options& o) {
  const Image ch = image.channel(0);
  const RowAccess<T> acc{ch.data_as<T>(), ch.strides(), ch.shape(), g};
  const int64_t sx = acc.strides.x;
  const int64_t rows = acc.rows();

  // Largest and smallest id.
  struct MinMax {
    int64_t lo = std::numeric_limits<int64_t>::max(), hi = 0;
  };
  tbb::combinable<MinMax> mm;
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, rows, 16), [&](const auto& range) {
    MinMax& m = mm.local();
    for (int64_t r = range.begin(); r != range.end(); ++r) {
      const int64_t n = acc.valid(r);
      const T* p = acc.row(r);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t v = static_cast<int64_t>(p[i * sx]);
        m.lo = std::min(m.lo, v);
        m.hi = std::max(m.hi, v);
      }
    }
  });
  MinMax all;
  mm.combine_each([&](const MinMax& m) {
    all.lo = std::min(all.lo, m.lo);
    all.hi = std::max(all.hi, m.hi);
  });
  UMAMBA_CHECK(all.lo >= 0 || all.lo == std::numeric_limits<int64_t>::max(),
               "instance F1: labels must be >= 0, found {}", all.lo);

  Relabelled out;
  out.ids.assign(g.count(), 0);
  if (all.hi == 0) return out;

  const int64_t border = o.keep_border ? 0 : o.border;
  // The script deletes every label it finds in the frame except the smallest value there, which
  // is always background unless the frame covers the whole region and holds no background pixel.
  const bool frame_is_everything =
      g.dy <= 2 * border || g.dx <= 2 * border || (g.dz > 1 && g.dz <= 2 * border);
  bool padded = false;  // padding is background inside the region
  for (int64_t r = 0; r < rows && !padded; ++r) padded = acc.valid(r) < g.dx;

  // Present ids (bit 1) and ids seen in the frame (bit 2).
  auto scan = [&](auto&& mark) {
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t n = acc.valid(r);
      const T* p = acc.row(r);
      const bool whole = border > 0 && row_in_frame(g, r, border);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t v = static_cast<int64_t>(p[i * sx]);
        if (v == 0) continue;
        const bool frame = border > 0 && (whole || i < border || i >= g.dx - border);
        mark(v, frame);
      }
    }
  };

  std::vector<int64_t> keep;  // surviving original ids, ascending
  bool frame_has_background = !frame_is_everything || padded;
  if (frame_is_everything && !frame_has_background) {
    // Any background pixel at all?
    for (int64_t r = 0; r < rows && !frame_has_background; ++r) {
      const int64_t n = acc.valid(r);
      const T* p = acc.row(r);
      for (int64_t i = 0; i < n; ++i)
        if (p[i * sx] == 0) {
          frame_has_background = true;
          break;
        }
    }
  }

  if (all.hi <= kDenseIdLimit) {
    std::unique_ptr<std::atomic<uint8_t>[]> flags(new std::atomic<uint8_t>[all.hi + 1]);
    for (int64_t i = 0; i <= all.hi; ++i) flags[i].store(0, std::memory_order_relaxed);
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, rows, 16), [&](const auto& range) {
      for (int64_t r = range.begin(); r != range.end(); ++r) {
        const int64_t n = acc.valid(r);
        const T* p = acc.row(r);
        const bool whole = border > 0 && row_in_frame(g, r, border);
        for (int64_t i = 0; i < n; ++i) {
          const int64_t v = static_cast<int64_t>(p[i * sx]);
          if (v == 0) continue;
          const bool frame = border > 0 && (whole || i < border || i >= g.dx - border);
          const uint8_t bits = frame ? 3 : 1;
          if ((flags[v].load(std::memory_order_relaxed) & bits) != bits)
            flags[v].fetch_or(bits, std::memory_order_relaxed);
        }
      }
    });
    std::vector<uint32_t> map(all.hi + 1, 0);
    bool first_frame = true;
    uint32_t next = 1;
    for (int64_t v = 1; v <= all.hi; ++v) {
      const uint8_t f = flags[v].load(std::memory_order_relaxed);
      if (!(f & 1)) continue;
      bool removed = (f & 2) != 0;
      if (removed && first_frame) {
        first_frame = false;
        if (!frame_has_background) removed = false;
      }
      if (!removed) map[v] = next++;
    }
    out.count = next - 1;
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, rows, 16), [&](const auto& range) {
      for (int64_t r = range.begin(); r != range.end(); ++r) {
        const int64_t n = acc.valid(r);
        const T* p = acc.row(r);
        uint32_t* dst = out.ids.data() + r * g.dx;
        for (int64_t i = 0; i < n; ++i) dst[i] = map[static_cast<int64_t>(p[i * sx])];
      }
    });
  } else {
    std::unordered_map<int64_t, uint8_t> flags;
    scan([&](int64_t v, bool frame) { flags[v] |= frame ? 3 : 1; });
    std::vector<std::pair<int64_t, uint8_t>> sorted(flags.begin(), flags.end());
    std::sort(sorted.begin(), sorted.end());
    std::unordered_map<int64_t, uint32_t> map;
    bool first_frame = true;
    uint32_t next = 1;
    for (const auto& [v, f] : sorted) {
      bool removed = (f & 2) != 0;
      if (removed && first_frame) {
        first_frame = false;
        if (!frame_has_background) removed = false;
      }
      if (!removed) map[v] = next++;
    }
    out.count = next - 1;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t n = acc.valid(r);
      const T* p = acc.row(r);
      uint32_t* dst = out.ids.data() + r * g.dx;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t v = static_cast<int64_t>(p[i * sx]);
        if (v == 0) continue;
        const auto it = map.find(v);
        dst[i] = it == map.end() ? 0 : it->second;
      }
    }
  }
  return out;
}

Relabelled relabel_any(const Image& image, const Region& g, const F1Options& o) {
  return detail::visit_labels(image, [&](auto tag) {
    using T = decltype(tag);
    return relabel<T>(image, g, o);
  });
}

struct PairCount {
  uint32_t g, p;
  int64_t inter;
};

struct Overlaps {
  std::vector<int64_t> area_g, area_p;  // index = id, [0] unused
  std::vector<PairCount> pairs;         // sorted by (g, p)
};

Overlaps count_overlaps(const Relabelled& gt, const Relabelled& pred) {
  const int64_t n = static_cast<int64_t>(gt.ids.size());
  struct Local {
    std::vector<int64_t> ag, ap;
    std::unordered_map<uint64_t, int64_t> pairs;
  };
  tbb::enumerable_thread_specific<Local> locals([&] {
    return Local{
        std::vector<int64_t>(gt.count + 1, 0), std::vector<int64_t>(pred.count + 1, 0), {}};
  });
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, n, 1 << 16), [&](const auto& range) {
    Local& l = locals.local();
    const uint32_t* g = gt.ids.data();
    const uint32_t* p = pred.ids.data();
    uint64_t run_key = 0;
    int64_t run = 0;
    for (int64_t i = range.begin(); i != range.end(); ++i) {
      const uint32_t a = g[i], b = p[i];
      l.ag[a]++;
      l.ap[b]++;
      if (a == 0 || b == 0) continue;
      const uint64_t key = (static_cast<uint64_t>(a) << 32) | b;
      if (key == run_key) {
        ++run;
      } else {
        if (run) l.pairs[run_key] += run;
        run_key = key;
        run = 1;
      }
    }
    if (run) l.pairs[run_key] += run;
  });
  Overlaps o;
  o.area_g.assign(gt.count + 1, 0);
  o.area_p.assign(pred.count + 1, 0);
  std::unordered_map<uint64_t, int64_t> merged;
  for (Local& l : locals) {
    for (int64_t i = 0; i <= gt.count; ++i) o.area_g[i] += l.ag[i];
    for (int64_t i = 0; i <= pred.count; ++i) o.area_p[i] += l.ap[i];
    if (merged.empty()) {
      merged.swap(l.pairs);
    } else {
      for (const auto& [k, c] : l.pairs) merged[k] += c;
    }
  }
  o.pairs.reserve(merged.size());
  for (const auto& [k, c] : merged)
    o.pairs.push_back({static_cast<uint32_t>(k >> 32), static_cast<uint32_t>(k & 0xFFFFFFFFu), c});
  std::sort(o.pairs.begin(), o.pairs.end(), [](const PairCount& a, const PairCount& b) {
    return a.g != b.g ? a.g < b.g : a.p < b.p;
  });
  return o;
}

struct Match {
  int64_t tp = 0;
  double iou_sum = 0;
};

int64_t union_of(const Overlaps& o, const PairCount& pc) {
  return o.area_g[pc.g] + o.area_p[pc.p] - pc.inter;
}

// t ≥ ½: a cell has at most one partner at or above t (see the header), so pairs are taken in
// any order, each cell used once.
Match match_half_or_above(const Overlaps& o, const Threshold& t) {
  std::vector<char> used_g(o.area_g.size(), 0), used_p(o.area_p.size(), 0);
  Match m;
  for (const PairCount& pc : o.pairs) {
    const int64_t uni = union_of(o, pc);
    if (!t.passes(pc.inter, uni) || used_g[pc.g] || used_p[pc.p]) continue;
    used_g[pc.g] = used_p[pc.p] = 1;
    ++m.tp;
    m.iou_sum += static_cast<double>(pc.inter) / static_cast<double>(uni);
  }
  return m;
}

// t < ½: the script's cost −[IoU ≥ t] − IoU/(2·n_min), minimised per connected component of the
// overlap graph (pairs in different components cost 0 and change nothing).
Match match_hungarian(const Overlaps& o, const Threshold& t, int64_t n_true, int64_t n_pred) {
  const int64_t ng = static_cast<int64_t>(o.area_g.size()) - 1;
  const int64_t np = static_cast<int64_t>(o.area_p.size()) - 1;
  const double n_min = static_cast<double>(std::min(n_true, n_pred));
  // Union-find over ground-truth ids 1..ng and predicted ids ng+1..ng+np.
  std::vector<int64_t> parent(ng + np + 1);
  std::iota(parent.begin(), parent.end(), 0);
  auto find = [&](int64_t x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  };
  for (const PairCount& pc : o.pairs) {
    const int64_t a = find(pc.g), b = find(ng + pc.p);
    if (a != b) parent[a] = b;
  }
  std::unordered_map<int64_t, std::vector<const PairCount*>> components;
  for (const PairCount& pc : o.pairs) components[find(pc.g)].push_back(&pc);
  Match m;
  for (auto& [root, pairs] : components) {
    std::vector<uint32_t> gs, ps;
    for (const PairCount* pc : pairs) {
      gs.push_back(pc->g);
      ps.push_back(pc->p);
    }
    std::sort(gs.begin(), gs.end());
    gs.erase(std::unique(gs.begin(), gs.end()), gs.end());
    std::sort(ps.begin(), ps.end());
    ps.erase(std::unique(ps.begin(), ps.end()), ps.end());
    const int64_t rows = static_cast<int64_t>(gs.size()), cols = static_cast<int64_t>(ps.size());
    UMAMBA_CHECK(std::min(rows, cols) <= 4096 && rows * cols <= 64'000'000,
                 "instance F1: {} ground-truth cells and {} predicted cells overlap as one group; "
                 "exact matching below IoU 0.5 is limited to 4096 x ... cells per group (use a "
                 "threshold of 0.5 or more)",
                 rows, cols);
    std::vector<double> cost(rows * cols, 0.0);
    std::vector<int64_t> inter(rows * cols, 0);
    for (const PairCount* pc : pairs) {
      const int64_t r = std::lower_bound(gs.begin(), gs.end(), pc->g) - gs.begin();
      const int64_t c = std::lower_bound(ps.begin(), ps.end(), pc->p) - ps.begin();
      const int64_t uni = union_of(o, *pc);
      const double iou = static_cast<double>(pc->inter) / static_cast<double>(uni);
      cost[r * cols + c] = -(t.passes(pc->inter, uni) ? 1.0 : 0.0) - iou / (2 * n_min);
      inter[r * cols + c] = pc->inter;
    }
    const auto assign = min_cost_assignment(cost, rows, cols);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t c = assign[r];
      if (c < 0 || inter[r * cols + c] == 0) continue;
      const PairCount pc{gs[r], ps[c], inter[r * cols + c]};
      const int64_t uni = union_of(o, pc);
      if (!t.passes(pc.inter, uni)) continue;
      ++m.tp;
      m.iou_sum += static_cast<double>(pc.inter) / static_cast<double>(uni);
    }
  }
  return m;
}

Match match_cells(const Overlaps& o, const Threshold& t, int64_t n_true, int64_t n_pred) {
  if (2 * t.num >= t.den) return match_half_or_above(o, t);
  return match_hungarian(o, t, n_true, n_pred);
}

F1Counts score_region(const Image& gt, const Image& pred, const Region& g, const F1Options& o) {
  const Relabelled rg = relabel_any(gt, g, o);
  const Relabelled rp = relabel_any(pred, g, o);
  F1Counts c;
  c.n_true = rg.count;
  c.n_pred = rp.count;
  if (rp.count == 0) return c;  // the script: TP = FP = FN = 0 without predicted cells
  const Overlaps ov = count_overlaps(rg, rp);
  const Match m = match_cells(ov, o.threshold, rg.count, rp.count);
  c.tp = m.tp;
  c.matched_iou_sum = m.iou_sum;
  c.fp = c.n_pred - c.tp;
  c.fn = c.n_true - c.tp;
  for (int k = 0; k < kApThresholds; ++k) c.tp_at[k] = match_half_or_above(ov, ap_threshold(k)).tp;
  return c;
}

double safe_divide(double a, double b) {
  return b > 0 ? a / b : 0.0;
}

}  // namespace

Threshold Threshold::parse(std::string_view s) {
  const std::string text(s);
  std::string_view t = s;
  int64_t num = 0, den = 1;
  bool digits = false, dot = false;
  for (char ch : t) {
    if (ch == '.') {
      UMAMBA_CHECK(!dot, "IoU threshold '{}' is not a decimal number", text);
      dot = true;
      continue;
    }
    UMAMBA_CHECK(ch >= '0' && ch <= '9', "IoU threshold '{}' is not a decimal number", text);
    digits = true;
    UMAMBA_CHECK(num < (int64_t{1} << 40) && (!dot || den < 1'000'000'000'000),
                 "IoU threshold '{}' has too many digits", text);
    num = num * 10 + (ch - '0');
    if (dot) den *= 10;
  }
  UMAMBA_CHECK(digits, "IoU threshold '{}' is not a decimal number", text);
  UMAMBA_CHECK(num <= den, "IoU threshold {} is outside [0, 1]", text);
  const int64_t d = std::gcd(num, den);
  return Threshold{num / (d ? d : 1), den / (d ? d : 1)};
}

Threshold Threshold::from_double(double value) {
  UMAMBA_CHECK(std::isfinite(value) && value >= 0 && value <= 1,
               "IoU threshold {} is outside [0, 1]", value);
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::fixed);
  return parse(std::string_view(buf, res.ptr - buf));
}

double foreground_dice(int64_t gt_pixels, int64_t pred_pixels, int64_t both_pixels) {
  if (gt_pixels == 0 && pred_pixels == 0) return 1.0;
  if (gt_pixels == 0) return 0.0;
  return 2.0 * static_cast<double>(both_pixels) / static_cast<double>(gt_pixels + pred_pixels);
}

F1Result instance_f1(const Image& gt, const Image& pred, const F1Options& o) {
  detail::check_same_shape(gt, pred, "instance F1");
  UMAMBA_CHECK(o.border >= 0, "instance F1: border width must be >= 0, got {}", o.border);
  UMAMBA_CHECK(o.tile > 2 * o.border, "instance F1: tile edge {} must exceed twice the border",
               o.tile);
  const Shape s = gt.shape();
  F1Result res;

  // Foreground Dice on the whole image.
  {
    const Image g0 = gt.channel(0), p0 = pred.channel(0);
    struct Fg {
      int64_t g = 0, p = 0, both = 0;
    };
    tbb::combinable<Fg> fg;
    detail::visit_labels(gt, [&](auto tg) {
      using TG = decltype(tg);
      detail::visit_labels(pred, [&](auto tp) {
        using TP = decltype(tp);
        const TG* gb = g0.data_as<TG>();
        const TP* pb = p0.data_as<TP>();
        const Shape gs = g0.strides(), ps = p0.strides();
        tbb::parallel_for(tbb::blocked_range<int64_t>(0, s.z * s.y, 16), [&](const auto& range) {
          Fg& f = fg.local();
          for (int64_t r = range.begin(); r != range.end(); ++r) {
            const int64_t z = r / s.y, y = r % s.y;
            const TG* a = gb + z * gs.z + y * gs.y;
            const TP* b = pb + z * ps.z + y * ps.y;
            for (int64_t x = 0; x < s.x; ++x) {
              const bool ga = a[x * gs.x] != 0, pa = b[x * ps.x] != 0;
              f.g += ga;
              f.p += pa;
              f.both += ga && pa;
            }
          }
        });
      });
    });
    Fg all;
    fg.combine_each([&](const Fg& f) {
      all.g += f.g;
      all.p += f.p;
      all.both += f.both;
    });
    res.dice = foreground_dice(all.g, all.p, all.both);
  }

  F1Counts& c = res.counts;
  const bool tiled = s.z == 1 && o.tile_from_pixels > 0 && s.pixels() >= o.tile_from_pixels;
  res.tiled = tiled;
  if (!tiled) {
    c = score_region(gt, pred, Region{0, 0, 0, s.z, s.y, s.x}, o);
  } else {
    const int64_t ty = (s.y + o.tile - 1) / o.tile, tx = (s.x + o.tile - 1) / o.tile;
    std::vector<F1Counts> tiles(ty * tx);
    tbb::parallel_for(int64_t{0}, ty * tx, [&](int64_t t) {
      const Region g{0, (t / tx) * o.tile, (t % tx) * o.tile, 1, o.tile, o.tile};
      tiles[t] = score_region(gt, pred, g, o);
    });
    for (const F1Counts& t : tiles) {  // in tile order: the sum of IoUs is reproducible
      c.n_true += t.n_true;
      c.n_pred += t.n_pred;
      c.tp += t.tp;
      c.fp += t.fp;
      c.fn += t.fn;
      c.matched_iou_sum += t.matched_iou_sum;
      for (int k = 0; k < kApThresholds; ++k) c.tp_at[k] += t.tp_at[k];
    }
  }

  if (c.tp > 0) {
    res.precision = static_cast<double>(c.tp) / static_cast<double>(c.n_pred);
    res.recall = static_cast<double>(c.tp) / static_cast<double>(c.n_true);
    res.f1 = 2 * (res.precision * res.recall) / (res.precision + res.recall);
  }
  const double tp = static_cast<double>(c.tp);
  const double fp = static_cast<double>(c.n_pred - c.tp), fn = static_cast<double>(c.n_true - c.tp);
  res.mean_matched_iou = safe_divide(c.matched_iou_sum, tp);
  res.panoptic_quality = safe_divide(c.matched_iou_sum, tp + fp / 2 + fn / 2);
  double ap_sum = 0;
  for (int k = 0; k < kApThresholds; ++k) {
    const double tpk = static_cast<double>(c.tp_at[k]);
    res.ap[k] = safe_divide(tpk, static_cast<double>(c.n_pred + c.n_true) - tpk);
    ap_sum += res.ap[k];
  }
  res.mean_ap = ap_sum / kApThresholds;
  return res;
}

}  // namespace umamba::metrics
