// Benchmark (not a test): Mamba's causal depthwise conv1d + SiLU on CUDA, the fused kernel
// (model/causal_conv1d.h, cuda/causal_conv1d.h) against LibTorch's conv1d + narrow + silu on the
// same tensors, in one run: forward, and forward + backward (gradients of x, weight and bias), fp32
// (the layer runs in fp32). The input is the first half of a [B, 2 d_inner, L] tensor (`rows`, the
// Mamba block's layout: in_proj's output channels first) or a channel-contiguous view of a
// [B, L, 2 d_inner] one (`channel-last`, mamba_ssm's token layout, where LibTorch copies it first).
// Shapes: U-Mamba's (B, d_inner = 2 d_model, L), those of `umamba bench scan --shapes umamba`.
// Times: median of `reps` runs of `calls` back-to-back calls, CUDA-synchronised, in ms per call;
// TF32 off for the LibTorch convolution (as for ours: fp32).
//   model_conv_bench [reps [rows|channel-last]]    (default 15 rows)
#include <torch/cuda.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "model/causal_conv1d.h"

namespace {

double median_ms(int reps, int calls, const std::function<void()>& fn) {
  fn();
  torch::cuda::synchronize();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto a = std::chrono::steady_clock::now();
    for (int c = 0; c < calls; ++c) fn();
    torch::cuda::synchronize();
    t.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count() /
        calls);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Case {
  const char* label;
  int64_t B, D, L;
};

}  // namespace

int main(int argc, char** argv) {
  using namespace umamba::model;
  if (!torch::cuda::is_available()) {
    std::fprintf(stderr, "model_conv_bench: no CUDA device\n");
    return 1;
  }
  const int reps = argc > 1 ? std::atoi(argv[1]) : 15;
  const std::string layout = argc > 2 ? argv[2] : "rows";
  if (layout != "rows" && layout != "channel-last") {
    std::fprintf(stderr, "model_conv_bench: layout '%s' is not rows or channel-last\n",
                 layout.c_str());
    return 2;
  }
  const bool channel_last = layout == "channel-last";
  at::globalContext().setAllowTF32CuDNN(false);
  const std::vector<Case> cases = {
      {"2D Enc s1 256^2 d64", 12, 128, 65536},     {"2D Enc s3 64^2 d256", 12, 512, 4096},
      {"2D Enc s5 ch-tok 512 d256", 12, 512, 512}, {"2D Enc s7 ch-tok 512 d16", 12, 32, 512},
      {"2D Bot 4^2 d512", 12, 1024, 16},           {"3D Enc s0 40x224x192 d32", 2, 64, 1720320},
      {"3D Enc s1 40x112x96 d64", 2, 128, 430080}, {"3D Enc s2 20x56x48 d128", 2, 256, 53760},
      {"3D Enc s3 10x28x24 d256", 2, 512, 6720},   {"3D Enc s4 5x14x12 d320", 2, 640, 840},
      {"3D Enc s5 ch-tok 320 d210", 2, 420, 320},  {"3D Bot 5x7x6 d320", 2, 640, 210},
  };
  std::printf("causal conv1d (width 4) + SiLU, fp32, %s input; fused path: %s\n",
              channel_last ? "channel-last" : "rows of [B, 2 d_inner, L]",
              umamba::model::detail::causal_conv1d_fused(torch::zeros({1, 1, 1}, torch::kCUDA),
                                                         torch::zeros({1, 1, 4}, torch::kCUDA))
                  ? "the CUDA kernel"
                  : "none (built without the kernels: both columns are LibTorch)");
  std::printf("%-28s %4s %5s %8s | %9s %9s %6s | %9s %9s %6s\n", "shape", "B", "D", "L",
              "fwd torch", "fwd ours", "x", "f+b torch", "f+b ours", "x");
  torch::manual_seed(0);
  for (const Case& c : cases) {
    const auto opt = torch::TensorOptions().device(torch::kCUDA);
    const torch::Tensor xz = channel_last ? torch::randn({c.B, c.L, 2 * c.D}, opt)
                                          : torch::randn({c.B, 2 * c.D, c.L}, opt);
    auto input = [&](const torch::Tensor& t) {
      return channel_last ? t.narrow(2, 0, c.D).transpose(1, 2) : t.narrow(1, 0, c.D);
    };
    const torch::Tensor w = (torch::randn({c.D, 1, 4}, opt) * 0.5).requires_grad_(true);
    const torch::Tensor b = (torch::randn({c.D}, opt) * 0.5).requires_grad_(true);
    const torch::Tensor g = torch::randn({c.B, c.D, c.L}, opt);
    const int calls = std::max<int64_t>(1, std::min<int64_t>(50, 200000000 / (c.B * c.D * c.L)));
    auto fwd = [&](bool fused) {
      torch::NoGradGuard no_grad;
      const torch::Tensor x = input(xz);
      return fused ? causal_conv1d_silu(x, w, b)
                   : umamba::model::detail::causal_conv1d_silu_torch(x, w, b);
    };
    auto fwd_bwd = [&](bool fused) {
      const torch::Tensor xg = xz.detach().requires_grad_(true);
      const torch::Tensor x = input(xg);
      const torch::Tensor y = fused ? causal_conv1d_silu(x, w, b)
                                    : umamba::model::detail::causal_conv1d_silu_torch(x, w, b);
      torch::autograd::grad({y}, {xg, w, b}, {g});
    };
    const double ft = median_ms(reps, calls, [&] { fwd(false); });
    const double fo = median_ms(reps, calls, [&] { fwd(true); });
    const double bt = median_ms(reps, calls, [&] { fwd_bwd(false); });
    const double bo = median_ms(reps, calls, [&] { fwd_bwd(true); });
    std::printf("%-28s %4lld %5lld %8lld | %9.4f %9.4f %6.2f | %9.4f %9.4f %6.2f\n", c.label,
                (long long)c.B, (long long)c.D, (long long)c.L, ft, fo, ft / fo, bt, bo, bt / bo);
  }
  return 0;
}
