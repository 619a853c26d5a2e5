// The trainer on a CUDA device (label `gpu`; skips without one): mixed-precision steps, the loss
// scaler, and a short run end to end.
#include <gtest/gtest.h>
#include <torch/torch.h>

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
