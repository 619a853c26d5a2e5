// Cell shapes and placement; the method is described in cells.h.
#include "synth/cells.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/log.h"
#include "synth/random.h"

namespace umamba::synth {

namespace {

using Vec3 = std::array<double, 3>;

double dot(const Vec3& a, const Vec3& b) {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

Vec3 mat_vec(const std::array<double, 9>& m, const Vec3& v) {
  return {m[0] * v[0] + m[1] * v[1] + m[2] * v[2], m[3] * v[0] + m[4] * v[1] + m[5] * v[2],
          m[6] * v[0] + m[7] * v[1] + m[8] * v[2]};
}

// A standard normal deviate cut at ±limit by redrawing (a few tries), then clamping.
double bounded_normal(const rng::Stream& s, uint64_t counter, double limit) {
  for (uint64_t t = 0; t < 8; ++t) {
    const double z = rng::normal(s, counter * 8 + t);
    if (std::abs(z) <= limit) return z;
  }
  return std::clamp(rng::normal(s, counter * 8), -limit, limit);
}

// A unit vector: in the (y, x) plane for 2D, uniform on the sphere for 3D.
Vec3 random_direction(const rng::Stream& s, uint64_t counter, bool three_d) {
  const double phi = 2.0 * rng::kPi * s.uniform(counter);
  if (!three_d) return {0.0, rng::sin(phi), rng::cos(phi)};
  const double t = 2.0 * s.uniform(counter + 1) - 1.0;
  const double r = std::sqrt(std::max(0.0, 1.0 - t * t));
  return {t, r * rng::sin(phi), r * rng::cos(phi)};
}

// Largest bounding radius of any cell these parameters can draw (for the placement grid).
double max_bounding_radius(const SynthParams& p, bool three_d) {
  const double r = diameter_range(p).max / 2.0;
  const double e = std::max(1.0, p.elongation);
  const double axis = three_d ? r * std::max(std::pow(e, 2.0 / 3.0),
                                             std::pow(e, -1.0 / 3.0) * (1.0 + 0.2 * (e - 1.0)))
                              : r * std::sqrt(e);
  return axis * (1.0 + p.irregularity) + 1e-6;
}

double bounding_radius(const Cell& c) {
  // Largest semi-axis times fmax: sqrt of the largest eigenvalue of A, bounded by its trace.
  // The trace bound is loose by at most sqrt(3); use the exact value from the diagonal instead:
  // max_k sqrt(A_kk) is the largest extent along a coordinate axis, not along the major axis, so
  // take sqrt(trace) which is >= the largest semi-axis.
  return c.fmax * std::sqrt(c.A[0] + c.A[4] + c.A[8]);
}

}  // namespace

double radial_extent(const Cell& cell, const Vec3& u) {
  const Vec3 w = mat_vec(cell.L, u);
  const double len = std::sqrt(dot(w, w));
  const Vec3 n{w[0] / len, w[1] / len, w[2] / len};
  return boundary_factor(cell, n) / len;
}

double support(const Cell& cell, const Vec3& u) {
  return cell.fmax * std::sqrt(std::max(0.0, dot(u, mat_vec(cell.A, u))));
}

Cell draw_cell_shape(const SynthParams& p, bool three_d, uint64_t index) {
  const rng::Stream s(p.seed, rng::Purpose::CellShape, index);
  uint64_t k = 0;  // counter within this cell's stream
  Cell c;
  const double spread = p.diameter_spread;
  c.diameter = p.diameter * rng::exp(spread * bounded_normal(s, k++, 2.0) - spread * spread / 2.0);
  const double r = c.diameter / 2.0;
  const double e = 1.0 + (p.elongation - 1.0) * s.uniform(k++);

  std::array<Vec3, 3> axes_dir;  // unit vectors (z, y, x) of the local axes
  Vec3 semi;                     // semi-axes, px
  if (!three_d) {
    const double theta = 2.0 * rng::kPi * s.uniform(k++);
    const double st = rng::sin(theta), ct = rng::cos(theta);
    axes_dir = {Vec3{0.0, st, ct}, Vec3{0.0, ct, -st}, Vec3{1.0, 0.0, 0.0}};
    semi = {r * std::sqrt(e), r / std::sqrt(e), 1.0};
  } else {
    // Prolate with a mild third ratio; the volume stays that of the sphere of diameter d.
    const double m = 1.0 + 0.2 * (e - 1.0) * s.uniform(k++);
    const double e3 = std::cbrt(e);
    semi = {r * e3 * e3, r / e3 * m, r / e3 / m};
    // Uniform random rotation from a unit quaternion (Shoemake).
    const double u1 = s.uniform(k++), u2 = s.uniform(k++), u3 = s.uniform(k++);
    const double a = std::sqrt(1.0 - u1), b = std::sqrt(u1);
    const double qx = a * rng::sin(2 * rng::kPi * u2), qy = a * rng::cos(2 * rng::kPi * u2);
    const double qz = b * rng::sin(2 * rng::kPi * u3), qw = b * rng::cos(2 * rng::kPi * u3);
    const std::array<double, 9> R{
        1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qz * qw),     2 * (qx * qz + qy * qw),
        2 * (qx * qy + qz * qw),     1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qx * qw),
        2 * (qx * qz - qy * qw),     2 * (qy * qz + qx * qw),     1 - 2 * (qx * qx + qy * qy)};
    for (int j = 0; j < 3; ++j) axes_dir[j] = {R[0 + j], R[3 + j], R[6 + j]};  // columns
  }
  for (int j = 0; j < 3; ++j)
    for (int i = 0; i < 3; ++i) c.L[j * 3 + i] = axes_dir[j][i] / semi[j];
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b) {
      double v = 0.0;
      for (int j = 0; j < 3; ++j) v += semi[j] * semi[j] * axes_dir[j][a] * axes_dir[j][b];
      c.A[a * 3 + b] = v;
    }
  if (!three_d) {
    // Only the in-plane block matters in 2D; keep the Z row out of the support function.
    c.A[0] = c.A[1] = c.A[2] = c.A[3] = c.A[6] = 0.0;
  }

  // Boundary ridges: directions in the w frame (in the plane of the first two axes for 2D).
  double weight_sum = 0.0;
  std::array<double, kRidges> weight{};
  for (int j = 0; j < kRidges; ++j) {
    const double alpha = 2.0 * rng::kPi * s.uniform(k++);
    if (!three_d) {
      c.ridge_dir[j] = {rng::cos(alpha), rng::sin(alpha), 0.0};
    } else {
      const double t = 2.0 * s.uniform(k++) - 1.0;
      const double rr = std::sqrt(std::max(0.0, 1.0 - t * t));
      c.ridge_dir[j] = {t, rr * rng::cos(alpha), rr * rng::sin(alpha)};
    }
    weight[j] = 0.5 + 0.5 * s.uniform(k++);
    weight_sum += weight[j];
    c.ridge_freq[j] = rng::kPi * (0.5 + 2.0 * s.uniform(k++));
    c.ridge_phase[j] = 2.0 * rng::kPi * s.uniform(k++);
  }
  for (int j = 0; j < kRidges; ++j) c.ridge_amp[j] = p.irregularity * weight[j] / weight_sum;
  c.fmax = 1.0 + p.irregularity + 1e-9;

  // Brightness: log-normal with mean 1 and the requested coefficient of variation.
  const double sigma = std::sqrt(rng::log(1.0 + p.intensity_spread * p.intensity_spread));
  c.brightness = rng::exp(sigma * bounded_normal(s, k++, 3.0) - sigma * sigma / 2.0);

  // Nucleus centre: up to 0.15 of the radius off the cell centre.
  const Vec3 nd = random_direction(s, k, three_d);
  k += 2;
  const double off = 0.15 * s.uniform(k++);
  // random_direction gives (z, y, x); in 2D the w frame's plane is (w0, w1).
  c.nucleus =
      three_d ? Vec3{nd[0] * off, nd[1] * off, nd[2] * off} : Vec3{nd[1] * off, nd[2] * off, 0.0};
  return c;
}

void set_cell_centre(Cell& c, const Vec3& centre, const Scene& scene) {
  c.centre = centre;
  const std::array<int64_t, 3> size{scene.depth, scene.height, scene.width};
  const std::array<double, 3> scale{scene.aspect, 1.0, 1.0};  // XY px per index step
  for (int a = 0; a < 3; ++a) {
    const double ci = centre[a] / scale[a];  // in index units
    c.pixel[a] = std::clamp<int64_t>(static_cast<int64_t>(std::floor(ci + 0.5)), 0, size[a] - 1);
    const double ext = c.fmax * std::sqrt(std::max(0.0, c.A[a * 4])) / scale[a];
    int64_t lo = static_cast<int64_t>(std::ceil(ci - ext));
    int64_t hi = static_cast<int64_t>(std::floor(ci + ext));
    if (size[a] == 1) lo = hi = 0;
    c.lo[a] = std::clamp<int64_t>(std::min(lo, c.pixel[a]), 0, size[a] - 1);
    c.hi[a] = std::clamp<int64_t>(std::max(hi, c.pixel[a]), 0, size[a] - 1);
  }
}

std::vector<int32_t> Scene::cells_in_rows(int64_t y0, int64_t y1) const {
  std::vector<int32_t> out;
  // by_y is sorted by lo[1]; a box meets [y0, y1) when lo < y1 and hi >= y0, and hi < lo +
  // max_rows, so candidates have lo in (y0 - max_rows, y1).
  auto first = std::lower_bound(by_y.begin(), by_y.end(), y0 - max_rows,
                                [&](int32_t i, int64_t v) { return cells[i].lo[1] < v; });
  for (auto it = first; it != by_y.end() && cells[*it].lo[1] < y1; ++it) {
    if (cells[*it].hi[1] >= y0) out.push_back(*it);
  }
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

// The uniform grid of bins used to find the neighbours of a candidate position.
class PlacementGrid {
 public:
  PlacementGrid(const Scene& scene, double bin) : bin_(bin) {
    const std::array<double, 3> extent{scene.depth * scene.aspect, double(scene.height),
                                       double(scene.width)};
    for (int a = 0; a < 3; ++a)
      n_[a] = std::max<int64_t>(1, static_cast<int64_t>(std::ceil((extent[a] + 1.0) / bin)) + 1);
    const int64_t bins = n_[0] * n_[1] * n_[2];
    UMAMBA_CHECK(bins < (int64_t{1} << 31),
                 "synth: placement grid of {} bins is too large; raise the cell diameter or "
                 "shrink the image",
                 bins);
    head_.assign(static_cast<size_t>(bins), -1);
  }
  std::array<int64_t, 3> bin_of(const Vec3& p) const {
    std::array<int64_t, 3> b;
    const std::array<double, 3> offset{0.5, 0.5, 0.5};
    for (int a = 0; a < 3; ++a)
      b[a] = std::clamp<int64_t>(static_cast<int64_t>(std::floor((p[a] + offset[a]) / bin_)), 0,
                                 n_[a] - 1);
    return b;
  }
  void insert(int32_t index, const Vec3& p) {
    const auto b = bin_of(p);
    const int64_t flat = (b[0] * n_[1] + b[1]) * n_[2] + b[2];
    if (static_cast<size_t>(index) >= next_.size())
      next_.resize(static_cast<size_t>(index) + 1, -1);
    next_[static_cast<size_t>(index)] = head_[static_cast<size_t>(flat)];
    head_[static_cast<size_t>(flat)] = index;
  }
  // Calls fn(index) for every cell in the 3×3(×3) bins around p; stops when fn returns false.
  template <typename Fn>
  bool for_neighbours(const Vec3& p, Fn&& fn) const {
    const auto b = bin_of(p);
    for (int64_t z = std::max<int64_t>(0, b[0] - 1); z <= std::min(n_[0] - 1, b[0] + 1); ++z)
      for (int64_t y = std::max<int64_t>(0, b[1] - 1); y <= std::min(n_[1] - 1, b[1] + 1); ++y)
        for (int64_t x = std::max<int64_t>(0, b[2] - 1); x <= std::min(n_[2] - 1, b[2] + 1); ++x) {
          for (int32_t i = head_[static_cast<size_t>((z * n_[1] + y) * n_[2] + x)]; i >= 0;
               i = next_[static_cast<size_t>(i)])
            if (!fn(i)) return false;
        }
    return true;
  }

 private:
  double bin_;
  std::array<int64_t, 3> n_{};
  std::vector<int32_t> head_;
  std::vector<int32_t> next_;
};

struct Placer {
  const SynthParams& p;
  Scene& scene;
  bool three_d;
  double gap;
  PlacementGrid grid;
  std::vector<Cell> placed;  // committed cells, in placement order

  // True when `c` keeps the gap to every committed cell (other than those in `members`, which are
  // checked by the cluster rule instead).
  bool clear_of_others(const Cell& c) const {
    const double rb = bounding_radius(c);
    return grid.for_neighbours(c.centre, [&](int32_t i) {
      const Cell& o = placed[static_cast<size_t>(i)];
      const Vec3 d{o.centre[0] - c.centre[0], o.centre[1] - c.centre[1], o.centre[2] - c.centre[2]};
      const double dist = std::sqrt(dot(d, d));
      if (dist >= rb + bounding_radius(o) + gap) return true;
      if (dist == 0.0) return false;
      const Vec3 u{d[0] / dist, d[1] / dist, d[2] / dist};
      return dist >= support(c, u) + support(o, u) + gap;
    });
  }

  // Cluster rule: the new cell overlaps no member deeper than the nominal overlap, and never
  // shares its centre voxel.
  bool fits_cluster(const Cell& c, const std::vector<Cell>& members) const {
    for (const Cell& o : members) {
      if (o.pixel == c.pixel) return false;
      const Vec3 d{o.centre[0] - c.centre[0], o.centre[1] - c.centre[1], o.centre[2] - c.centre[2]};
      const double dist = std::sqrt(dot(d, d));
      const Vec3 u{d[0] / dist, d[1] / dist, d[2] / dist};
      const Vec3 mu{-u[0], -u[1], -u[2]};
      if (dist < (radial_extent(c, u) + radial_extent(o, mu)) * (1.0 - p.overlap) - 1e-9)
        return false;
    }
    return true;
  }

  bool inside(const Vec3& centre) const {
    const std::array<double, 3> size{double(scene.depth) * scene.aspect, double(scene.height),
                                     double(scene.width)};
    for (int a = (three_d ? 0 : 1); a < 3; ++a) {
      const double step = a == 0 ? scene.aspect : 1.0;
      if (centre[a] < -0.5 * step || centre[a] >= size[a] - 0.5 * step) return false;
    }
    return true;
  }

  Vec3 random_position(const rng::Stream& s, uint64_t counter) const {
    Vec3 c{0.0, s.uniform(counter + 1) * scene.height - 0.5,
           s.uniform(counter + 2) * scene.width - 0.5};
    if (three_d) c[0] = (s.uniform(counter) * scene.depth - 0.5) * scene.aspect;
    return c;
  }

  void commit(Cell c, int32_t cluster) {
    c.cluster = cluster;
    const int32_t index = static_cast<int32_t>(placed.size());
    grid.insert(index, c.centre);
    placed.push_back(std::move(c));
  }
};

constexpr int kSingleAttempts = 60;
constexpr int kClusterAttempts = 12;
constexpr int kMemberAttempts = 24;

}  // namespace

Scene place_cells(const SynthParams& p) {
  validate(p);
  Scene scene;
  scene.depth = p.depth;
  scene.height = p.height;
  scene.width = p.width;
  const bool three_d = p.depth > 1;
  scene.aspect = three_d ? p.spacing_z / p.spacing_xy : 1.0;
  const int64_t n = p.cells > 0 ? p.cells : cells_for_density(p);
  scene.requested = n;

  // Voxel neighbours (26-connectivity) are at most one voxel diagonal apart: a larger gap keeps
  // non-touching cells from being adjacent after rasterisation.
  const double diagonal = three_d ? std::sqrt(2.0 + scene.aspect * scene.aspect) : std::sqrt(2.0);
  const double gap = std::max(p.gap, diagonal + 0.05);
  const double bin = 2.0 * max_bounding_radius(p, three_d) + gap;
  Placer placer{p, scene, three_d, gap, PlacementGrid(scene, bin), {}};
  placer.placed.reserve(static_cast<size_t>(n));

  // Cluster sizes: 2..max_cluster cells, round(touching·N) cells in all (a last remainder of one
  // joins the previous cluster).
  int64_t touching = static_cast<int64_t>(std::llround(p.touching * static_cast<double>(n)));
  if (touching == 1) touching = n >= 2 ? 2 : 0;
  std::vector<int64_t> cluster_sizes;
  {
    const rng::Stream s(p.seed, rng::Purpose::Cluster);
    int64_t remaining = touching;
    uint64_t k = 0;
    while (remaining > 0) {
      int64_t size =
          2 + static_cast<int64_t>(s.uniform(k++) * static_cast<double>(p.max_cluster - 1));
      size = std::min(size, remaining);
      if (remaining - size == 1) ++size;
      cluster_sizes.push_back(size);
      remaining -= size;
    }
  }

  int64_t dropped = 0;
  uint64_t index = 0;  // the requested cell's index: keys its shape and its position draws
  int32_t cluster_id = 0;
  for (int64_t size : cluster_sizes) {
    const uint64_t first_index = index;
    index += static_cast<uint64_t>(size);
    const rng::Stream s(p.seed, rng::Purpose::CellPlace, first_index);
    uint64_t k = 0;
    std::vector<Cell> members;
    for (int attempt = 0; attempt < kClusterAttempts && members.size() < 2; ++attempt) {
      members.clear();
      Cell first = draw_cell_shape(p, three_d, first_index);
      bool ok = false;
      for (int t = 0; t < kSingleAttempts && !ok; ++t, k += 3) {
        set_cell_centre(first, placer.random_position(s, k), scene);
        ok = placer.clear_of_others(first);
      }
      if (!ok) continue;
      members.push_back(first);
      for (int64_t m = 1; m < size; ++m) {
        Cell c = draw_cell_shape(p, three_d, first_index + static_cast<uint64_t>(m));
        for (int t = 0; t < kMemberAttempts; ++t) {
          const Cell& partner =
              members[static_cast<size_t>(s.uniform(k++) * static_cast<double>(members.size()))];
          const Vec3 u = random_direction(s, k, three_d);
          k += 2;
          const Vec3 mu{-u[0], -u[1], -u[2]};
          const double dist =
              (radial_extent(partner, u) + radial_extent(c, mu)) * (1.0 - p.overlap);
          const Vec3 centre{partner.centre[0] + u[0] * dist, partner.centre[1] + u[1] * dist,
                            partner.centre[2] + u[2] * dist};
          if (!placer.inside(centre)) continue;
          set_cell_centre(c, centre, scene);
          if (placer.fits_cluster(c, members) && placer.clear_of_others(c)) {
            members.push_back(c);
            break;
          }
        }
      }
    }
    if (members.size() >= 2) {
      dropped += size - static_cast<int64_t>(members.size());
      for (Cell& c : members) placer.commit(std::move(c), cluster_id);
      ++cluster_id;
    } else {
      dropped += size;
    }
  }
  scene.clustered = static_cast<int64_t>(placer.placed.size());

  for (; index < static_cast<uint64_t>(n); ++index) {
    const rng::Stream s(p.seed, rng::Purpose::CellPlace, index);
    Cell c = draw_cell_shape(p, three_d, index);
    bool ok = false;
    for (uint64_t t = 0; t < kSingleAttempts && !ok; ++t) {
      set_cell_centre(c, placer.random_position(s, t * 3), scene);
      ok = placer.clear_of_others(c);
    }
    if (ok) {
      placer.commit(std::move(c), -1);
    } else {
      ++dropped;
    }
  }
  if (dropped > 0) {
    log::warn("synth: placed {} of {} cells ({} found no room at density {:.3g}, diameter {} px)",
              placer.placed.size(), n, dropped, p.density, p.diameter);
  }

  // Labels follow the raster order of the centre voxels.
  scene.cells = std::move(placer.placed);
  std::sort(scene.cells.begin(), scene.cells.end(),
            [](const Cell& a, const Cell& b) { return a.pixel < b.pixel; });
  scene.by_y.resize(scene.cells.size());
  for (size_t i = 0; i < scene.cells.size(); ++i) {
    scene.by_y[i] = static_cast<int32_t>(i);
    scene.max_rows = std::max(scene.max_rows, scene.cells[i].hi[1] - scene.cells[i].lo[1] + 1);
  }
  std::stable_sort(scene.by_y.begin(), scene.by_y.end(), [&](int32_t a, int32_t b) {
    return scene.cells[static_cast<size_t>(a)].lo[1] < scene.cells[static_cast<size_t>(b)].lo[1];
  });
  return scene;
}

}  // namespace umamba::synth
