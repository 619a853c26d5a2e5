// GPU smoke tests (label gpu; skipped without a CUDA device): the microscopy-configuration
// networks run inference on the GPU, the CUDA selective scan agrees with the CPU op, and a tiny
// network trains a step on the GPU.
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <string>
#include <tuple>
#include <vector>

#include "model/causal_conv1d.h"
#include "model/networks.h"
#include "model/selective_scan.h"
#include "model_test_util.h"

namespace umamba::model {
namespace {

NetworkConfig microscopy(Architecture arch) {
  NetworkConfig c;
  c.architecture = arch;
  c.input_channels = 3;
  c.num_classes = 3;
  c.features_per_stage = {32, 64, 128, 256, 512, 512, 512, 512};
  c.kernel_sizes.assign(8, {3, 3});
  c.strides = {{1, 1}};
  for (int i = 1; i < 8; ++i) c.strides.push_back({2, 2});
  c.n_conv_per_stage_encoder.assign(8, 2);
  c.n_conv_per_stage_decoder.assign(7, 2);
  c.patch_size = {512, 512};
  c.deep_supervision = false;
  return c;
}

#define REQUIRE_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

TEST(Model_Gpu, microscopy_inference_smoke) {
  REQUIRE_CUDA();
  torch::manual_seed(0);
  for (Architecture arch :
       {Architecture::UMambaBot, Architecture::UMambaEnc, Architecture::PlainConvUNet}) {
    auto net = make_network(microscopy(arch));
    net->to(torch::kCUDA);
    net->eval();
    torch::NoGradGuard no_grad;
    const auto x = torch::randn({2, 3, 512, 512}, torch::kCUDA);
    const auto outs = net->forward(x);
    ASSERT_EQ(outs.size(), 1u);
    EXPECT_EQ(outs[0].sizes().vec(), (std::vector<int64_t>{2, 3, 512, 512})) << to_string(arch);
    EXPECT_TRUE(torch::isfinite(outs[0]).all().item<bool>()) << to_string(arch);
    // The same weights on the CPU give the same logits (fp32; TF32 convolutions on the GPU).
    if (arch == Architecture::UMambaBot) {
      net->to(torch::kCPU);
      const auto cpu = net->forward(x.cpu());
      EXPECT_LT(test::relative_error(outs[0].cpu(), cpu[0]), 5e-3);
    }
  }
}

TEST(Model_Gpu, selective_scan_matches_cpu) {
  REQUIRE_CUDA();
  torch::manual_seed(1);
  const int64_t b = 2, d = 64, l = 1000, n = 16;
  auto u = torch::randn({b, d, l}), delta = torch::randn({b, d, l}) * 0.5 - 1.0;
  auto A = -torch::exp(torch::randn({d, n}) * 0.1 + 1.0);
  auto B = torch::randn({b, n, l}), C = torch::randn({b, n, l}), z = torch::randn({b, d, l});
  auto D = torch::randn({d}), bias = torch::randn({d}) * 0.5 - 3.0;
  std::vector<torch::Tensor> cpu_in = {u, delta, A, B, C, D, z, bias};
  std::vector<torch::Tensor> gpu_in;
  for (auto& t : cpu_in) {
    t.requires_grad_(true);
    gpu_in.push_back(t.detach().cuda().requires_grad_(true));
  }
  auto run = [](const std::vector<torch::Tensor>& in) {
    return selective_scan(in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7], true);
  };
  const auto out_cpu = run(cpu_in), out_gpu = run(gpu_in);
  EXPECT_LT(test::relative_error(out_gpu.cpu(), out_cpu), 1e-4);
  const auto g = torch::randn_like(out_cpu);
  const auto gc = torch::autograd::grad({out_cpu}, cpu_in, {g});
  const auto gg = torch::autograd::grad({out_gpu}, gpu_in, {g.cuda()});
  for (size_t i = 0; i < gc.size(); ++i) {
    EXPECT_LT(test::relative_error(gg[i].cpu(), gc[i]), 1e-3) << "input " << i;
  }
  // The LibTorch-ops path on the GPU agrees as well.
  const auto ops = detail::selective_scan_torch_ops(
      gpu_in[0], gpu_in[1], gpu_in[2], gpu_in[3], gpu_in[4], gpu_in[5], gpu_in[6], gpu_in[7], true);
  EXPECT_LT(test::relative_error(ops.cpu(), out_cpu), 1e-4);
}

TEST(Model_Gpu, tiny_training_step) {
  REQUIRE_CUDA();
  NetworkConfig c;
  c.architecture = Architecture::UMambaEnc;
  c.input_channels = 1;
  c.num_classes = 2;
  c.features_per_stage = {8, 16, 32};
  c.kernel_sizes = {{3, 3}, {3, 3}, {3, 3}};
  c.strides = {{1, 1}, {2, 2}, {2, 2}};
  c.n_conv_per_stage_encoder = {2, 2, 2};
  c.n_conv_per_stage_decoder = {2, 2};
  c.patch_size = {32, 32};
  auto net = make_network(c);
  net->to(torch::kCUDA);
  torch::optim::SGD opt(net->parameters(),
                        torch::optim::SGDOptions(1e-2).momentum(0.99).nesterov(true));
  const auto x = torch::randn({2, 1, 32, 32}, torch::kCUDA);
  double first = 0, last = 0;
  for (int step = 0; step < 5; ++step) {
    opt.zero_grad();
    const auto outs = net->forward(x);
    auto loss = outs[0].square().mean() + 0.5 * outs[1].square().mean();
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_TRUE(std::isfinite(last));
  EXPECT_LT(last, first);
}

// The fused causal conv1d + SiLU (CUDA kernel when built) against the LibTorch path on the same
// CUDA tensors: output and the gradients of x, weight and bias, for the Mamba layer's
// channel-contiguous view of in_proj's output and for a contiguous input, widths 4 and 2.
TEST(Model_Gpu, causal_conv1d_silu_matches_torch_path) {
  REQUIRE_CUDA();
  torch::manual_seed(3);
  // The reference path must not run its convolution in TF32 (LibTorch's default for cuDNN).
  const bool tf32 = at::globalContext().allowTF32CuDNN();
  at::globalContext().setAllowTF32CuDNN(false);
  for (const int64_t width : {4, 2})
    for (const bool channel_last : {true, false})
      for (const auto& [B, D, L] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
               {2, 48, 1000}, {1, 64, 70000}, {3, 5, 3}}) {
        SCOPED_TRACE("width " + std::to_string(width) + (channel_last ? ", channel-last" : "") +
                     ", shape " + std::to_string(B) + "x" + std::to_string(D) + "x" +
                     std::to_string(L));
        const auto opt = torch::TensorOptions().device(torch::kCUDA);
        // channel-last: x is a strided view [B, D, L] of a [B, L, 2D] leaf, as mamba_ssm's token
        // layout gives; its gradient lands in the leaf (zero in the other half).
        const torch::Tensor base0 =
            channel_last ? torch::randn({B, L, 2 * D}, opt) : torch::randn({B, D, L}, opt);
        const torch::Tensor w0 = torch::randn({D, 1, width}, opt) * 0.5;
        const torch::Tensor b0 = torch::randn({D}, opt) * 0.5;
        const torch::Tensor g = torch::randn({B, D, L}, opt);
        auto run = [&](bool fused) {
          auto base = base0.clone().requires_grad_(true);
          auto xi = channel_last ? base.narrow(2, 0, D).transpose(1, 2) : base;
          if (channel_last) {
            EXPECT_NE(xi.stride(1), L);  // really strided, not a contiguous copy
          }
          auto w = w0.clone().requires_grad_(true), b = b0.clone().requires_grad_(true);
          auto y = fused ? causal_conv1d_silu(xi, w, b)
                         : umamba::model::detail::causal_conv1d_silu_torch(xi, w, b);
          (y * g).sum().backward();
          return std::vector<torch::Tensor>{y.detach(), base.grad(), w.grad(), b.grad()};
        };
        const auto ours = run(true), want = run(false);
        const char* names[] = {"out", "dx", "dweight", "dbias"};
        for (int i = 0; i < 4; ++i) {
          const double scale = want[i].abs().max().item<double>();
          const double err = (ours[i] - want[i]).abs().max().item<double>();
          // out and dx: a few fp32 operations an element; dweight, dbias: sums over B x L terms.
          EXPECT_LE(err, (i < 2 ? 2e-5 : 1e-4) * scale) << names[i];
        }
      }
  at::globalContext().setAllowTF32CuDNN(tf32);
}

}  // namespace
}  // namespace umamba::model
