// Synthetic fluorescence-like cell images with instance labels, 2D and 3D.
//
// What: a scene of star-shaped cells (randomly oriented ellipses/ellipsoids whose radius is
// modulated by a few smooth random ridges) is placed in the image with a controlled size spread,
// density and fraction of cells in contact, labelled 1..N, and rendered as a microscope would see
// it: per-cell brightness, textured interiors, a dimmer rim, uneven illumination, a background
// level, Gaussian blur (a PSF that is longer along Z in 3D), Poisson shot noise and Gaussian read
// noise, and a camera offset. Z spacing may differ from XY (anisotropic stacks).
//
// Method: see cells.h (shapes and placement) and render.h (labels and intensities, band by band).
// Every random value is a function of (seed, cell or pixel index) (random.h), so the output is
// the same for every thread count, band height and machine.
//
// Limits: cells are star-shaped about their centre (no crescents, no holes); cell contacts are
// pairwise overlaps resolved by the smaller normalised radius (a multiplicatively weighted
// Voronoi split), not by a mechanical model. Shot noise is exact Poisson below 12 expected photons
// and the Gaussian of the same mean and variance above. When the requested density cannot be
// packed with the required gaps, fewer cells are placed and the result says how many.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/image.h"

namespace umamba::synth {

struct SynthParams {
  // ---- image
  int64_t depth = 1;     // Z slices (1: a 2D image)
  int64_t height = 512;  // Y rows
  int64_t width = 512;   // X columns
  int channels = 1;  // 1: grey (cells glow as nuclei); 3: RGB-like (R cytoplasm, G weak, B nucleus)
  DType dtype = DType::U16;  // U8, U16 or F32
  double spacing_xy = 0.5;   // µm per pixel in X and Y
  double spacing_z = 1.0;    // µm per slice (used when depth > 1)
  uint64_t seed = 1;

  // ---- cells (sizes in XY pixels)
  int64_t cells = 0;       // number of cells; 0: from `density`
  double density = 0.2;    // target fraction of the image covered by cells (when cells == 0)
  double diameter = 12.0;  // mean equivalent diameter, px
  // Relative spread of diameters: log-normal with this sigma, cut at ±2 sigma (see
  // diameter_range()).
  double diameter_spread = 0.2;
  double elongation = 1.5;    // largest axis ratio (1: circles/spheres), uniform in [1, this]
  double irregularity = 0.1;  // boundary perturbation amplitude, fraction of the radius (< 0.5)
  double touching = 0.3;      // fraction of cells in contact with at least one other cell
  double overlap = 0.2;       // depth of the overlap of two touching cells, fraction of their radii
  int max_cluster = 4;        // touching cells come in clusters of 2..max_cluster cells
  double gap = 2.0;           // minimum distance between cells that do not touch, px (at least
                              // one voxel diagonal is enforced)

  // ---- intensities (fractions of full scale)
  double background = 0.08;       // background level (scaled by the illumination)
  double contrast = 0.4;          // mean cell level above the background
  double intensity_spread = 0.3;  // coefficient of variation of per-cell brightness
  double texture = 0.25;          // amplitude of the interior texture (relative)
  double texture_scale = 0.0;     // texture grain, px; 0: diameter / 4
  double edge_falloff = 0.3;      // rim dimming: brightness × (1 - edge_falloff·r²), r in [0,1]
  double illumination = 0.2;      // amplitude of the smooth uneven-illumination field (relative)
  double nucleus_ratio = 0.5;     // RGB: nucleus size relative to the cell
  double offset = 0.0;            // camera offset added after noise

  // ---- optics and detector
  double blur = 1.0;      // Gaussian PSF sigma in X and Y, px (0: none)
  double blur_z = -1.0;   // sigma along Z, slices; < 0: 2.5 × blur in µm, converted to slices
  double photons = 200;   // expected photons at full scale (Poisson shot noise); 0: none
  double noise = 0.01;    // Gaussian read noise sigma, fraction of full scale
  double full_scale = 0;  // value of 1.0 in the output; 0: 255 (u8), 4095 (u16), 1 (f32)
};

// Checks ranges and combinations; throws Error naming the parameter and value.
void validate(const SynthParams& params);

// The diameter range the cells are drawn from: [mean·e^(-2s - s²/2), mean·e^(2s - s²/2)], s =
// diameter_spread (the log-normal's mean is `diameter`).
struct DiameterRange {
  double min = 0, max = 0;
};
DiameterRange diameter_range(const SynthParams& params);

// Number of cells placed for these parameters when params.cells == 0.
int64_t cells_for_density(const SynthParams& params);

// Z-blur sigma in slices after resolving the automatic default.
double effective_blur_z(const SynthParams& params);
double effective_full_scale(const SynthParams& params);

struct SynthResult {
  Image image;   // [C, Z, Y, X] params.dtype, geometry spacing in µm
  Image labels;  // [1, Z, Y, X] U16 (or U32 above 65,535 cells), 0 background, 1..N consecutive
  int64_t cells_requested = 0;
  int64_t cells_placed = 0;     // N, the largest label
  int64_t cells_clustered = 0;  // placed as members of a touching cluster
};

// One band of rows [y0, y1) of every slice (streaming output).
struct Band {
  int64_t y0 = 0, y1 = 0;
  Image image;   // [C, Z, y1-y0, X]
  Image labels;  // [1, Z, y1-y0, X]
};

struct Scene;  // the placed cells (cells.h)

// Places the cells once (serially, fast) and renders the image whole or band by band. Bands are
// pixel-identical to the same rows of the whole image, whatever their height.
class Generator {
 public:
  explicit Generator(const SynthParams& params);
  ~Generator();
  Generator(Generator&&) noexcept;
  Generator& operator=(Generator&&) noexcept;

  const SynthParams& params() const;
  Shape image_shape() const;  // [C, Z, Y, X]
  Shape label_shape() const;  // [1, Z, Y, X]
  DType label_dtype() const;  // U16, or U32 above 65,535 cells
  Geometry geometry() const;  // spacing in µm
  int64_t cells_requested() const;
  int64_t cells_placed() const;
  int64_t cells_clustered() const;
  const Scene& scene() const;

  // Rows [y0, y1) of every slice. Thread-safe (const); parallel inside with TBB.
  Band render_band(int64_t y0, int64_t y1) const;
  // The whole image: bands of `band_rows` rows (0: chosen from the thread count and the cell
  // size) rendered in parallel with TBB. The pixels do not depend on the band height.
  SynthResult render(int64_t band_rows = 0) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Generator(params).render().
SynthResult generate(const SynthParams& params);

}  // namespace umamba::synth
