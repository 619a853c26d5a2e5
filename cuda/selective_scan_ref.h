// Selective scan, CPU reference: the semantics of the CUDA kernels (selective_scan.h) written as
// plain loops, in float or double. It is the ground truth the GPU tests compare against; it is
// itself tested against a closed form and finite differences
// (tests/cuda/selective_scan_ref_test.cpp).
//
// Semantics (mamba's selective_scan_ref, variable B/C, real A; Gu & Dao 2023, arXiv 2312.00752):
//   dt_t = softplus(delta_t + delta_bias) if delta_softplus else delta_t + delta_bias
//   h_t[n] = exp(dt_t * A[n]) * h_{t-1}[n] + dt_t * B_t[n] * u_t,  h_{-1} = 0
//   y_t = sum_n C_t[n] h_t[n];   out_t = (y_t + D * u_t) * silu(z_t)   (D, z optional)
// softplus(x) = log1p(exp(x)) for x <= 20 and x above, as the CUDA kernels (and mamba's) compute
// it. The backward is the adjoint of that recurrence: g_t = dout-side term * C_t + exp(dt_{t+1} A)
// g_{t+1}.
//
// Layouts are contiguous: u, delta, z, out [batch][dim][len]; A [dim][nstate]; B, C
// [batch][nstate][len]; D, delta_bias [dim]. Memory: O(len * nstate) per row in the backward.
#pragma once

#include <cstdint>
#include <vector>

namespace umamba::cuda::ref {

template <typename Real>
struct ScanProblem {
  std::int64_t batch = 0, dim = 0, len = 0, nstate = 0;
  const Real* u = nullptr;
  const Real* delta = nullptr;
  const Real* A = nullptr;
  const Real* B = nullptr;
  const Real* C = nullptr;
  const Real* D = nullptr;           // optional
  const Real* z = nullptr;           // optional
  const Real* delta_bias = nullptr;  // optional
  bool delta_softplus = true;
};

template <typename Real>
struct ScanGradients {
  std::vector<Real> du, ddelta, dA, dB, dC, dD, ddelta_bias,
      dz;  // dD/ddelta_bias/dz empty if absent
};

// out [batch][dim][len].
template <typename Real>
std::vector<Real> scan_forward(const ScanProblem<Real>& p);

// Gradients of sum(dout * out) with respect to every input.
template <typename Real>
ScanGradients<Real> scan_backward(const ScanProblem<Real>& p, const Real* dout);

extern template std::vector<float> scan_forward(const ScanProblem<float>&);
extern template std::vector<double> scan_forward(const ScanProblem<double>&);
extern template ScanGradients<float> scan_backward(const ScanProblem<float>&, const float*);
extern template ScanGradients<double> scan_backward(const ScanProblem<double>&, const double*);

}  // namespace umamba::cuda::ref
