// The LibTorch op over the CUDA kernels (src/model/selective_scan_cuda.h): forward and autograd
// gradients against the CPU reference in double, with contiguous and transposed (strided) inputs,
// fp32 and bf16. Label `gpu`: skips without a CUDA device.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "cuda/scan_test_util.h"
#include "cuda/selective_scan_ref.h"
#include "model/selective_scan_cuda.h"

namespace {

using namespace umamba::cuda;
using namespace umamba::cuda::testing;

torch::Tensor to_tensor(const std::vector<double>& v, std::vector<std::int64_t> sizes) {
  return torch::tensor(v, torch::kDouble).reshape(sizes);
}

std::vector<double> to_vector(const torch::Tensor& t) {
  const torch::Tensor c = t.detach().to(torch::kCPU, torch::kDouble).contiguous();
  return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
}

void check_op(const ScanShape& s, torch::ScalarType dtype, bool transposed, unsigned seed) {
  const ScanDtype sd = dtype == torch::kFloat ? ScanDtype::F32 : ScanDtype::BF16;
  const Problem p = make_problem(s, sd, seed);
  const auto want_out = ref::scan_forward(p.view());
  const auto want = ref::scan_backward(p.view(), p.dout.data());
  const auto dev = torch::Device(torch::kCUDA);
  const std::vector<std::int64_t> rows{s.batch, s.dim, s.len}, planes{s.batch, s.nstate, s.len};
  // Leaf tensors on the GPU; `transposed` stores u, delta, z as (batch, len, dim) and views them.
  auto leaf_rows = [&](const std::vector<double>& v) {
    torch::Tensor t = to_tensor(v, rows);
    if (transposed) t = t.transpose(1, 2).contiguous();
    t = t.to(dev, dtype).detach().requires_grad_(true);
    return t;
  };
  auto view_rows = [&](const torch::Tensor& leaf) {
    return transposed ? leaf.transpose(1, 2) : leaf;
  };
  auto leaf = [&](const std::vector<double>& v, std::vector<std::int64_t> sz, torch::ScalarType t) {
    return to_tensor(v, sz).to(dev, t).detach().requires_grad_(true);
  };
  torch::Tensor u = leaf_rows(p.u), delta = leaf_rows(p.delta), z = leaf_rows(p.z);
  torch::Tensor A = leaf(p.A, {s.dim, s.nstate}, torch::kFloat);
  torch::Tensor B = leaf(p.B, planes, dtype), C = leaf(p.C, planes, dtype);
  torch::Tensor D = leaf(p.D, {s.dim}, torch::kFloat), bias = leaf(p.bias, {s.dim}, torch::kFloat);
  const torch::Tensor out = umamba::model::detail::selective_scan_cuda(
      view_rows(u), view_rows(delta), A, B, C, D, view_rows(z), bias, true);
  ASSERT_EQ(out.scalar_type(), dtype);
  ASSERT_EQ(out.sizes(), torch::IntArrayRef(rows));
  const torch::Tensor dout = to_tensor(p.dout, rows).to(dev, dtype);
  out.backward(dout);

  const double ft = fwd_tolerance(sd), gt = grad_tolerance(sd);
  auto rows_of = [&](const torch::Tensor& g) { return to_vector(view_rows(g)); };
  EXPECT_LE(max_rel_error(to_vector(out), want_out), ft) << "out";
  EXPECT_LE(max_rel_error(rows_of(u.grad()), want.du), gt) << "du";
  EXPECT_LE(max_rel_error(rows_of(delta.grad()), want.ddelta), gt) << "ddelta";
  EXPECT_LE(max_rel_error(rows_of(z.grad()), want.dz), gt) << "dz";
  EXPECT_LE(max_rel_error(to_vector(A.grad()), want.dA), 1e-3) << "dA";
  EXPECT_LE(max_rel_error(to_vector(B.grad()), want.dB), gt) << "dB";  // returned in B's dtype
  EXPECT_LE(max_rel_error(to_vector(C.grad()), want.dC), gt) << "dC";
  EXPECT_LE(max_rel_error(to_vector(D.grad()), want.dD), 1e-3) << "dD";
  EXPECT_LE(max_rel_error(to_vector(bias.grad()), want.ddelta_bias), 1e-3) << "ddelta_bias";
}

TEST(Cuda_ScanTorch, fp32_autograd_matches_reference) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  check_op({2, 3, 7, 16}, torch::kFloat, false, 1);
  check_op({2, 8, 1500, 16}, torch::kFloat, false, 2);
  check_op({1, 4, 300, 64}, torch::kFloat, false, 3);
}

TEST(Cuda_ScanTorch, transposed_inputs_are_handled) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  check_op({2, 6, 333, 16}, torch::kFloat, true, 4);
}

TEST(Cuda_ScanTorch, bf16_autograd_matches_reference) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  check_op({2, 4, 700, 16}, torch::kBFloat16, false, 5);
}

TEST(Cuda_ScanTorch, no_grad_forward_and_errors) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const auto dev = torch::Device(torch::kCUDA);
  const auto opt = torch::TensorOptions().device(dev);
  torch::NoGradGuard no_grad;
  torch::Tensor u = torch::randn({1, 2, 600}, opt), A = -torch::rand({2, 16}, opt) - 0.5;
  torch::Tensor B = torch::randn({1, 16, 600}, opt), C = torch::randn({1, 16, 600}, opt);
  const torch::Tensor out = umamba::model::detail::selective_scan_cuda(
      u, u * 0.1, A, B, C, std::nullopt, std::nullopt, std::nullopt, true);
  EXPECT_TRUE(torch::isfinite(out).all().item<bool>());
  EXPECT_THROW(umamba::model::detail::selective_scan_cuda(u.cpu(), u, A, B, C, std::nullopt,
                                                          std::nullopt, std::nullopt, true),
               std::exception);
  EXPECT_THROW(umamba::model::detail::selective_scan_cuda(
                   u, u, A, B.narrow(2, 0, 10), C, std::nullopt, std::nullopt, std::nullopt, true),
               std::exception);
}

}  // namespace
