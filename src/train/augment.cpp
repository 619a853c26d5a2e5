// Device-side augmentation (see augment.h for what, method and limits).
#include "train/augment.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"
#include "train/tensor_text.h"

namespace umamba::train {

namespace F = torch::nn::functional;

namespace {

constexpr double kPi = std::numbers::pi;

double degrees(double d) {
  return d / 360.0 * 2.0 * kPi;
}

// 3×3 row-major products for batchgenerators' rotation matrices.
using Mat3 = std::array<double, 9>;
Mat3 matmul(const Mat3& a, const Mat3& b) {
  Mat3 r{};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 3; ++k) r[i * 3 + j] += a[i * 3 + k] * b[k * 3 + j];
  return r;
}
Mat3 rotation_x(double a) {
  const double c = std::cos(a), s = std::sin(a);
  return {1, 0, 0, 0, c, -s, 0, s, c};
}
Mat3 rotation_y(double a) {
  const double c = std::cos(a), s = std::sin(a);
  return {c, 0, s, 0, 1, 0, -s, 0, c};
}
Mat3 rotation_z(double a) {
  const double c = std::cos(a), s = std::sin(a);
  return {c, -s, 0, s, c, 0, 0, 0, 1};
}
// batchgenerators rotate_coords_3d: row vector · (Rx · Ry · Rz).
Mat3 rotation_3d(double ax, double ay, double az) {
  Mat3 m{1, 0, 0, 0, 1, 0, 0, 0, 1};
  m = matmul(m, rotation_x(ax));
  m = matmul(m, rotation_y(ay));
  m = matmul(m, rotation_z(az));
  return m;
}

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// A generator for torch's random ops on `device`, seeded.
at::Generator make_generator(const torch::Device& device, uint64_t seed) {
  at::Generator g;
  if (device.is_cuda()) {
    g = at::detail::getCUDAHooks().getNewGenerator(device.has_index() ? device.index() : 0);
  } else {
    g = at::detail::createCPUGenerator(seed);
  }
  std::lock_guard<std::mutex> lock(g.mutex());
  g.set_current_seed(seed);
  return g;
}

// batchgenerators' draw for ranges around 1: below 1 or above 1 with probability ½.
double draw_around_one(AugmentRandom& rng, double lo, double hi) {
  if (rng.uniform() < 0.5 && lo < 1) return rng.uniform(lo, 1.0);
  return rng.uniform(std::max(lo, 1.0), hi);
}

std::vector<int64_t> spatial_shape(const torch::Tensor& t, int64_t first) {
  std::vector<int64_t> s;
  for (int64_t d = first; d < t.dim(); ++d) s.push_back(t.size(d));
  return s;
}

// The 2D/3D affine sampling of one sample: image [C,*S] and labels [1,*S] to [C,*P], [1,*P].
// `m` is the dims×dims matrix (row-major) mapping centred output voxel offsets to centred input
// offsets in voxel units.
Augmented sample_affine(const torch::Tensor& image, const torch::Tensor& labels,
                        const std::vector<double>& m, const std::vector<int64_t>& patch,
                        int64_t num_classes) {
  const int dims = static_cast<int>(patch.size());
  const std::vector<int64_t> S = spatial_shape(image, 1);
  UMAMBA_CHECK(static_cast<int>(S.size()) == dims, "spatial_transform: image has {} axes, patch {}",
               S.size(), dims);
  // theta in normalised coordinates (align_corners = true): D_in · M · D_out, then axes reversed to
  // grid_sample's (x, y, z) order.
  std::vector<double> a(static_cast<size_t>(dims * dims));
  for (int i = 0; i < dims; ++i) {
    for (int j = 0; j < dims; ++j) {
      const double d_in = S[i] > 1 ? 2.0 / static_cast<double>(S[i] - 1) : 0.0;
      const double d_out = static_cast<double>(patch[j] - 1) / 2.0;
      a[static_cast<size_t>(i * dims + j)] = d_in * m[static_cast<size_t>(i * dims + j)] * d_out;
    }
  }
  auto theta = torch::zeros({1, dims, dims + 1}, torch::kDouble);
  auto acc = theta.accessor<double, 3>();
  for (int i = 0; i < dims; ++i)
    for (int j = 0; j < dims; ++j)
      acc[0][dims - 1 - i][dims - 1 - j] = a[static_cast<size_t>(i * dims + j)];
  std::vector<int64_t> size{1, image.size(0)};
  size.insert(size.end(), patch.begin(), patch.end());
  const auto grid =
      F::affine_grid(theta.to(torch::kFloat).to(image.device()), size, /*align_corners=*/true);
  const F::GridSampleFuncOptions::mode_t mode =
      dims == 2 ? F::GridSampleFuncOptions::mode_t(torch::kBicubic)
                : F::GridSampleFuncOptions::mode_t(torch::kBilinear);
  Augmented out;
  out.data =
      F::grid_sample(
          image.unsqueeze(0), grid,
          F::GridSampleFuncOptions().mode(mode).padding_mode(torch::kZeros).align_corners(true))
          .squeeze(0);
  // Labels: one-hot, linear, arg-max; all-zero (outside) gives class 0.
  const auto onehot = F::one_hot(labels.squeeze(0).to(torch::kLong).clamp_min(0), num_classes)
                          .movedim(-1, 0)
                          .to(torch::kFloat)
                          .unsqueeze(0);
  const auto sampled = F::grid_sample(onehot, grid,
                                      F::GridSampleFuncOptions()
                                          .mode(torch::kBilinear)
                                          .padding_mode(torch::kZeros)
                                          .align_corners(true));
  out.labels = sampled.argmax(1).to(torch::kFloat);  // [1, *P]
  return out;
}

}  // namespace

uint64_t mix_seed(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
  uint64_t x = seed;
  uint64_t h = splitmix64(x);
  x = h ^ a;
  h = splitmix64(x);
  x = h ^ b;
  h = splitmix64(x);
  x = h ^ c;
  return splitmix64(x);
}

AugmentRandom::AugmentRandom(uint64_t seed) : engine_(mix_seed(seed, 0x5eed)) {}

uint64_t AugmentRandom::next_u64() {
  return engine_();
}

double AugmentRandom::uniform() {
  return static_cast<double>(engine_() >> 11) * 0x1.0p-53;
}

double AugmentRandom::uniform(double lo, double hi) {
  return lo + (hi - lo) * uniform();
}

int64_t AugmentRandom::index(int64_t n) {
  UMAMBA_CHECK(n > 0, "AugmentRandom::index: empty range");
  // Lemire's multiply-shift with rejection: unbiased and platform-independent.
  const uint64_t range = static_cast<uint64_t>(n);
  while (true) {
    const uint64_t x = engine_();
    const unsigned __int128 m = static_cast<unsigned __int128>(x) * range;
    const uint64_t low = static_cast<uint64_t>(m);
    if (low >= range || low >= (-range) % range) return static_cast<int64_t>(m >> 64);
  }
}

std::vector<int64_t> enlarged_patch_size(const std::vector<int64_t>& patch,
                                         const std::vector<double>& rotation_max,
                                         double scale_min) {
  const size_t dims = patch.size();
  UMAMBA_CHECK(dims == 2 || dims == 3, "enlarged_patch_size: patch has {} axes (2 or 3)", dims);
  UMAMBA_CHECK(scale_min > 0, "enlarged_patch_size: scale_min {} must be positive", scale_min);
  std::array<double, 3> rot{0, 0, 0};
  for (size_t i = 0; i < rotation_max.size() && i < 3; ++i) {
    rot[i] = std::min(std::abs(rotation_max[i]), degrees(90));
  }
  std::vector<double> coords(patch.begin(), patch.end());
  std::vector<double> final_shape = coords;
  auto take_max = [&](const std::vector<double>& v) {
    for (size_t i = 0; i < dims; ++i) final_shape[i] = std::max(final_shape[i], std::abs(v[i]));
  };
  if (dims == 3) {
    for (int axis = 0; axis < 3; ++axis) {
      const Mat3 r =
          rotation_3d(axis == 0 ? rot[0] : 0, axis == 1 ? rot[1] : 0, axis == 2 ? rot[2] : 0);
      std::vector<double> v(3, 0.0);
      for (int j = 0; j < 3; ++j)
        for (int k = 0; k < 3; ++k) v[j] += coords[k] * r[k * 3 + j];
      take_max(v);
    }
  } else {
    const double c = std::cos(rot[0]), s = std::sin(rot[0]);
    // row vector · [[c, -s], [s, c]]
    take_max({coords[0] * c + coords[1] * s, -coords[0] * s + coords[1] * c});
  }
  std::vector<int64_t> out(dims);
  for (size_t i = 0; i < dims; ++i) out[i] = static_cast<int64_t>(final_shape[i] / scale_min);
  return out;
}

AugmentConfig default_augment_config(const std::vector<int64_t>& patch) {
  AugmentConfig c;
  c.dims = static_cast<int>(patch.size());
  UMAMBA_CHECK(c.dims == 2 || c.dims == 3, "augmentation: patch has {} axes (2 or 3)", c.dims);
  for (int64_t p : patch) UMAMBA_CHECK(p > 1, "augmentation: patch edge {} must exceed 1", p);
  c.patch = patch;
  const int64_t mx = *std::max_element(patch.begin(), patch.end());
  const int64_t mn = *std::min_element(patch.begin(), patch.end());
  if (c.dims == 2) {
    const double r =
        static_cast<double>(mx) / static_cast<double>(mn) > 1.5 ? degrees(15) : degrees(180);
    c.rotation_max = {r};
    c.mirror_axes = {0, 1};
  } else {
    c.dummy_2d = static_cast<double>(mx) / static_cast<double>(patch[0]) > 3.0;
    if (c.dummy_2d) {
      c.rotation_max = {degrees(180), 0, 0};
    } else {
      c.rotation_max = {degrees(30), degrees(30), degrees(30)};
    }
    c.mirror_axes = {0, 1, 2};
  }
  c.initial_patch = enlarged_patch_size(patch, c.rotation_max, 0.85);
  if (c.dummy_2d) c.initial_patch[0] = patch[0];
  return c;
}

torch::Tensor center_crop(const torch::Tensor& x, const std::vector<int64_t>& patch) {
  const int64_t first = x.dim() - static_cast<int64_t>(patch.size());
  UMAMBA_CHECK(first >= 0, "center_crop: tensor has {} axes, patch {}", x.dim(), patch.size());
  torch::Tensor out = x;
  for (size_t i = 0; i < patch.size(); ++i) {
    const int64_t d = first + static_cast<int64_t>(i);
    const int64_t s = x.size(d);
    UMAMBA_CHECK(s >= patch[i], "center_crop: axis {} has {} voxels, patch needs {}", i, s,
                 patch[i]);
    out = out.narrow(d, s / 2 - patch[i] / 2, patch[i]);
  }
  return out;
}

Augmented spatial_transform(const torch::Tensor& image, const torch::Tensor& labels,
                            const std::vector<double>& angles, double scale,
                            const std::vector<int64_t>& patch, int64_t num_classes) {
  const int dims = static_cast<int>(patch.size());
  std::vector<double> m;
  if (dims == 2) {
    const double a = angles.empty() ? 0.0 : angles[0];
    const double c = std::cos(a), s = std::sin(a);
    // input = scale · Rᵀ · output, R = [[c, -s], [s, c]]
    m = {scale * c, scale * s, -scale * s, scale * c};
  } else {
    const Mat3 r = rotation_3d(angles.size() > 0 ? angles[0] : 0, angles.size() > 1 ? angles[1] : 0,
                               angles.size() > 2 ? angles[2] : 0);
    m.resize(9);
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) m[static_cast<size_t>(i * 3 + j)] = scale * r[j * 3 + i];
  }
  return sample_affine(image, labels, m, patch, num_classes);
}

torch::Tensor gaussian_blur(const torch::Tensor& channel, double sigma,
                            const std::vector<int>& axes) {
  if (sigma <= 0) return channel;
  const int64_t radius = static_cast<int64_t>(4.0 * sigma + 0.5);
  std::vector<float> w(static_cast<size_t>(2 * radius + 1));
  double sum = 0;
  for (int64_t i = -radius; i <= radius; ++i) {
    const double v = std::exp(-0.5 * static_cast<double>(i * i) / (sigma * sigma));
    w[static_cast<size_t>(i + radius)] = static_cast<float>(v);
    sum += v;
  }
  for (auto& v : w) v = static_cast<float>(v / sum);
  const auto kernel = torch::from_blob(w.data(), {1, 1, 2 * radius + 1}, torch::kFloat)
                          .clone()
                          .to(channel.device());
  torch::Tensor x = channel.to(torch::kFloat);
  for (int axis : axes) {
    const int64_t n = x.size(axis);
    // scipy 'reflect': half-sample symmetric (d c b a | a b c d | d c b a), repeated as needed.
    std::vector<int64_t> idx(static_cast<size_t>(n + 2 * radius));
    for (int64_t i = -radius; i < n + radius; ++i) {
      int64_t j = i;
      const int64_t period = 2 * n;
      j = ((j % period) + period) % period;
      if (j >= n) j = period - 1 - j;
      idx[static_cast<size_t>(i + radius)] = j;
    }
    const auto index =
        torch::from_blob(idx.data(), {static_cast<int64_t>(idx.size())}, torch::kLong)
            .clone()
            .to(x.device());
    torch::Tensor moved = x.movedim(axis, -1).index_select(-1, index);
    const auto shape = moved.sizes().vec();
    moved = moved.reshape({-1, 1, shape.back()});
    torch::Tensor conv = F::conv1d(moved, kernel);
    std::vector<int64_t> out_shape(shape.begin(), shape.end());
    out_shape.back() = n;
    x = conv.reshape(out_shape).movedim(-1, axis).contiguous();
  }
  return x;
}

torch::Tensor gamma_transform(const torch::Tensor& channel, double gamma, bool invert) {
  torch::Tensor x = invert ? -channel : channel;
  const auto mn = x.mean();
  const auto sd = x.std(/*unbiased=*/false);
  const auto minm = x.min();
  const auto rnge = x.max() - minm + 1e-7;
  x = ((x - minm) / rnge).pow(gamma) * rnge + minm;
  x = x - x.mean();
  x = x / (x.std(/*unbiased=*/false) + 1e-8) * sd;
  x = x + mn;
  return invert ? -x : x;
}

torch::Tensor contrast_transform(const torch::Tensor& channel, double factor) {
  const auto mn = channel.mean();
  const auto minm = channel.min();
  const auto maxm = channel.max();
  auto x = (channel - mn) * factor + mn;
  return torch::maximum(torch::minimum(x, maxm), minm);
}

F::InterpolateFuncOptions nearest_exact_options(std::vector<int64_t> size) {
  return F::InterpolateFuncOptions()
      .size(std::move(size))
      .mode(torch::kNearestExact)
      .align_corners(false);
}

torch::Tensor lowres_transform(const torch::Tensor& channel, double zoom,
                               const std::vector<int>& ignore_axes) {
  const int dims = static_cast<int>(channel.dim());
  std::vector<int64_t> shape = channel.sizes().vec();
  std::vector<int64_t> target(shape.size());
  for (int d = 0; d < dims; ++d) {
    target[d] = std::max<int64_t>(
        1, static_cast<int64_t>(std::nearbyint(static_cast<double>(shape[d]) * zoom)));
    if (std::find(ignore_axes.begin(), ignore_axes.end(), d) != ignore_axes.end()) {
      target[d] = shape[d];
    }
  }
  const auto x = channel.to(torch::kFloat).unsqueeze(0).unsqueeze(0);
  const auto down = F::interpolate(x, nearest_exact_options(target));
  auto up_options = F::InterpolateFuncOptions().size(shape).align_corners(false);
  up_options = dims == 2 ? up_options.mode(torch::kBicubic) : up_options.mode(torch::kTrilinear);
  return F::interpolate(down, up_options).squeeze(0).squeeze(0);
}

std::vector<torch::Tensor> downsample_targets(const torch::Tensor& labels,
                                              const std::vector<std::vector<int64_t>>& scales) {
  std::vector<torch::Tensor> out;
  const std::vector<int64_t> p = spatial_shape(labels, 2);
  for (const auto& s : scales) {
    UMAMBA_CHECK(s.size() == p.size(), "deep supervision: scale has {} axes, labels {}", s.size(),
                 p.size());
    bool identity = true;
    std::vector<int64_t> size(p.size());
    for (size_t i = 0; i < p.size(); ++i) {
      UMAMBA_CHECK(s[i] >= 1 && p[i] % s[i] == 0,
                   "deep supervision: patch edge {} is not divisible by the scale {}", p[i], s[i]);
      size[i] = p[i] / s[i];
      identity = identity && s[i] == 1;
    }
    if (identity) {
      out.push_back(labels);
    } else {
      out.push_back(F::interpolate(labels.to(torch::kFloat), nearest_exact_options(size)));
    }
  }
  return out;
}

Augmented augment_batch(const torch::Tensor& data, const torch::Tensor& labels,
                        const AugmentConfig& config, AugmentRandom& rng, const TransformMask& mask,
                        std::vector<SampleAugmentation>* applied) {
  const int dims = config.dims;
  UMAMBA_CHECK(data.dim() == dims + 2 && labels.dim() == dims + 2,
               "augment_batch: data {} and labels {} must be [B, C, {} spatial axes]",
               shape_text(data.sizes()), shape_text(labels.sizes()), dims);
  const int64_t B = data.size(0), C = data.size(1);
  std::vector<SampleAugmentation> records(static_cast<size_t>(B));
  for (auto& r : records) r.mirrored.assign(static_cast<size_t>(dims), false);
  if (!config.enabled) {
    Augmented out{center_crop(data, config.patch).contiguous(),
                  center_crop(labels, config.patch).to(torch::kFloat).contiguous()};
    if (applied) *applied = records;
    return out;
  }
  // Classes present decide the one-hot width for label interpolation.
  const int64_t num_classes = std::max<int64_t>(1, labels.max().item<int64_t>() + 1);

  // 1. spatial
  std::vector<torch::Tensor> imgs, segs;
  for (int64_t b = 0; b < B; ++b) {
    SampleAugmentation& rec = records[static_cast<size_t>(b)];
    rec.angles.assign(config.rotation_max.size(), 0.0);
    if (mask.spatial) {
      if (rng.uniform() < config.p_rotation) {
        rec.rotated = true;
        for (size_t a = 0; a < config.rotation_max.size(); ++a) {
          (void)rng.uniform();  // p_rot_per_axis = 1 (batchgenerators draws it anyway)
          rec.angles[a] = rng.uniform(-config.rotation_max[a], config.rotation_max[a]);
        }
      }
      if (rng.uniform() < config.p_scale) {
        rec.scaled = true;
        rec.scale = draw_around_one(rng, config.scale_min, config.scale_max);
      }
    }
    const torch::Tensor img = data[b], seg = labels[b];
    if (rec.rotated || rec.scaled) {
      Augmented s;
      if (config.dummy_2d) {
        // In-plane 2D transform of every slice (nnU-Net's Convert3DTo2D around SpatialTransform).
        const std::vector<int64_t> plane{config.patch[1], config.patch[2]};
        const auto img2 = center_crop(img, {config.patch[0], img.size(2), img.size(3)});
        const auto seg2 = center_crop(seg, {config.patch[0], seg.size(2), seg.size(3)});
        std::vector<torch::Tensor> si, ss;
        for (int64_t z = 0; z < img2.size(1); ++z) {
          Augmented t = spatial_transform(img2.select(1, z), seg2.select(1, z), {rec.angles[0]},
                                          rec.scale, plane, num_classes);
          si.push_back(t.data);
          ss.push_back(t.labels);
        }
        s.data = torch::stack(si, 1);
        s.labels = torch::stack(ss, 1);
      } else {
        s = spatial_transform(img, seg, rec.angles, rec.scale, config.patch, num_classes);
      }
      imgs.push_back(s.data);
      segs.push_back(s.labels);
    } else {
      imgs.push_back(center_crop(img, config.patch));
      segs.push_back(center_crop(seg, config.patch).to(torch::kFloat));
    }
  }
  torch::Tensor x = torch::stack(imgs).to(torch::kFloat).contiguous();
  torch::Tensor y = torch::stack(segs).contiguous();

  std::vector<int> all_axes;
  for (int d = 0; d < dims; ++d) all_axes.push_back(d);
  std::vector<int> lowres_ignore;
  if (config.dummy_2d) lowres_ignore.push_back(0);

  // 2. Gaussian noise
  for (int64_t b = 0; b < B; ++b) {
    if (!mask.noise || !(rng.uniform() < config.p_noise)) continue;
    const double sigma = rng.uniform(0.0, config.noise_sigma_max);
    const uint64_t seed = rng.next_u64();
    auto gen = make_generator(x.device(), seed);
    auto noise = at::randn(x[b].sizes(), gen, x.options());
    x[b].add_(noise * sigma);
    records[static_cast<size_t>(b)].noise = true;
  }
  // 3. blur
  for (int64_t b = 0; b < B; ++b) {
    if (!mask.blur || !(rng.uniform() < config.p_blur)) continue;
    records[static_cast<size_t>(b)].blur = true;
    for (int64_t c = 0; c < C; ++c) {
      if (rng.uniform() <= config.blur_p_channel) {
        const double sigma = rng.uniform(config.blur_sigma_min, config.blur_sigma_max);
        x[b][c].copy_(gaussian_blur(x[b][c], sigma, all_axes));
      }
    }
  }
  // 4. multiplicative brightness
  for (int64_t b = 0; b < B; ++b) {
    if (!mask.brightness || !(rng.uniform() < config.p_brightness)) continue;
    records[static_cast<size_t>(b)].brightness = true;
    for (int64_t c = 0; c < C; ++c) {
      x[b][c].mul_(rng.uniform(config.brightness_min, config.brightness_max));
    }
  }
  // 5. contrast
  for (int64_t b = 0; b < B; ++b) {
    if (!mask.contrast || !(rng.uniform() < config.p_contrast)) continue;
    records[static_cast<size_t>(b)].contrast = true;
    for (int64_t c = 0; c < C; ++c) {
      const double f = draw_around_one(rng, config.contrast_min, config.contrast_max);
      x[b][c].copy_(contrast_transform(x[b][c], f));
    }
  }
  // 6. low resolution
  for (int64_t b = 0; b < B; ++b) {
    if (!mask.lowres || !(rng.uniform() < config.p_lowres)) continue;
    records[static_cast<size_t>(b)].lowres = true;
    for (int64_t c = 0; c < C; ++c) {
      if (rng.uniform() < config.lowres_p_channel) {
        const double zoom = rng.uniform(config.lowres_zoom_min, config.lowres_zoom_max);
        x[b][c].copy_(lowres_transform(x[b][c], zoom, lowres_ignore));
      }
    }
  }
  // 7. inverted gamma, 8. gamma
  for (int pass = 0; pass < 2; ++pass) {
    const bool invert = pass == 0;
    const double p = invert ? config.p_gamma_inverted : config.p_gamma;
    const bool on = invert ? mask.gamma_inverted : mask.gamma;
    for (int64_t b = 0; b < B; ++b) {
      if (!on || !(rng.uniform() < p)) continue;
      (invert ? records[static_cast<size_t>(b)].gamma_inverted
              : records[static_cast<size_t>(b)].gamma) = true;
      for (int64_t c = 0; c < C; ++c) {
        const double g = draw_around_one(rng, config.gamma_min, config.gamma_max);
        x[b][c].copy_(gamma_transform(x[b][c], g, invert));
      }
    }
  }
  // 9. mirroring
  for (int64_t b = 0; b < B; ++b) {
    if (!mask.mirror) continue;
    std::vector<int64_t> flip_dims;
    for (int axis : config.mirror_axes) {
      if (rng.uniform() < config.p_mirror_axis) {
        flip_dims.push_back(axis + 1);  // sample tensors are [C, *S]
        records[static_cast<size_t>(b)].mirrored[static_cast<size_t>(axis)] = true;
      }
    }
    if (!flip_dims.empty()) {
      x[b].copy_(x[b].flip(flip_dims));
      y[b].copy_(y[b].flip(flip_dims));
    }
  }
  if (applied) *applied = std::move(records);
  return {x, y};
}

}  // namespace umamba::train
