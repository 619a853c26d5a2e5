// Cell shapes and their placement in the image.
//
// What: N star-shaped cells with a log-normal size spread, random orientation and elongation,
// a smooth random boundary, and positions such that a requested fraction of them touch (in
// clusters) while the others keep a minimum gap to every other cell.
//
// Shape: a cell is an ellipse (2D) or ellipsoid (3D) with semi-axes from the equivalent diameter
// and the elongation, rotated at random (2D: uniform angle; 3D: uniform random rotation from a
// unit quaternion, Shoemake, Graphics Gems III, 1992), whose radius in the direction n (in the
// ellipsoid's normalised frame w = L·(p - c)) is scaled by
//     f(n) = 1 + sum_j a_j cos(omega_j (n · v_j) + phi_j),   sum_j |a_j| = irregularity.
// The normalised distance of a point is d(p) = |w| / f(w / |w|); the cell is {d < 1}, which is
// star-shaped about the centre. All coordinates are in XY pixels: Z is scaled by
// aspect = spacing_z / spacing_xy, so shapes are isotropic in µm and anisotropic in voxels.
//
// Placement (serial, random sequential adsorption on a uniform grid of bins): cells are split
// into touching clusters of 2..max_cluster cells (round(touching·N) cells in all) and single cells;
// clusters are placed first. A cluster's first cell and every single cell take random positions
// whose support-function separation from every other cell is at least `gap` (separating-axis test
// along the line of centres: sufficient for disjointness). Each further cluster member is placed
// against a random earlier member at centre distance (rho_i(u) + rho_j(-u))·(1 - overlap), rho
// being the exact radial extent, so the two overlap along their line of centres; the overlap is
// split by the smaller normalised distance when the labels are drawn (render.h).
// Limits: positions that fail after a fixed number of attempts are dropped (counted in the scene);
// at densities near the jamming limit of random sequential adsorption (about 0.55 of the area for
// discs, less with the gap) fewer cells than requested are placed.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "synth/random.h"
#include "synth/synth.h"

namespace umamba::synth {

constexpr int kRidges = 3;  // boundary perturbation terms per cell

struct Cell {
  std::array<double, 3> centre{};  // (z, y, x) in XY pixels (z = slice · aspect)
  std::array<double, 9> L{};       // row-major; w = L·(p - centre), |w| = 1 on the base ellipsoid
  std::array<double, 9> A{};  // L⁻¹L⁻ᵀ = R diag(semi-axes²) Rᵀ, for the support function
  std::array<std::array<double, 3>, kRidges> ridge_dir{};  // unit vectors in the w frame
  std::array<double, kRidges> ridge_amp{}, ridge_freq{}, ridge_phase{};
  double fmax = 1.0;                // 1 + sum |a_j|: the cell lies inside |w| < fmax
  double diameter = 0.0;            // equivalent diameter of the base ellipse(-oid), px
  double brightness = 1.0;          // relative, mean 1
  std::array<double, 3> nucleus{};  // nucleus centre in the w frame (RGB rendering)
  std::array<int64_t, 3> pixel{};   // the centre's voxel (z, y, x): always labelled with this cell
  std::array<int64_t, 3> lo{}, hi{};  // inclusive voxel bounding box, clipped to the image
  int32_t cluster = -1;               // index of its touching cluster, -1 for a single cell
};

// f(n) for a unit vector n in the w frame.
inline double boundary_factor(const Cell& cell, const std::array<double, 3>& n) {
  double f = 1.0;
  for (int j = 0; j < kRidges; ++j) {
    const auto& v = cell.ridge_dir[j];
    f += cell.ridge_amp[j] *
         rng::cos(cell.ridge_freq[j] * (n[0] * v[0] + n[1] * v[1] + n[2] * v[2]) +
                  cell.ridge_phase[j]);
  }
  return f;
}

// d(p) for p - centre = v (z, y, x in XY pixels): < 1 inside. Returns 2 when |w| >= fmax.
inline double normalized_distance(const Cell& cell, const std::array<double, 3>& v) {
  const auto& L = cell.L;
  const double w0 = L[0] * v[0] + L[1] * v[1] + L[2] * v[2];
  const double w1 = L[3] * v[0] + L[4] * v[1] + L[5] * v[2];
  const double w2 = L[6] * v[0] + L[7] * v[1] + L[8] * v[2];
  const double q = w0 * w0 + w1 * w1 + w2 * w2;
  if (q >= cell.fmax * cell.fmax) return 2.0;
  if (q == 0.0) return 0.0;
  const double len = std::sqrt(q);
  return len / boundary_factor(cell, {w0 / len, w1 / len, w2 / len});
}
// Distance from the centre to the boundary along the unit vector u (XY pixels).
double radial_extent(const Cell& cell, const std::array<double, 3>& u);
// Support function of the bounding ellipsoid |w| <= fmax: max over the cell of (p - centre)·u.
double support(const Cell& cell, const std::array<double, 3>& u);

struct Scene {
  int64_t depth = 1, height = 0, width = 0;
  double aspect = 1.0;      // Z step in XY pixels (spacing_z / spacing_xy; 1 in 2D)
  std::vector<Cell> cells;  // label of cells[i] is i + 1
  int64_t requested = 0;
  int64_t clustered = 0;      // placed cells that belong to a touching cluster
  int64_t max_rows = 0;       // tallest bounding box, in rows
  std::vector<int32_t> by_y;  // cell indices sorted by lo[1] (then index)

  // Indices of the cells whose bounding boxes meet rows [y0, y1), in increasing order.
  std::vector<int32_t> cells_in_rows(int64_t y0, int64_t y1) const;
};

// Draws the shape of cell `index` (centre unset, bounding box not computed).
Cell draw_cell_shape(const SynthParams& params, bool three_d, uint64_t index);
// Sets centre-dependent fields (pixel, bounding box) once the centre is known.
void set_cell_centre(Cell& cell, const std::array<double, 3>& centre, const Scene& scene);

// Places the cells (deterministic for params.seed; serial).
Scene place_cells(const SynthParams& params);

}  // namespace umamba::synth
