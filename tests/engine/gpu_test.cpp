// The engine on a CUDA device equals the engine on the CPU (label `gpu`; skips without CUDA).
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace umamba::engine
