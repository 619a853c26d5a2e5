// Helpers shared by the selective-scan and causal-conv1d tests: random problems (values already
// rounded to the storage dtype, so the double-precision reference sees exactly what the kernels
// see), host conversions to bf16/fp16 bits, and the error measure the tolerances are stated in.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cuda/device.h"
#include "cuda/selective_scan.h"
#include "cuda/selective_scan_ref.h"

// Skips a test when there is no CUDA device (the emulated builds always have their device).
#define SKIP_WITHOUT_GPU() \
  if (!::umamba::cuda::device_available()) GTEST_SKIP() << "no CUDA device"

namespace umamba::cuda::testing {

// Round-to-nearest-even float -> bf16 bits (NaN stays NaN).
inline std::uint16_t to_bf16_bits(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>(x >> 16);
}
inline float from_bf16_bits(std::uint16_t b) {
  const std::uint32_t x = static_cast<std::uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}
inline std::uint16_t to_f16_bits(float f) {
  const _Float16 h = static_cast<_Float16>(f);
  std::uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}
inline float from_f16_bits(std::uint16_t b) {
  _Float16 h;
  std::memcpy(&h, &b, 2);
  return static_cast<float>(h);
}

// The value a float becomes when stored in `dtype`.
inline double round_to(ScanDtype dtype, double v) {
  const float f = static_cast<float>(v);
  switch (dtype) {
    case ScanDtype::F32:
      return f;
    case ScanDtype::BF16:
      return from_bf16_bits(to_bf16_bits(f));
    case ScanDtype::F16:
      return from_f16_bits(to_f16_bits(f));
  }
  return f;
}

// Host bytes of `values` in `dtype`.
inline std::vector<unsigned char> encode(ScanDtype dtype, const std::vector<double>& values) {
  std::vector<unsigned char> out(values.size() * element_size(dtype));
  for (std::size_t i = 0; i < values.size(); ++i) {
    const float f = static_cast<float>(values[i]);
    if (dtype == ScanDtype::F32) {
      std::memcpy(out.data() + 4 * i, &f, 4);
    } else {
      const std::uint16_t b = dtype == ScanDtype::BF16 ? to_bf16_bits(f) : to_f16_bits(f);
      std::memcpy(out.data() + 2 * i, &b, 2);
    }
  }
  return out;
}

inline std::vector<double> decode(ScanDtype dtype, const unsigned char* bytes, std::size_t count) {
  std::vector<double> out(count);
  for (std::size_t i = 0; i < count; ++i) {
    if (dtype == ScanDtype::F32) {
      float f;
      std::memcpy(&f, bytes + 4 * i, 4);
      out[i] = f;
    } else {
      std::uint16_t b;
      std::memcpy(&b, bytes + 2 * i, 2);
      out[i] = dtype == ScanDtype::BF16 ? from_bf16_bits(b) : from_f16_bits(b);
    }
  }
  return out;
}

struct ProblemOptions {
  bool use_z = true;
  bool use_D = true;
  bool use_bias = true;
  bool softplus = true;
};

// A random problem; every value is representable in `dtype` (A, D and delta_bias in fp32).
struct Problem {
  ScanShape shape;
  ProblemOptions opt;
  std::vector<double> u, delta, A, B, C, D, z, bias, dout;

  ref::ScanProblem<double> view() const {
    ref::ScanProblem<double> p;
    p.batch = shape.batch;
    p.dim = shape.dim;
    p.len = shape.len;
    p.nstate = shape.nstate;
    p.u = u.data();
    p.delta = delta.data();
    p.A = A.data();
    p.B = B.data();
    p.C = C.data();
    p.D = opt.use_D ? D.data() : nullptr;
    p.z = opt.use_z ? z.data() : nullptr;
    p.delta_bias = opt.use_bias ? bias.data() : nullptr;
    p.delta_softplus = opt.softplus;
    return p;
  }
};

// Values as U-Mamba's Mamba layers produce them at initialisation: dt = softplus(delta + bias) of
// about 1e-3..0.3, A = -(1..N) scaled by U(0.5, 1.5) (S4D-real), so states remember hundreds to
// thousands of steps and carries across tiles and segments matter.
inline Problem make_problem(const ScanShape& s, ScanDtype dtype, unsigned seed,
                            ProblemOptions opt = {}) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> U(-1.0, 1.0);
  auto fill = [&](std::vector<double>& v, std::size_t n, double scale, bool storage) {
    v.resize(n);
    for (auto& x : v)
      x = storage ? round_to(dtype, scale * U(rng)) : static_cast<float>(scale * U(rng));
  };
  Problem p;
  p.shape = s;
  p.opt = opt;
  const auto rows = static_cast<std::size_t>(s.batch * s.dim * s.len);
  const auto planes = static_cast<std::size_t>(s.batch * s.nstate * s.len);
  fill(p.u, rows, 1.0, true);
  fill(p.z, rows, 2.0, true);
  fill(p.dout, rows, 1.0, true);
  fill(p.B, planes, 1.0, true);
  fill(p.C, planes, 1.0, true);
  p.A.resize(static_cast<std::size_t>(s.dim * s.nstate));
  for (std::int64_t d = 0; d < s.dim; ++d)
    for (std::int64_t n = 0; n < s.nstate; ++n)
      p.A[d * s.nstate + n] = static_cast<float>(-(n + 1) * (1.0 + 0.5 * U(rng)));
  fill(p.D, static_cast<std::size_t>(s.dim), 1.0, false);
  p.bias.resize(static_cast<std::size_t>(s.dim));
  p.delta.resize(rows);
  if (opt.softplus) {
    std::uniform_real_distribution<double> logdt(std::log(1e-3), std::log(1e-1));
    for (auto& b : p.bias) {
      const double dt = std::exp(logdt(rng));
      b = static_cast<float>(dt + std::log(-std::expm1(-dt)));  // softplus^-1(dt)
    }
    for (auto& x : p.delta) x = round_to(dtype, U(rng));
  } else {  // dt = delta + bias must stay positive: small positive values
    for (auto& b : p.bias) b = static_cast<float>(0.01 + 0.01 * U(rng));
    for (auto& x : p.delta) x = round_to(dtype, 0.02 + 0.015 * U(rng));
  }
  return p;
}

// max |got - ref| / max |ref| over all elements; +inf when a value is NaN or inf or sizes differ.
inline double max_rel_error(const std::vector<double>& got, const std::vector<double>& ref) {
  if (got.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double err = 0, scale = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
    err = std::max(err, std::abs(got[i] - ref[i]));
    scale = std::max(scale, std::abs(ref[i]));
  }
  return scale > 0 ? err / scale : err;
}

// Tolerances (max_rel_error). fp32: 1e-4 forward, 1e-3 gradients (the targets). bf16 and
// fp16 inputs are exact in the reference and all arithmetic is fp32, so the only extra error is
// rounding each stored output to the dtype, at most half an ulp = 2^-8 (bf16) or 2^-11 (fp16) of
// the element and so of max|ref|; the tolerance allows twice that on top of the fp32 one. Gradients
// returned in fp32 (dA, dB, dC, dD, ddelta_bias) keep the fp32 tolerance.
inline double rounding_unit(ScanDtype dtype) {
  return dtype == ScanDtype::BF16  ? std::ldexp(1.0, -8)
         : dtype == ScanDtype::F16 ? std::ldexp(1.0, -11)
                                   : 0.0;
}
inline double fwd_tolerance(ScanDtype dtype) {
  return 1e-4 + 2 * rounding_unit(dtype);
}
inline double grad_tolerance(ScanDtype dtype) {
  return 1e-3 + 2 * rounding_unit(dtype);
}
inline double fp32_grad_tolerance() {
  return 1e-3;
}

}  // namespace umamba::cuda::testing
