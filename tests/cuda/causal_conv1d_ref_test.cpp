// The causal conv1d + SiLU CPU reference (cuda/causal_conv1d_ref.h) checked on its own: the
// forward against values worked by hand, the backward against central finite differences of the
// forward, so that the GPU tests compare the kernels with something known to be right.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "cuda/causal_conv1d_ref.h"

namespace {

using namespace umamba::cuda::ref;

TEST(Cuda_CausalConv1dRef, forward_matches_hand_worked_values) {
  // width 2, one row x = [1, 2, 3], w = [0.5, -1], bias 0.25: pre_t = 0.5 x_{t-1} - x_t + 0.25.
  const std::vector<double> x = {1, 2, 3}, w = {0.5, -1}, bias = {0.25};
  ConvProblem p;
  p.batch = 1;
  p.dim = 1;
  p.len = 3;
  p.width = 2;
  p.x = x.data();
  p.weight = w.data();
  p.bias = bias.data();
  p.silu = false;
  const auto pre = conv_forward(p);
  ASSERT_EQ(pre.size(), 3u);
  EXPECT_DOUBLE_EQ(pre[0], -1 + 0.25);  // x_{-1} = 0
  EXPECT_DOUBLE_EQ(pre[1], 0.5 - 2 + 0.25);
  EXPECT_DOUBLE_EQ(pre[2], 1 - 3 + 0.25);
  p.silu = true;
  const auto out = conv_forward(p);
  for (int t = 0; t < 3; ++t) EXPECT_DOUBLE_EQ(out[t], pre[t] / (1 + std::exp(-pre[t])));
}

TEST(Cuda_CausalConv1dRef, backward_matches_finite_differences) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> U(-1, 1);
  for (const int width : {1, 3, 4})
    for (const bool silu : {true, false}) {
      ConvProblem p;
      p.batch = 2;
      p.dim = 3;
      p.len = 6;
      p.width = width;
      p.silu = silu;
      std::vector<double> x(36), w(3 * width), bias(3), dout(36);
      for (auto* v : {&x, &w, &bias, &dout})
        for (auto& e : *v) e = U(rng);
      p.x = x.data();
      p.weight = w.data();
      p.bias = bias.data();
      const ConvGradients g = conv_backward(p, dout.data());
      auto loss = [&] {
        const auto out = conv_forward(p);
        double s = 0;
        for (std::size_t i = 0; i < out.size(); ++i) s += dout[i] * out[i];
        return s;
      };
      const double h = 1e-6;
      auto check = [&](std::vector<double>& v, const std::vector<double>& grad, const char* what) {
        for (std::size_t i = 0; i < v.size(); ++i) {
          const double keep = v[i];
          v[i] = keep + h;
          const double up = loss();
          v[i] = keep - h;
          const double down = loss();
          v[i] = keep;
          EXPECT_NEAR(grad[i], (up - down) / (2 * h), 1e-7) << what << " " << i;
        }
      };
      check(x, g.dx, "dx");
      check(w, g.dweight, "dweight");
      check(bias, g.dbias, "dbias");
    }
}

}  // namespace
