// The engine on a CUDA device equals the engine on the CPU (label `gpu`; skips without CUDA).
#include <gtest/gtest.h>

#if defined(UMAMBA_TORCH_HAS_CUDA)
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "engine/predictor.h"
#include "engine/tile_model.h"
#include "engine_test_util.h"

namespace umamba::engine {
namespace {

torch::Tensor logits_of(const Prediction& p) {
  return test::to_tensor(p.logits).to(torch::kFloat32);
}

TEST(Engine_Gpu, cuda_equals_cpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  for (int dims : {2, 3}) {
    const std::vector<int64_t> patch =
        dims == 2 ? std::vector<int64_t>{64, 64} : std::vector<int64_t>{8, 32, 32};
    const Shape shape = dims == 2 ? Shape{1, 2, 301, 257} : Shape{1, 30, 70, 65};
    const Image img = test::random_image(DType::U8, shape, 0, 255, 3);
    auto cpu_net = test::make_tiny_conv(dims, 1, 3, 3, 5);
    auto gpu_net = test::make_tiny_conv(dims, 1, 3, 3, 5);  // same seed: same weights
    ModuleTileModel cpu(cpu_net, {1, 3, patch}, torch::kCPU);
    ModuleTileModel gpu(gpu_net, {1, 3, patch}, torch::Device(torch::kCUDA, 0));
    EngineOptions o;
    o.outputs = kLogits | kClasses;
    o.batch_size = 4;
    o.mirror_axes = {0};
    const Prediction a = predict_image(img, cpu, Normalization{}, o);
    const Prediction b = predict_image(img, gpu, Normalization{}, o);
    EXPECT_EQ(b.stats.device, "cuda:0");
    EXPECT_GT(b.stats.device_s, 0.0);
    // cuDNN may use TF32 for fp32 convolutions: allow its rounding.
    EXPECT_LT((logits_of(a) - logits_of(b)).abs().max().item<float>(), 2e-2f) << dims << "D";
    // Mixed precision runs and stays close.
    o.precision = Precision::F16;
    const Prediction c = predict_image(img, gpu, Normalization{}, o);
    EXPECT_LT((logits_of(a) - logits_of(c)).abs().max().item<float>(), 5e-2f) << dims << "D";
    o.precision = Precision::BF16;
    const Prediction d = predict_image(img, gpu, Normalization{}, o);
    EXPECT_LT((logits_of(a) - logits_of(d)).abs().max().item<float>(), 2e-1f) << dims << "D";
  }
}

// Regression: device memory stays flat over many runs. Each run used a fresh pool stream, and
// cuBLAS keeps a workspace per (thread handle, stream) for the life of the process, so every file
// or validation case added about 32 MiB (a training run's validation grew to 12 GB). The model here
// is one linear map over the channels, which runs as a cuBLAS matrix product.
TEST(Engine_Gpu, regression_device_memory_flat_over_runs) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
#if defined(UMAMBA_TORCH_HAS_CUDA)
  const torch::Device dev(torch::kCUDA, 0);
  torch::nn::Linear linear(2, 3);
  linear->to(dev);
  FunctionTileModel model(
      [linear](const torch::Tensor& x) mutable {
        return linear->forward(x.permute({0, 2, 3, 1})).permute({0, 3, 1, 2}).contiguous();
      },
      TileModelSpec{2, 3, {64, 64}}, dev);
  const Image img = test::random_image(DType::U8, Shape{2, 1, 200, 190}, 0, 255, 3);
  EngineOptions o;
  o.outputs = kClasses;
  o.batch_size = 4;
  const auto allocated = [] {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
    return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)]
        .current;
  };
  predict_image(img, model, Normalization{}, o);  // handles and first workspaces
  const int64_t before = allocated();
  for (int i = 0; i < 40; ++i) predict_image(img, model, Normalization{}, o);
  EXPECT_LT(allocated() - before, int64_t{64} << 20)
      << "device memory grew by " << (allocated() - before) / (1 << 20) << " MiB over 40 runs";
#else
  GTEST_SKIP() << "LibTorch without CUDA";
#endif
}

}  // namespace
}  // namespace umamba::engine
