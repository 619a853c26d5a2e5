// The trainer on a CUDA device (label `gpu`; skips without one): mixed-precision steps, the loss
// scaler, and a short run end to end.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <iostream>

#include "model/networks.h"
#include "plan/dataset.h"
#include "train/augment.h"
#include "train/step.h"
#include "train/trainer.h"
#include "train_test_util.h"

namespace umamba::train {
namespace {

#define REQUIRE_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

model::NetworkConfig small_network(model::Architecture arch) {
  model::NetworkConfig c;
  c.architecture = arch;
  c.input_channels = 3;
  c.num_classes = 3;
  c.features_per_stage = {16, 32, 64, 128};
  c.kernel_sizes.assign(4, {3, 3});
  c.strides = {{1, 1}, {2, 2}, {2, 2}, {2, 2}};
  c.n_conv_per_stage_encoder = {2, 2, 2, 2};
  c.n_conv_per_stage_decoder = {2, 2, 2};
  c.patch_size = {128, 128};
  return c;
}

TEST(Train_Gpu, mixed_precision_steps_learn) {
  REQUIRE_CUDA();
  for (auto precision : {Precision::BF16, Precision::F16, Precision::F32}) {
    for (auto arch : {model::Architecture::UMambaBot, model::Architecture::UMambaEnc}) {
      torch::manual_seed(0);
      auto net = model::make_network(small_network(arch));
      StepOptions o;
      o.precision = precision;
      o.ds_weights = deep_supervision_weights(3);
      Optimization opt(net, o, torch::kCUDA);
      auto lab = torch::zeros({4, 1, 128, 128});
      lab.narrow(2, 32, 64).narrow(3, 32, 64).fill_(2);
      lab.narrow(2, 36, 56).narrow(3, 36, 56).fill_(1);
      const auto data =
          ((lab > 0).to(torch::kFloat) * 2 + torch::randn({4, 3, 128, 128}) * 0.3).cuda();
      const auto targets = downsample_targets(lab.cuda(), {{1, 1}, {2, 2}, {4, 4}});
      double first = 0, last = 0;
      int skipped = 0;
      for (int i = 0; i < 30; ++i) {
        const StepResult r = opt.step(data, targets);
        skipped += r.skipped;
        if (i == 0) first = r.loss;
        if (!r.skipped) last = r.loss;
      }
      EXPECT_LT(skipped, 5) << precision_name(precision);
      EXPECT_LT(last, first - 0.3) << model::to_string(arch) << " " << precision_name(precision);
      for (const auto& p : net->parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat);
    }
  }
}

// Full fp32 and deterministic cuDNN algorithms for the duration of a test: convolutions and
// matrix products without TF32, whose 10-bit mantissa (relative rounding ~5e-4) differs between
// the algorithms cuDNN picks with and without graph capture; restored afterwards.
class ExactCudnn {
 public:
  ExactCudnn()
      : cudnn_(at::globalContext().allowTF32CuDNN()),
        cublas_(at::globalContext().allowTF32CuBLAS()),
        deterministic_(at::globalContext().deterministicCuDNN()) {
    at::globalContext().setAllowTF32CuDNN(false);
    at::globalContext().setAllowTF32CuBLAS(false);
    at::globalContext().setDeterministicCuDNN(true);
  }
  ~ExactCudnn() {
    at::globalContext().setAllowTF32CuDNN(cudnn_);
    at::globalContext().setAllowTF32CuBLAS(cublas_);
    at::globalContext().setDeterministicCuDNN(deterministic_);
  }

 private:
  bool cudnn_, cublas_, deterministic_;
};

// The step captured in a CUDA graph against ordinary steps (the plain reference). Three copies of
// the same network train on the same changing batches: two op by op, one through the graph
// (captured at the third step, then replayed with each new batch copied in). The two ordinary
// runs differ only by the order of the scan backward's atomic additions, which Nesterov momentum
// 0.99 amplifies from step to step; the graph run must stay as close to the first as the second
// one does (losses, gradient norms and parameters). A batch of another size makes a second
// capture after its own warm-up steps.
TEST(Train_Gpu, cuda_graph_steps_match_ordinary_steps) {
  REQUIRE_CUDA();
  ExactCudnn exact;
  for (auto arch : {model::Architecture::UMambaBot, model::Architecture::UMambaEnc}) {
    for (auto precision : {Precision::F32, Precision::BF16}) {
      const std::string what =
          std::string(model::to_string(arch)) + " " + precision_name(precision);
      std::vector<std::shared_ptr<model::SegmentationNetwork>> nets;
      for (int k = 0; k < 3; ++k) {
        torch::manual_seed(0);
        nets.push_back(model::make_network(small_network(arch)));
      }
      StepOptions o;
      o.precision = precision;
      o.ds_weights = deep_supervision_weights(3);
      Optimization plain(nets[0], o, torch::kCUDA), again(nets[1], o, torch::kCUDA);
      o.cuda_graph = true;
      o.graph_warmup_steps = 2;
      Optimization graphed(nets[2], o, torch::kCUDA);

      auto batch = [](int64_t n, int seed) {
        torch::manual_seed(seed);
        auto lab = torch::zeros({n, 1, 128, 128});
        const int64_t y = 16 + seed * 7 % 40, x = 20 + seed * 11 % 40;
        lab.narrow(2, y, 64).narrow(3, x, 56).fill_(2);
        lab.narrow(2, y + 4, 56).narrow(3, x + 4, 48).fill_(1);
        auto data = ((lab > 0).to(torch::kFloat) * 2 + torch::randn({n, 3, 128, 128}) * 0.3).cuda();
        return std::make_pair(data, downsample_targets(lab.cuda(), {{1, 1}, {2, 2}, {4, 4}}));
      };
      double loss_noise = 0, loss_diff = 0, norm_noise = 0, norm_diff = 0;
      for (int i = 0; i < 8; ++i) {
        const auto [data, targets] = batch(4, i % 3);
        const StepResult a = plain.step(data, targets);
        const StepResult b = again.step(data, targets);
        const StepResult g = graphed.step(data, targets);
        ASSERT_FALSE(a.skipped || b.skipped || g.skipped) << what << " step " << i;
        loss_noise = std::max(loss_noise, std::abs(a.loss - b.loss));
        loss_diff = std::max(loss_diff, std::abs(a.loss - g.loss));
        norm_noise = std::max(norm_noise, std::abs(a.grad_norm - b.grad_norm));
        norm_diff = std::max(norm_diff, std::abs(a.grad_norm - g.grad_norm));
        EXPECT_EQ(graphed.graph_captures(), i < 2 ? 0 : 1) << what << " step " << i;
      }
      double param_noise = 0, param_diff = 0;
      const auto pa = nets[0]->parameters(), pb = nets[1]->parameters(), pg = nets[2]->parameters();
      for (size_t k = 0; k < pa.size(); ++k) {
        param_noise = std::max(param_noise, (pa[k] - pb[k]).abs().max().item<double>());
        param_diff = std::max(param_diff, (pa[k] - pg[k]).abs().max().item<double>());
      }
      // A floor for runs that happen to agree exactly (fp32: rounding; bf16: its mantissa).
      const double floor = precision == Precision::F32 ? 1e-5 : 1e-2;
      EXPECT_LE(loss_diff, 10 * loss_noise + floor) << what << " (noise " << loss_noise << ")";
      EXPECT_LE(norm_diff, 10 * norm_noise + floor) << what << " (noise " << norm_noise << ")";
      EXPECT_LE(param_diff, 10 * param_noise + floor) << what << " (noise " << param_noise << ")";
      std::cout << what << ": graph vs ordinary loss " << loss_diff << ", gradient norm "
                << norm_diff << ", parameters " << param_diff << "; ordinary twice " << loss_noise
                << ", " << norm_noise << ", " << param_noise << "\n";
      // Another batch size: two ordinary steps, then a second capture, and it still learns.
      double first = 0, last = 0;
      for (int i = 0; i < 5; ++i) {
        const auto [data, targets] = batch(2, 5);
        const StepResult r = graphed.step(data, targets);
        if (i == 0) first = r.loss;
        last = r.loss;
        EXPECT_EQ(graphed.graph_captures(), i < 2 ? 1 : 2) << what << " step " << i;
      }
      EXPECT_LT(last, first) << what;
    }
  }
}

TEST(Train_Gpu, short_run_end_to_end) {
  REQUIRE_CUDA();
  testing::TempDir dir("gpu_run");
  testing::write_neurips_dataset(dir.path() / "data", 6, 96);
  const plan::DatasetDescription d = plan::discover_dataset(dir.path() / "data");
  TrainOptions o;
  o.output = dir.path() / "model";
  o.configuration = "2d";
  o.fold = "0";
  o.folds = 3;
  o.epochs = 2;
  o.iterations = 5;
  o.device = "cuda";
  o.precision = "bf16";
  const TrainResult r = train(d, testing::tiny_plans_2d(64, 4), o);
  ASSERT_TRUE(r.completed);
  EXPECT_EQ(r.device, "cuda:0");
  EXPECT_GT(r.history.back().peak_gpu_memory_gb, 0.0);
  EXPECT_GE(r.history.back().val_metric, 0.0);
}

}  // namespace
}  // namespace umamba::train
