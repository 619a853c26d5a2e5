// Drawing a placed scene: instance labels and the microscope image, one band of rows at a time.
//
// Labels: every voxel takes the cell with the smallest normalised distance d < 1 (cells.h), ties
// to the lower label; each cell's centre voxel is always its own. A cell's voxels not connected
// to its centre voxel (face connectivity: 4 in 2D, 6 in 3D) become background, so every label is
// one connected component in the strictest sense. To label rows [r0, r1) exactly, the band is
// extended to the union of the bounding boxes of the cells meeting it: all cells competing for
// those voxels, and every voxel of the cells to be checked for connectivity, lie inside.
//
// Intensities (fractions of full scale, per voxel p of cell i):
//   signal = illumination(p) · (background + contrast · b_i · rim(d) · texture(p))
// with rim(d) = (1 - edge_falloff·d²) normalised to mean 1 over the cell, texture = 1 + texture ·
// value noise (two octaves, Perlin-style lattice hashing with smoothstep interpolation; Perlin,
// SIGGRAPH 1985), illumination = 1 + illumination · a value-noise field with a period of half the
// image. RGB: R = cytoplasm (dimmer over the nucleus), G = 0.35·R's cell term, B = nucleus.
// Then a separable Gaussian blur (sigma in X/Y and Z, truncated at 4 sigma, mirror boundary
// 'dcba|abcd' as scipy.ndimage's 'reflect'), shot noise (photons per full scale: Poisson by
// inversion below 12 expected photons, the Gaussian of equal mean and variance above), Gaussian
// read noise, the camera offset, then scaling to full scale and rounding/clamping to the dtype.
// Limits: each band holds float buffers for its rows plus halo (C·Z·rows·X floats).
#pragma once

#include <cstdint>
#include <vector>

#include "core/image.h"
#include "synth/cells.h"
#include "synth/synth.h"

namespace umamba::synth {

// The noise-free intensity model at one voxel (shared by the band renderer and the tests'
// reference): everything before blur and noise.
class Shading {
 public:
  Shading(const SynthParams& params, const Scene& scene);
  // 1 + illumination · field(p), clamped at 0; (z, y, x) are voxel indices.
  double illumination(int64_t z, int64_t y, int64_t x) const;
  // 1 + texture · (0.7 n1 + 0.3 n2), two octaves of value noise in [-1, 1].
  double texture(int64_t z, int64_t y, int64_t x) const;
  // illumination() for x = 0..width-1 of row (z, y), bit-identical, faster.
  void illumination_row(int64_t z, int64_t y, double* out) const;
  // Signal of every channel (out[0..channels-1]) before blur, for a voxel with label `label`
  // (0: background) at normalised distance d from its cell's centre, under illumination `illum`.
  void signal(int64_t z, int64_t y, int64_t x, uint32_t label, double d, double illum,
              double* out) const;
  // Value noise in [-1, 1] for lattice period `period` (XY pixels), octave stream `octave`.
  double value_noise(int octave, double period, int64_t z, int64_t y, int64_t x) const;

 private:
  const SynthParams& p_;
  const Scene& scene_;
  double rim_norm_ = 1.0;
  double texture_period_ = 1.0;
  double illum_period_ = 1.0;
  std::vector<int64_t> illum_ix_;  // per x: lattice column and smoothed fraction
  std::vector<double> illum_sx_;
  double illumination_column(int64_t z, int64_t y, int64_t cx) const;
};

// Buffers a band needs, reused from band to band by one thread.
struct BandScratch {
  std::vector<uint32_t> labels;
  std::vector<float> distance;
  std::vector<uint8_t> seen;
  std::vector<std::array<int64_t, 3>> stack;
  std::vector<float> signal, blurred, padded, slab;
  std::vector<double> illumination;
};

// Rows [first_row, first_row + rows) of every slice, held in BandScratch::labels / distance as
// [(z * rows + y - first_row) * width + x].
struct LabelBand {
  int64_t first_row = 0, rows = 0;
};

// Normalised Gaussian kernel for sigma (empty for sigma <= 0), radius int(4 sigma + 0.5).
std::vector<float> gaussian_kernel(double sigma);

// Labels of rows [r0, r1) of every slice into scratch.labels (0 background, i + 1 for
// scene.cells[i]) and scratch.distance (d of the labelled cell, 1 for background), over an
// extended band that contains [r0, r1) (the returned rows). Rows [r0, r1) are exact whatever
// the band: independent of the rows around it; rows outside it are not.
LabelBand label_rows(const Scene& scene, int64_t r0, int64_t r1, BandScratch& scratch);

// Renders rows [y0, y1) into `image` ([C, Z, y1-y0, X] view of params.dtype) and `labels`
// ([1, Z, y1-y0, X] view of U16 or U32).
void render_rows(const SynthParams& params, const Scene& scene, int64_t y0, int64_t y1,
                 Image& image, Image& labels, BandScratch* scratch = nullptr);

// Shot noise: a Poisson(lambda) count from one uniform u in (0, 1), by inversion (lambda < 12).
int64_t poisson_inversion(double lambda, double u);

}  // namespace umamba::synth
