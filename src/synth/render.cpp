// Labels and intensities of a placed scene, band by band; the model is described in render.h.
#include "synth/render.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "core/error.h"
#include "synth/random.h"

namespace umamba::synth {

namespace {

// scipy.ndimage 'reflect' (d c b a | a b c d | d c b a) for any integer index.
inline int64_t reflect(int64_t i, int64_t n) {
  if (i >= 0 && i < n) return i;
  const int64_t period = 2 * n;
  int64_t m = i % period;
  if (m < 0) m += period;
  return m < n ? m : period - 1 - m;
}

// dst[i] += w · src[i]; the arrays never overlap (lets the compiler vectorise).
inline void axpy(float* __restrict dst, const float* __restrict src, float w, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] += w * src[i];
}

inline double smooth(double t) {
  return t * t * (3.0 - 2.0 * t);
}

// Lattice counter of (iz, iy, ix), each below 2^21.
inline uint64_t lattice_counter(int64_t iz, int64_t iy, int64_t ix) {
  return (static_cast<uint64_t>(iz) << 42) ^ (static_cast<uint64_t>(iy) << 21) ^
         static_cast<uint64_t>(ix);
}

}  // namespace

// ---- intensity model

Shading::Shading(const SynthParams& params, const Scene& scene) : p_(params), scene_(scene) {
  const bool three_d = scene.depth > 1;
  rim_norm_ = 1.0 - p_.edge_falloff * (three_d ? 0.6 : 0.5);  // mean of 1 - f·d² over the cell
  texture_period_ = p_.texture_scale > 0 ? p_.texture_scale : std::max(1.5, p_.diameter / 4.0);
  const double extent =
      std::max({double(scene.width), double(scene.height), double(scene.depth) * scene.aspect});
  illum_period_ = std::max(2.0, extent / 2.0);
  // X positions in the illumination lattice, shared by illumination() and illumination_row().
  illum_ix_.resize(static_cast<size_t>(scene.width));
  illum_sx_.resize(static_cast<size_t>(scene.width));
  for (int64_t x = 0; x < scene.width; ++x) {
    const double fx = static_cast<double>(x) / illum_period_ + 1.0;
    const int64_t ix = static_cast<int64_t>(fx);
    illum_ix_[static_cast<size_t>(x)] = ix;
    illum_sx_[static_cast<size_t>(x)] = smooth(fx - static_cast<double>(ix));
  }
}

double Shading::value_noise(int octave, double period, int64_t z, int64_t y, int64_t x) const {
  const rng::Stream s(p_.seed, rng::Purpose::Texture, static_cast<uint64_t>(octave));
  const double inv = 1.0 / period;
  // Coordinates in XY pixels, shifted by one lattice step so that indices are never negative.
  const double fx = static_cast<double>(x) * inv + 1.0, fy = static_cast<double>(y) * inv + 1.0;
  const int64_t ix = static_cast<int64_t>(fx), iy = static_cast<int64_t>(fy);
  const double sx = smooth(fx - static_cast<double>(ix)), sy = smooth(fy - static_cast<double>(iy));
  auto plane = [&](int64_t iz) {
    const double v00 = s.symmetric(lattice_counter(iz, iy, ix));
    const double v01 = s.symmetric(lattice_counter(iz, iy, ix + 1));
    const double v10 = s.symmetric(lattice_counter(iz, iy + 1, ix));
    const double v11 = s.symmetric(lattice_counter(iz, iy + 1, ix + 1));
    const double a = v00 + (v01 - v00) * sx;
    const double b = v10 + (v11 - v10) * sx;
    return a + (b - a) * sy;
  };
  if (scene_.depth == 1) return plane(0);
  const double fz = static_cast<double>(z) * scene_.aspect * inv + 1.0;
  const int64_t iz = static_cast<int64_t>(fz);
  const double sz = smooth(fz - static_cast<double>(iz));
  const double a = plane(iz), b = plane(iz + 1);
  return a + (b - a) * sz;
}

double Shading::texture(int64_t z, int64_t y, int64_t x) const {
  if (p_.texture == 0.0) return 1.0;
  const double n1 = value_noise(0, texture_period_, z, y, x);
  const double n2 = value_noise(1, std::max(1.0, texture_period_ / 2.0), z, y, x);
  return 1.0 + p_.texture * (0.7 * n1 + 0.3 * n2);
}

// The illumination field interpolated along Z and Y at lattice column cx.
double Shading::illumination_column(int64_t z, int64_t y, int64_t cx) const {
  const rng::Stream s(p_.seed, rng::Purpose::Illumination);
  const double inv = 1.0 / illum_period_;
  const double fy = static_cast<double>(y) * inv + 1.0;
  const int64_t iy = static_cast<int64_t>(fy);
  const double sy = smooth(fy - static_cast<double>(iy));
  auto at = [&](int64_t cz, int64_t cy) { return s.symmetric(lattice_counter(cz, cy, cx)); };
  if (scene_.depth == 1) return at(0, iy) + (at(0, iy + 1) - at(0, iy)) * sy;
  const double fz = static_cast<double>(z) * scene_.aspect * inv + 1.0;
  const int64_t iz = static_cast<int64_t>(fz);
  const double sz = smooth(fz - static_cast<double>(iz));
  const double a = at(iz, iy) + (at(iz, iy + 1) - at(iz, iy)) * sy;
  const double b = at(iz + 1, iy) + (at(iz + 1, iy + 1) - at(iz + 1, iy)) * sy;
  return a + (b - a) * sz;
}

double Shading::illumination(int64_t z, int64_t y, int64_t x) const {
  if (p_.illumination == 0.0) return 1.0;
  const int64_t ix = illum_ix_[static_cast<size_t>(x)];
  const double sx = illum_sx_[static_cast<size_t>(x)];
  const double c0 = illumination_column(z, y, ix), c1 = illumination_column(z, y, ix + 1);
  return std::max(0.0, 1.0 + p_.illumination * (c0 + (c1 - c0) * sx));
}

void Shading::illumination_row(int64_t z, int64_t y, double* out) const {
  const int64_t W = scene_.width;
  if (p_.illumination == 0.0) {
    std::fill(out, out + W, 1.0);
    return;
  }
  const int64_t last = illum_ix_.back() + 1;
  double col[64];  // the lattice has at most 4 columns across the image
  UMAMBA_CHECK(last < 64, "synth: illumination lattice of {} columns", last + 1);
  for (int64_t cx = 0; cx <= last; ++cx) col[cx] = illumination_column(z, y, cx);
  for (int64_t x = 0; x < W; ++x) {
    const int64_t ix = illum_ix_[static_cast<size_t>(x)];
    const double sx = illum_sx_[static_cast<size_t>(x)];
    const double c0 = col[ix], c1 = col[ix + 1];
    out[x] = std::max(0.0, 1.0 + p_.illumination * (c0 + (c1 - c0) * sx));
  }
}

void Shading::signal(int64_t z, int64_t y, int64_t x, uint32_t label, double d, double illum,
                     double* out) const {
  const int C = p_.channels;
  if (label == 0) {
    for (int c = 0; c < C; ++c) out[c] = illum * p_.background;
    return;
  }
  const Cell& cell = scene_.cells[label - 1];
  const double tex = texture(z, y, x);
  const double cell_term = cell.brightness * (1.0 - p_.edge_falloff * d * d) / rim_norm_ * tex;
  if (C == 1) {
    out[0] = illum * (p_.background + p_.contrast * cell_term);
    return;
  }
  // RGB: nucleus membership from the unperturbed ellipse frame around the nucleus centre.
  const std::array<double, 3> v{static_cast<double>(z) * scene_.aspect - cell.centre[0],
                                static_cast<double>(y) - cell.centre[1],
                                static_cast<double>(x) - cell.centre[2]};
  double dn2 = 0.0;
  for (int r = 0; r < 3; ++r) {
    const double w = cell.L[r * 3] * v[0] + cell.L[r * 3 + 1] * v[1] + cell.L[r * 3 + 2] * v[2];
    const double e = (w - cell.nucleus[r]) / p_.nucleus_ratio;
    dn2 += e * e;
  }
  const bool in_nucleus = dn2 < 1.0;
  const double cyto = cell_term * (in_nucleus ? 0.4 : 1.0);
  const double nucleus =
      in_nucleus ? cell.brightness * (1.0 - p_.edge_falloff * dn2) / rim_norm_ * tex : 0.0;
  out[0] = illum * (p_.background + p_.contrast * cyto);
  out[1] = illum * (p_.background + p_.contrast * 0.35 * cyto);
  out[2] = illum * (p_.background + p_.contrast * nucleus);
}

// ---- blur and noise

std::vector<float> gaussian_kernel(double sigma) {
  if (!(sigma > 0.0)) return {};
  const int64_t radius = static_cast<int64_t>(4.0 * sigma + 0.5);
  std::vector<double> w(static_cast<size_t>(2 * radius + 1));
  double sum = 0.0;
  for (int64_t i = -radius; i <= radius; ++i) {
    w[static_cast<size_t>(i + radius)] =
        rng::exp(-0.5 * static_cast<double>(i * i) / (sigma * sigma));
    sum += w[static_cast<size_t>(i + radius)];
  }
  std::vector<float> k(w.size());
  for (size_t i = 0; i < w.size(); ++i) k[i] = static_cast<float>(w[i] / sum);
  return k;
}

int64_t poisson_inversion(double lambda, double u) {
  double p = rng::exp(-lambda);
  double cdf = p;
  int64_t k = 0;
  while (u > cdf && k < 1000) {
    ++k;
    p *= lambda / static_cast<double>(k);
    cdf += p;
    if (p == 0.0 && k > lambda) break;  // the remaining tail is below double precision
  }
  return k;
}

// ---- labels

LabelBand label_rows(const Scene& scene, int64_t r0, int64_t r1, BandScratch& scratch) {
  const int64_t Z = scene.depth, W = scene.width;
  const std::vector<int32_t> core = scene.cells_in_rows(r0, r1);
  // The extended band: the union of the bounding boxes of the cells meeting [r0, r1).
  int64_t e0 = r0, e1 = r1;
  for (int32_t i : core) {
    e0 = std::min(e0, scene.cells[static_cast<size_t>(i)].lo[1]);
    e1 = std::max(e1, scene.cells[static_cast<size_t>(i)].hi[1] + 1);
  }
  const int64_t E = e1 - e0;
  std::vector<uint32_t>& lab = scratch.labels;
  std::vector<float>& best = scratch.distance;
  lab.assign(static_cast<size_t>(Z * E * W), 0u);
  best.assign(lab.size(), 1.0f);
  auto at = [&](int64_t z, int64_t y, int64_t x) {
    return static_cast<size_t>((z * E + (y - e0)) * W + x);
  };

  // Rasterise every cell meeting the extended band, in increasing label order (strict < keeps
  // the lower label on ties).
  for (int32_t i : scene.cells_in_rows(e0, e1)) {
    const Cell& c = scene.cells[static_cast<size_t>(i)];
    const uint32_t label = static_cast<uint32_t>(i) + 1;
    const int64_t ylo = std::max(c.lo[1], e0), yhi = std::min(c.hi[1], e1 - 1);
    for (int64_t z = c.lo[0]; z <= c.hi[0]; ++z)
      for (int64_t y = ylo; y <= yhi; ++y)
        for (int64_t x = c.lo[2]; x <= c.hi[2]; ++x) {
          double d;
          if (z == c.pixel[0] && y == c.pixel[1] && x == c.pixel[2]) {
            d = -1.0;
          } else {
            d = normalized_distance(
                c, {static_cast<double>(z) * scene.aspect - c.centre[0],
                    static_cast<double>(y) - c.centre[1], static_cast<double>(x) - c.centre[2]});
            if (d >= 1.0) continue;
          }
          const size_t k = at(z, y, x);
          if (static_cast<float>(d) < best[k]) {
            best[k] = static_cast<float>(d);
            lab[k] = label;
          }
        }
  }

  // Keep the face-connected component of each cell's centre voxel; the rest becomes background.
  std::vector<uint8_t>& seen = scratch.seen;
  std::vector<std::array<int64_t, 3>>& stack = scratch.stack;
  for (int32_t i : core) {
    const Cell& c = scene.cells[static_cast<size_t>(i)];
    const uint32_t label = static_cast<uint32_t>(i) + 1;
    const int64_t bz = c.hi[0] - c.lo[0] + 1, by = c.hi[1] - c.lo[1] + 1,
                  bx = c.hi[2] - c.lo[2] + 1;
    seen.assign(static_cast<size_t>(bz * by * bx), 0);
    auto local = [&](int64_t z, int64_t y, int64_t x) {
      return static_cast<size_t>(((z - c.lo[0]) * by + (y - c.lo[1])) * bx + (x - c.lo[2]));
    };
    stack.clear();
    stack.push_back(c.pixel);
    seen[local(c.pixel[0], c.pixel[1], c.pixel[2])] = 1;
    while (!stack.empty()) {
      const auto [z, y, x] = stack.back();
      stack.pop_back();
      const std::array<std::array<int64_t, 3>, 6> nb{{{z - 1, y, x},
                                                      {z + 1, y, x},
                                                      {z, y - 1, x},
                                                      {z, y + 1, x},
                                                      {z, y, x - 1},
                                                      {z, y, x + 1}}};
      for (const auto& q : nb) {
        if (q[0] < c.lo[0] || q[0] > c.hi[0] || q[1] < c.lo[1] || q[1] > c.hi[1] ||
            q[2] < c.lo[2] || q[2] > c.hi[2])
          continue;
        const size_t l = local(q[0], q[1], q[2]);
        if (seen[l] || lab[at(q[0], q[1], q[2])] != label) continue;
        seen[l] = 1;
        stack.push_back(q);
      }
    }
    for (int64_t z = c.lo[0]; z <= c.hi[0]; ++z)
      for (int64_t y = c.lo[1]; y <= c.hi[1]; ++y)
        for (int64_t x = c.lo[2]; x <= c.hi[2]; ++x) {
          const size_t k = at(z, y, x);
          if (lab[k] == label && !seen[local(z, y, x)]) {
            lab[k] = 0;
            best[k] = 1.0f;
          }
        }
  }

  return {e0, E};
}

// ---- a band of the image

void render_rows(const SynthParams& p, const Scene& scene, int64_t y0, int64_t y1, Image& image,
                 Image& labels, BandScratch* scratch_in) {
  BandScratch local;
  BandScratch& scratch = scratch_in ? *scratch_in : local;
  const int64_t C = p.channels, Z = scene.depth, H = scene.height, W = scene.width;
  const int64_t R = y1 - y0;
  UMAMBA_CHECK(y0 >= 0 && y0 < y1 && y1 <= H, "synth: band rows [{}, {}) outside 0..{}", y0, y1, H);
  UMAMBA_CHECK(image.shape() == (Shape{C, Z, R, W}) && image.dtype() == p.dtype,
               "synth: band image must be {} {}", to_string(Shape{C, Z, R, W}),
               dtype_name(p.dtype));
  UMAMBA_CHECK(labels.shape() == (Shape{1, Z, R, W}) &&
                   (labels.dtype() == DType::U16 || labels.dtype() == DType::U32),
               "synth: band labels must be {} u16/u32", to_string(Shape{1, Z, R, W}));

  const std::vector<float> ky = gaussian_kernel(p.blur);
  const std::vector<float> kz = Z > 1 ? gaussian_kernel(effective_blur_z(p)) : std::vector<float>{};
  const int64_t ry = static_cast<int64_t>(ky.size() / 2);
  const int64_t s0 = std::max<int64_t>(0, y0 - ry), s1 = std::min(H, y1 + ry), S = s1 - s0;

  const LabelBand lb = label_rows(scene, s0, s1, scratch);
  const std::vector<uint32_t>& lab = scratch.labels;
  const std::vector<float>& dist = scratch.distance;
  // Index of (z, y, 0) in the label band.
  auto lab_row = [&](int64_t z, int64_t y) {
    return static_cast<size_t>((z * lb.rows + (y - lb.first_row)) * W);
  };

  // Signal before blur: [C, Z, S, W].
  const Shading shading(p, scene);
  std::vector<float>& sig = scratch.signal;
  sig.resize(static_cast<size_t>(C * Z * S * W));
  auto sig_at = [&](int64_t c, int64_t z, int64_t y, int64_t x) -> float& {
    return sig[static_cast<size_t>(((c * Z + z) * S + (y - s0)) * W + x)];
  };
  std::vector<double>& illum = scratch.illumination;
  illum.resize(static_cast<size_t>(W));
  double values[3];
  for (int64_t z = 0; z < Z; ++z)
    for (int64_t y = s0; y < s1; ++y) {
      const size_t row = lab_row(z, y);
      shading.illumination_row(z, y, illum.data());
      for (int64_t x = 0; x < W; ++x) {
        const uint32_t l = lab[row + static_cast<size_t>(x)];
        if (l == 0) {  // the background branch of Shading::signal, inline
          const float v = static_cast<float>(illum[static_cast<size_t>(x)] * p.background);
          for (int64_t c = 0; c < C; ++c) sig_at(c, z, y, x) = v;
          continue;
        }
        shading.signal(z, y, x, l, static_cast<double>(dist[row + static_cast<size_t>(x)]),
                       illum[static_cast<size_t>(x)], values);
        for (int64_t c = 0; c < C; ++c) sig_at(c, z, y, x) = static_cast<float>(values[c]);
      }
    }

  // Blur along X in place (row by row), then Y into the output rows, then Z.
  std::vector<float>& out = scratch.blurred;
  out.assign(static_cast<size_t>(C * Z * R * W), 0.0f);
  if (!ky.empty()) {
    const int64_t r = ry;
    std::vector<float>& padded = scratch.padded;
    padded.resize(static_cast<size_t>(W + 2 * r));
    for (int64_t row = 0; row < C * Z * S; ++row) {
      float* line = sig.data() + row * W;
      std::copy_n(line, W, padded.data() + r);
      for (int64_t i = 0; i < r; ++i) {
        padded[static_cast<size_t>(i)] = line[reflect(i - r, W)];
        padded[static_cast<size_t>(W + r + i)] = line[reflect(W + i, W)];
      }
      std::fill(line, line + W, 0.0f);
      for (size_t j = 0; j < ky.size(); ++j) axpy(line, padded.data() + j, ky[j], W);
    }
    for (int64_t c = 0; c < C; ++c)
      for (int64_t z = 0; z < Z; ++z)
        for (int64_t y = y0; y < y1; ++y) {
          float* dst = out.data() + ((c * Z + z) * R + (y - y0)) * W;
          for (size_t j = 0; j < ky.size(); ++j) {
            const int64_t yy = reflect(y + static_cast<int64_t>(j) - r, H);
            axpy(dst, &sig_at(c, z, yy, 0), ky[j], W);
          }
        }
  } else {
    for (int64_t c = 0; c < C; ++c)
      for (int64_t z = 0; z < Z; ++z)
        for (int64_t y = y0; y < y1; ++y)
          std::copy_n(&sig_at(c, z, y, 0), W, out.data() + ((c * Z + z) * R + (y - y0)) * W);
  }
  if (!kz.empty()) {
    const int64_t r = static_cast<int64_t>(kz.size() / 2);
    std::vector<float>& slab = scratch.slab;
    slab.resize(static_cast<size_t>(Z * W));
    for (int64_t c = 0; c < C; ++c)
      for (int64_t y = 0; y < R; ++y) {
        auto row_of = [&](int64_t z) { return out.data() + ((c * Z + z) * R + y) * W; };
        std::fill(slab.begin(), slab.end(), 0.0f);
        for (int64_t z = 0; z < Z; ++z) {
          float* dst = slab.data() + z * W;
          for (size_t j = 0; j < kz.size(); ++j) {
            axpy(dst, row_of(reflect(z + static_cast<int64_t>(j) - r, Z)), kz[j], W);
          }
        }
        for (int64_t z = 0; z < Z; ++z) std::copy_n(slab.data() + z * W, W, row_of(z));
      }
  }

  // Noise, offset, scale, cast.
  const double full = effective_full_scale(p);
  const rng::Stream read_noise(p.seed, rng::Purpose::Noise);
  const rng::Stream shot(p.seed, rng::Purpose::Poisson);
  const double var_read = p.noise * p.noise;
  const double inv_photons = p.photons > 0.0 ? 1.0 / p.photons : 0.0;
  const rng::FastNormal& gauss = rng::FastNormal::instance();
  visit_dtype(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, uint8_t> || std::is_same_v<T, uint16_t> ||
                  std::is_same_v<T, float>) {
      T* base = static_cast<T*>(image.data());
      const Shape st = image.strides();
      const double top = std::is_same_v<T, float> ? 0.0 : double(std::numeric_limits<T>::max());
      for (int64_t c = 0; c < C; ++c)
        for (int64_t z = 0; z < Z; ++z)
          for (int64_t y = y0; y < y1; ++y) {
            const float* src = out.data() + ((c * Z + z) * R + (y - y0)) * W;
            T* dst = base + c * st.c + z * st.z + (y - y0) * st.y;
            const uint64_t counter0 = static_cast<uint64_t>(((c * Z + z) * H + y) * W);
            for (int64_t x = 0; x < W; ++x) {
              const uint64_t counter = counter0 + static_cast<uint64_t>(x);
              double s = std::max(0.0, static_cast<double>(src[x]));
              if (p.photons > 0.0) {
                const double lambda = s * p.photons;
                if (lambda < 12.0) {
                  s = static_cast<double>(poisson_inversion(lambda, shot.open_uniform(counter))) /
                      p.photons;
                  if (p.noise > 0.0) s += p.noise * gauss(read_noise, counter);
                } else {
                  s += std::sqrt(s * inv_photons + var_read) * gauss(read_noise, counter);
                }
              } else if (p.noise > 0.0) {
                s += p.noise * gauss(read_noise, counter);
              }
              const double v = (s + p.offset) * full;
              if constexpr (std::is_same_v<T, float>) {
                dst[x * st.x] = static_cast<float>(v);
              } else {
                // Round half up; the value is clamped non-negative, so truncation is floor.
                dst[x * st.x] = static_cast<T>(static_cast<int64_t>(std::clamp(v, 0.0, top) + 0.5));
              }
            }
          }
    } else {
      fail("synth: output dtype {} is not u8, u16 or f32", dtype_name(p.dtype));
    }
  });

  // Labels of the output rows.
  const Shape ls = labels.strides();
  for (int64_t z = 0; z < Z; ++z)
    for (int64_t y = 0; y < R; ++y) {
      const uint32_t* src = lab.data() + lab_row(z, y0 + y);
      if (labels.dtype() == DType::U16) {
        uint16_t* dst = static_cast<uint16_t*>(labels.data()) + z * ls.z + y * ls.y;
        for (int64_t x = 0; x < W; ++x) dst[x * ls.x] = static_cast<uint16_t>(src[x]);
      } else {
        uint32_t* dst = static_cast<uint32_t*>(labels.data()) + z * ls.z + y * ls.y;
        for (int64_t x = 0; x < W; ++x) dst[x * ls.x] = src[x];
      }
    }
}

}  // namespace umamba::synth
