// Benchmark (not a test): the CPU selective scan against the LibTorch-ops path and the naive
// per-step reference, on one shape, in one run. Prints medians of `reps` runs in ms and the ratio
// to the naive reference.
//   model_scan_bench [batch dim len nstate reps]    (default 2 128 4096 16 5)
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include "model/selective_scan.h"
#include "model_test_util.h"

namespace {

double median_ms(int reps, const std::function<void()>& fn) {
  std::vector<double> t;
  fn();  // warm-up
  for (int i = 0; i < reps; ++i) {
    const auto a = std::chrono::steady_clock::now();
    fn();
    t.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  using namespace umamba::model;
  const int64_t b = argc > 1 ? std::atoll(argv[1]) : 2, d = argc > 2 ? std::atoll(argv[2]) : 128;
  const int64_t l = argc > 3 ? std::atoll(argv[3]) : 4096, n = argc > 4 ? std::atoll(argv[4]) : 16;
  const int reps = argc > 5 ? std::atoi(argv[5]) : 5;
  torch::manual_seed(0);
  auto u = torch::randn({b, d, l}), delta = torch::randn({b, d, l}) * 0.5 - 1.0;
  auto A = -torch::exp(torch::randn({d, n}) * 0.1 + 1.0);
  auto B = torch::randn({b, n, l}), C = torch::randn({b, n, l}), z = torch::randn({b, d, l});
  auto D = torch::randn({d}), bias = torch::randn({d}) * 0.5 - 3.0;
  std::printf("shape batch %lld dim %lld L %lld N %lld, fp32, torch threads %d, %d reps (median)\n",
              (long long)b, (long long)d, (long long)l, (long long)n, torch::get_num_threads(),
              reps);
  torch::NoGradGuard no_grad;
  const double naive = median_ms(
      reps, [&] { umamba::model::test::naive_scan(u, delta, A, B, C, D, z, bias, true); });
  const double ops = median_ms(reps, [&] {
    umamba::model::detail::selective_scan_torch_ops(u, delta, A, B, C, D, z, bias, true);
  });
  const double cpu = median_ms(reps, [&] { selective_scan(u, delta, A, B, C, D, z, bias, true); });
  double fwd_bwd = 0;
  {
    torch::AutoGradMode grad(true);
    std::vector<torch::Tensor> in = {u, delta, A, B, C, D, z, bias};
    for (auto& t : in) t = t.clone().requires_grad_(true);
    fwd_bwd = median_ms(reps, [&] {
      auto out = selective_scan(in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7], true);
      out.sum().backward();
    });
  }
  std::printf("naive per-step reference (LibTorch ops)  fwd %10.2f ms  1.00x\n", naive);
  std::printf("LibTorch-ops chunked path (GPU fallback) fwd %10.2f ms  %.2fx\n", ops, naive / ops);
  std::printf("CPU scan (TBB)                           fwd %10.2f ms  %.2fx\n", cpu, naive / cpu);
  std::printf("CPU scan (TBB)                   fwd + bwd %10.2f ms\n", fwd_bwd);
  return 0;
}
