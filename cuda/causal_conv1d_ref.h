// Causal depthwise conv1d + bias + SiLU, CPU reference: the semantics of causal_conv1d.h written as
// plain loops in double, the ground truth the GPU tests compare against (and is itself checked
// against LibTorch's conv1d + silu and finite differences in
// tests/cuda/causal_conv1d_ref_test.cpp).
//   pre[b][d][t] = bias[d] + sum_{k < width} w[d][k] x[b][d][t - width + 1 + k]   (x < 0 is 0)
//   out = silu(pre) = pre / (1 + exp(-pre))   (or pre)
// Layouts contiguous: x, out, dout, dx [batch][dim][len]; w [dim][width]; bias [dim] (optional).
#pragma once

#include <cstdint>
#include <vector>

namespace umamba::cuda::ref {

struct ConvProblem {
  std::int64_t batch = 0, dim = 0, len = 0;
  int width = 4;
  const double* x = nullptr;
  const double* weight = nullptr;
  const double* bias = nullptr;  // optional
  bool silu = true;
};

struct ConvGradients {
  std::vector<double> dx, dweight, dbias;  // dbias empty without bias
};

std::vector<double> conv_forward(const ConvProblem& p);

// Gradients of sum(dout * out) with respect to x, weight and bias.
ConvGradients conv_backward(const ConvProblem& p, const double* dout);

}  // namespace umamba::cuda::ref
