// Causal depthwise conv1d + bias + SiLU as plain loops (see causal_conv1d_ref.h).
#include "cuda/causal_conv1d_ref.h"

#include <cmath>

namespace umamba::cuda::ref {

namespace {

// pre-activation at (row, t): row = b * dim + d.
double pre_at(const ConvProblem& p, std::int64_t row, std::int64_t t) {
  const std::int64_t d = row % p.dim;
  double acc = p.bias ? p.bias[d] : 0.0;
  for (int k = 0; k < p.width; ++k) {
    const std::int64_t s = t - (p.width - 1) + k;
    if (s >= 0) acc += p.weight[d * p.width + k] * p.x[row * p.len + s];
  }
  return acc;
}

double sigmoid(double v) {
  return 1.0 / (1.0 + std::exp(-v));
}

}  // namespace

std::vector<double> conv_forward(const ConvProblem& p) {
  std::vector<double> out(static_cast<std::size_t>(p.batch * p.dim * p.len));
  for (std::int64_t row = 0; row < p.batch * p.dim; ++row)
    for (std::int64_t t = 0; t < p.len; ++t) {
      const double v = pre_at(p, row, t);
      out[row * p.len + t] = p.silu ? v * sigmoid(v) : v;
    }
  return out;
}

ConvGradients conv_backward(const ConvProblem& p, const double* dout) {
  ConvGradients g;
  g.dx.assign(static_cast<std::size_t>(p.batch * p.dim * p.len), 0.0);
  g.dweight.assign(static_cast<std::size_t>(p.dim * p.width), 0.0);
  if (p.bias) g.dbias.assign(static_cast<std::size_t>(p.dim), 0.0);
  for (std::int64_t row = 0; row < p.batch * p.dim; ++row) {
    const std::int64_t d = row % p.dim;
    for (std::int64_t t = 0; t < p.len; ++t) {
      const double v = pre_at(p, row, t);
      const double s = sigmoid(v);
      // d silu / d pre = s (1 + pre (1 - s))
      const double gp = dout[row * p.len + t] * (p.silu ? s * (1.0 + v * (1.0 - s)) : 1.0);
      if (p.bias) g.dbias[d] += gp;
      for (int k = 0; k < p.width; ++k) {
        const std::int64_t src = t - (p.width - 1) + k;
        if (src < 0) continue;
        g.dx[row * p.len + src] += p.weight[d * p.width + k] * gp;
        g.dweight[d * p.width + k] += p.x[row * p.len + src] * gp;
      }
    }
  }
  return g;
}

}  // namespace umamba::cuda::ref
