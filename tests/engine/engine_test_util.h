// Test helpers for the engine: tiny conv-only networks and a plain sliding-window reference written
// from nnU-Net's description (reference §4.4) with whole-array torch operations, one tile at a
// time.
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "core/image.h"

namespace umamba::engine::test {

// conv(k) -> tanh -> conv(k), zero padding: receptive field 2 * (k - 1) + 1 per axis.
struct TinyConvImpl : torch::nn::Module {
  int dims;
  torch::nn::AnyModule a, b;
  TinyConvImpl(int dims_, int64_t in, int64_t classes, int64_t kernel, int64_t hidden = 6)
      : dims(dims_) {
    const int64_t pad = kernel / 2;
    if (dims == 2) {
      a = torch::nn::AnyModule(register_module(
          "a", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, hidden, kernel).padding(pad))));
      b = torch::nn::AnyModule(register_module(
          "b", torch::nn::Conv2d(torch::nn::Conv2dOptions(hidden, classes, kernel).padding(pad))));
    } else {
      a = torch::nn::AnyModule(register_module(
          "a", torch::nn::Conv3d(torch::nn::Conv3dOptions(in, hidden, kernel).padding(pad))));
      b = torch::nn::AnyModule(register_module(
          "b", torch::nn::Conv3d(torch::nn::Conv3dOptions(hidden, classes, kernel).padding(pad))));
    }
  }
  torch::Tensor forward(torch::Tensor x) { return b.forward(torch::tanh(a.forward(x))); }
};
TORCH_MODULE(TinyConv);

inline TinyConv make_tiny_conv(int dims, int64_t in, int64_t classes, int64_t kernel,
                               uint64_t seed) {
  torch::manual_seed(seed);
  TinyConv net(dims, in, classes, kernel);
  net->eval();
  return net;
}

// Random integers in [lo, hi] as an image of `dtype`.
inline Image random_image(DType dtype, const Shape& shape, int lo, int hi, uint32_t seed) {
  Image img = Image::zeros(DType::I32, shape);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> u(lo, hi);
  int32_t* p = img.data_as<int32_t>();
  for (int64_t i = 0; i < shape.elements(); ++i) p[i] = u(rng);
  return img.cast(dtype);
}

// An image [C,Z,Y,X] as a float64 tensor (copy).
inline torch::Tensor to_tensor(const Image& img) {
  const Image f = img.cast(DType::F64);
  const Shape& s = f.shape();
  return torch::from_blob(const_cast<void*>(f.data()), {s.c, s.z, s.y, s.x}, torch::kFloat64)
      .clone();
}

inline Image to_image(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kFloat32).contiguous();
  Image img = Image::zeros(DType::F32, Shape{c.size(0), c.size(1), c.size(2), c.size(3)});
  std::memcpy(img.data(), c.data_ptr<float>(), img.byte_size());
  return img;
}

// nnU-Net's steps: n = ceil((size - tile) / (tile * step)) + 1, position i =
// round(((size - tile) / (n - 1)) * i), NumPy rounding (half to even), as nnU-Net evaluates it.
inline std::vector<int64_t> reference_steps(int64_t size, int64_t tile, double step) {
  const auto n = static_cast<int64_t>(std::ceil(static_cast<double>(size - tile) /
                                                (static_cast<double>(tile) * step))) +
                 1;
  if (n == 1) return {0};
  const double actual = static_cast<double>(size - tile) / static_cast<double>(n - 1);
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n; ++i) {
    const double v = actual * static_cast<double>(i);
    double r = std::floor(v);
    if (v - r > 0.5 || (v - r == 0.5 && std::fmod(r, 2.0) != 0.0)) r += 1.0;
    out.push_back(static_cast<int64_t>(r));
  }
  return out;
}

using Net = std::function<torch::Tensor(const torch::Tensor&)>;

// nnU-Net's _internal_maybe_mirror_and_predict: the plain pass plus every non-empty combination
// of the mirror axes (itertools.combinations order), averaged. `axes` are spatial (0-based).
inline torch::Tensor mirrored(const Net& net, const torch::Tensor& x,
                              const std::vector<int>& axes) {
  torch::Tensor pred = net(x).to(torch::kFloat32);
  int count = 1;
  const int n = static_cast<int>(axes.size());
  for (int r = 1; r <= n; ++r) {
    // combinations of size r, lexicographic, via bitmask enumeration sorted lexicographically
    std::vector<std::vector<int64_t>> combos;
    std::function<void(int, std::vector<int64_t>&)> rec = [&](int start,
                                                              std::vector<int64_t>& cur) {
      if (static_cast<int>(cur.size()) == r) {
        combos.push_back(cur);
        return;
      }
      for (int i = start; i < n; ++i) {
        cur.push_back(axes[i] + 2);
        rec(i + 1, cur);
        cur.pop_back();
      }
    };
    std::vector<int64_t> cur;
    rec(0, cur);
    for (const auto& dims : combos) {
      pred += net(x.flip(dims)).to(torch::kFloat32).flip(dims);
      ++count;
    }
  }
  if (count > 1) pred /= static_cast<double>(count);
  return pred;
}

// Sliding window over one N-d image [C, s0, .., s(N-1)] (already normalised, f32): centred zero
// padding to the patch, tiles at reference_steps, Gaussian-weighted sums, division, cropping.
// Returns the blended logits [K, s...].
inline torch::Tensor reference_window(const torch::Tensor& img, const Net& net,
                                      const std::vector<int64_t>& patch, double step,
                                      const torch::Tensor& gaussian /* patch shape */,
                                      const std::vector<int>& mirror, int64_t classes) {
  const int64_t N = static_cast<int64_t>(patch.size());
  std::vector<int64_t> pads, below(N), size(N);
  for (int64_t a = N - 1; a >= 0; --a) {
    size[a] = img.size(a + 1);
    const int64_t d = std::max<int64_t>(0, patch[a] - size[a]);
    below[a] = d / 2;
    pads.push_back(d / 2);
    pads.push_back(d - d / 2);
  }
  const torch::Tensor padded = torch::constant_pad_nd(img, pads, 0.0);
  std::vector<int64_t> acc_shape{classes};
  std::vector<std::vector<int64_t>> steps(N);
  for (int64_t a = 0; a < N; ++a) {
    acc_shape.push_back(padded.size(a + 1));
    steps[a] = reference_steps(padded.size(a + 1), patch[a], step);
  }
  torch::Tensor acc = torch::zeros(acc_shape, torch::kFloat32);
  torch::Tensor w =
      torch::zeros(std::vector<int64_t>(acc_shape.begin() + 1, acc_shape.end()), torch::kFloat32);
  std::vector<size_t> idx(N, 0);
  while (true) {
    torch::Tensor tile = padded, a_view = acc, w_view = w;
    for (int64_t a = 0; a < N; ++a) {
      const int64_t s = steps[a][idx[a]];
      tile = tile.narrow(a + 1, s, patch[a]);
      a_view = a_view.narrow(a + 1, s, patch[a]);
      w_view = w_view.narrow(a, s, patch[a]);
    }
    const torch::Tensor pred = mirrored(net, tile.contiguous().unsqueeze(0), mirror)[0];
    a_view.add_(pred * gaussian);
    w_view.add_(gaussian);
    int64_t a = N - 1;
    while (a >= 0 && ++idx[a] == steps[a].size()) idx[a--] = 0;
    if (a < 0) break;
  }
  acc /= w;
  for (int64_t a = 0; a < N; ++a) acc = acc.narrow(a + 1, below[a], size[a]);
  return acc.contiguous();
}

// The reference over a [C,Z,Y,X] image: 3D windows for a 3D patch, or slice by slice for a 2D
// patch. Returns logits [K,Z,Y,X].
inline torch::Tensor reference_predict(const torch::Tensor& img, const Net& net,
                                       const std::vector<int64_t>& patch, double step,
                                       const torch::Tensor& gaussian,
                                       const std::vector<int>& mirror, int64_t classes) {
  if (patch.size() == 3) return reference_window(img, net, patch, step, gaussian, mirror, classes);
  std::vector<torch::Tensor> slices;
  for (int64_t z = 0; z < img.size(1); ++z) {
    slices.push_back(
        reference_window(img.select(1, z), net, patch, step, gaussian, mirror, classes));
  }
  return torch::stack(slices, 1);
}

}  // namespace umamba::engine::test
