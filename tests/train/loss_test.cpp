// Loss, deep supervision, schedule and loss scaling against plain formulas written out here
// (nnU-Net v2.2.1's definitions, reference/umamba-mamba-nnunet.md §4.6).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "model/networks.h"
#include "train/loss.h"
#include "train/step.h"
#include "train/step_bench.h"

namespace umamba::train {
namespace {

// CE + negative soft Dice by explicit loops in double: logits [B,K,N] (flattened space).
double reference_loss(const torch::Tensor& logits_in, const torch::Tensor& target_in,
                      bool batch_dice, double smooth = 1e-5) {
  const auto logits =
      logits_in.to(torch::kDouble).reshape({logits_in.size(0), logits_in.size(1), -1});
  const auto target = target_in.to(torch::kLong).reshape({target_in.size(0), -1});
  const int64_t B = logits.size(0), K = logits.size(1), N = logits.size(2);
  auto L = logits.accessor<double, 3>();
  auto T = target.accessor<int64_t, 2>();
  double ce = 0;
  // p[b][k][n]
  std::vector<double> p(static_cast<size_t>(B * K * N));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < N; ++n) {
      double mx = -1e300;
      for (int64_t k = 0; k < K; ++k) mx = std::max(mx, L[b][k][n]);
      double z = 0;
      for (int64_t k = 0; k < K; ++k) z += std::exp(L[b][k][n] - mx);
      for (int64_t k = 0; k < K; ++k)
        p[static_cast<size_t>((b * K + k) * N + n)] = std::exp(L[b][k][n] - mx) / z;
      ce += -(L[b][T[b][n]][n] - mx - std::log(z));
    }
  ce /= static_cast<double>(B * N);
  // Dice over classes 1..K-1.
  std::vector<double> dcs;
  auto dice_of = [&](int64_t b0, int64_t b1, int64_t k) {
    double inter = 0, pred = 0, gt = 0;
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t n = 0; n < N; ++n) {
        const double pk = p[static_cast<size_t>((b * K + k) * N + n)];
        const double yk = T[b][n] == k ? 1.0 : 0.0;
        inter += pk * yk;
        pred += pk;
        gt += yk;
      }
    return (2 * inter + smooth) / std::max(gt + pred + smooth, 1e-8);
  };
  for (int64_t k = 1; k < K; ++k) {
    if (batch_dice) {
      dcs.push_back(dice_of(0, B, k));
    } else {
      for (int64_t b = 0; b < B; ++b) dcs.push_back(dice_of(b, b + 1, k));
    }
  }
  double mean = 0;
  for (double d : dcs) mean += d;
  mean /= static_cast<double>(dcs.size());
  return ce - mean;
}

TEST(Train_Loss, dice_ce_matches_reference_formula) {
  torch::manual_seed(3);
  for (bool batch_dice : {true, false}) {
    for (const auto& shape : std::vector<std::vector<int64_t>>{{2, 3, 5, 7}, {3, 4, 4, 3, 5}}) {
      const auto logits = torch::randn(shape) * 3;
      std::vector<int64_t> tshape = shape;
      tshape[1] = 1;
      const auto target = torch::randint(0, shape[1], tshape).to(torch::kFloat);
      DiceCEOptions options;
      options.batch_dice = batch_dice;
      const LossTerms got = dice_ce_loss(logits, target, options);
      const double want = reference_loss(logits, target, batch_dice);
      EXPECT_NEAR(got.total.item<double>(), want, 1e-5) << "batch_dice " << batch_dice;
      EXPECT_NEAR(got.total.item<double>(), (got.ce + got.dice).item<double>(), 1e-6);
      EXPECT_LT(got.dice.item<double>(), 0.0);  // negative Dice, not 1 − Dice
    }
  }
}

TEST(Train_Loss, perfect_prediction_gives_minus_one_dice) {
  // Very confident correct logits: CE → 0 and Dice → 1, so the loss → −1.
  const auto target = torch::tensor({0, 1, 2, 1, 0, 2}, torch::kFloat).reshape({1, 1, 2, 3});
  const auto onehot =
      torch::nn::functional::one_hot(target.squeeze(1).to(torch::kLong), 3).permute({0, 3, 1, 2});
  const auto logits = onehot.to(torch::kFloat) * 50.0;
  const LossTerms got = dice_ce_loss(logits, target);
  EXPECT_NEAR(got.total.item<double>(), -1.0, 1e-4);
}

TEST(Train_Loss, deep_supervision_weights_match_nnunet) {
  // nnU-Net: w_i = 1/2^i, w_last = 0, normalised.
  const auto w = deep_supervision_weights(5);
  const double sum = 1 + 0.5 + 0.25 + 0.125;
  const std::vector<double> want{1 / sum, 0.5 / sum, 0.25 / sum, 0.125 / sum, 0.0};
  ASSERT_EQ(w.size(), want.size());
  for (size_t i = 0; i < w.size(); ++i) EXPECT_DOUBLE_EQ(w[i], want[i]);
  EXPECT_EQ(deep_supervision_weights(1), std::vector<double>{1.0});
  const auto w2 = deep_supervision_weights(2);
  EXPECT_DOUBLE_EQ(w2[0], 1.0);
  EXPECT_DOUBLE_EQ(w2[1], 0.0);
}

TEST(Train_Loss, deep_supervision_scales_are_cumulative_pooling) {
  const auto s = deep_supervision_scales({{1, 1}, {2, 2}, {2, 2}, {2, 1}});
  const std::vector<std::vector<int64_t>> want{{1, 1}, {2, 2}, {4, 4}};
  EXPECT_EQ(s, want);
  const auto s3 = deep_supervision_scales({{1, 1, 1}, {1, 2, 2}, {2, 2, 2}});
  EXPECT_EQ(s3, (std::vector<std::vector<int64_t>>{{1, 1, 1}, {1, 2, 2}}));
}

TEST(Train_Loss, deep_supervision_loss_is_the_weighted_sum) {
  torch::manual_seed(5);
  const auto l0 = torch::randn({2, 3, 8, 8}), l1 = torch::randn({2, 3, 4, 4});
  const auto t0 = torch::randint(0, 3, {2, 1, 8, 8}).to(torch::kFloat);
  const auto t1 = torch::randint(0, 3, {2, 1, 4, 4}).to(torch::kFloat);
  const std::vector<double> w{0.7, 0.3};
  const LossTerms got = deep_supervision_loss({l0, l1}, {t0, t1}, w, {});
  const double want = 0.7 * reference_loss(l0, t0, true) + 0.3 * reference_loss(l1, t1, true);
  EXPECT_NEAR(got.total.item<double>(), want, 1e-5);
  // Zero weights are skipped (the lowest output never enters).
  const LossTerms only0 = deep_supervision_loss({l0, l1}, {t0, t1}, {1.0, 0.0}, {});
  EXPECT_NEAR(only0.total.item<double>(), reference_loss(l0, t0, true), 1e-5);
}

TEST(Train_Loss, poly_schedule_matches_nnunet) {
  // PolyLRScheduler: lr0 · (1 − epoch / epochs)^0.9, in the same floating-point steps as
  // nnU-Net's `initial_lr * (1 - current_step / max_steps) ** exponent`.
  EXPECT_DOUBLE_EQ(poly_lr(1e-2, 0, 1000), 1e-2);
  EXPECT_DOUBLE_EQ(poly_lr(1e-2, 500, 1000), 1e-2 * std::pow(0.5, 0.9));
  EXPECT_DOUBLE_EQ(poly_lr(1e-2, 999, 1000), 1e-2 * std::pow(1.0 - 999.0 / 1000.0, 0.9));
  EXPECT_NEAR(poly_lr(1e-2, 999, 1000), 1.9952623149688793e-05, 1e-15);
  EXPECT_DOUBLE_EQ(poly_lr(1e-2, 1000, 1000), 0.0);
  for (int e = 1; e < 1000; ++e) EXPECT_LT(poly_lr(1e-2, e, 1000), poly_lr(1e-2, e - 1, 1000));
}

TEST(Train_Loss, grad_scaler_backs_off_and_grows) {
  GradScaler scaler(true, torch::kCPU, 1024.0, 2.0, 0.5, /*growth_interval=*/3);
  auto p = torch::ones({4}, torch::requires_grad());
  // A finite step: gradients unscaled exactly.
  scaler.scale((p * 2).sum()).backward();
  EXPECT_FALSE(scaler.unscale_and_check({p}));
  EXPECT_TRUE(torch::allclose(p.grad(), torch::full({4}, 2.0)));
  scaler.update(false);
  EXPECT_DOUBLE_EQ(scaler.current_scale(), 1024.0);
  // Overflow: found, scale halved.
  p.mutable_grad() = torch::tensor({1.0f, INFINITY, 0.0f, 1.0f});
  EXPECT_TRUE(scaler.unscale_and_check({p}));
  scaler.update(true);
  EXPECT_DOUBLE_EQ(scaler.current_scale(), 512.0);
  // Three clean steps in a row: doubled.
  for (int i = 0; i < 3; ++i) {
    p.mutable_grad() = torch::ones({4});
    EXPECT_FALSE(scaler.unscale_and_check({p}));
    scaler.update(false);
  }
  EXPECT_DOUBLE_EQ(scaler.current_scale(), 1024.0);
  // Disabled scaler: still detects NaN, never scales.
  GradScaler off(false, torch::kCPU);
  p.mutable_grad() = torch::tensor({1.0f, NAN, 0.0f, 1.0f});
  EXPECT_TRUE(off.unscale_and_check({p}));
  EXPECT_DOUBLE_EQ(off.current_scale(), 1.0);
}

// The multi-tensor SGD step against LibTorch's own SGD::step (the plain reference): same
// parameters and momentum buffers over several steps, with weight decay, momentum, Nesterov, a
// parameter without a gradient and one that gets its first gradient late.
TEST(Train_Step, foreach_sgd_matches_torch_sgd) {
  torch::manual_seed(3);
  const std::vector<std::vector<int64_t>> shapes = {{4, 3}, {7}, {2, 2, 3}, {5}};
  std::vector<torch::Tensor> a, b;
  for (const auto& s : shapes) {
    auto t = torch::randn(s);
    a.push_back(t.clone().requires_grad_());
    b.push_back(t.clone().requires_grad_());
  }
  const auto options =
      torch::optim::SGDOptions(0.05).momentum(0.99).nesterov(true).weight_decay(3e-5);
  torch::optim::SGD reference(a, options);
  torch::optim::SGD fast(b, options);
  for (int step = 0; step < 4; ++step) {
    for (size_t i = 0; i < shapes.size(); ++i) {
      a[i].mutable_grad() = torch::Tensor();
      b[i].mutable_grad() = torch::Tensor();
      if (i == 1 && step % 2 == 1) continue;  // no gradient this step: left alone
      if (i == 3 && step < 2) continue;       // first gradient at step 2: a fresh buffer
      const auto g = torch::randn(shapes[i]);
      a[i].mutable_grad() = g.clone();
      b[i].mutable_grad() = g.clone();
    }
    reference.step();
    sgd_foreach_step(fast);
    for (size_t i = 0; i < shapes.size(); ++i) {
      EXPECT_TRUE(torch::allclose(a[i], b[i], 1e-6, 1e-7)) << "parameter " << i << " step " << step;
    }
  }
  // The momentum buffers are where torch::optim::SGD keeps them (save/load and resume see them).
  ASSERT_EQ(reference.state().size(), fast.state().size());
  for (size_t i = 0; i < shapes.size(); ++i) {
    const auto& ra = static_cast<torch::optim::SGDParamState&>(
        *reference.state().at(a[i].unsafeGetTensorImpl()));
    const auto& fb =
        static_cast<torch::optim::SGDParamState&>(*fast.state().at(b[i].unsafeGetTensorImpl()));
    EXPECT_TRUE(torch::allclose(ra.momentum_buffer(), fb.momentum_buffer(), 1e-6, 1e-7));
  }
}

// CUDA graphs are for CUDA devices: asking for one on the CPU fails when the step is set up, with
// the flag's name, not at the fourth step.
TEST(Train_Step, cuda_graph_needs_a_cuda_device) {
  model::NetworkConfig c;
  c.architecture = model::Architecture::PlainConvUNet;
  c.input_channels = 1;
  c.num_classes = 2;
  c.features_per_stage = {4, 8};
  c.kernel_sizes.assign(2, {3, 3});
  c.strides = {{1, 1}, {2, 2}};
  c.n_conv_per_stage_encoder = {1, 1};
  c.n_conv_per_stage_decoder = {1};
  c.patch_size = {16, 16};
  StepOptions o;
  o.cuda_graph = true;
  try {
    Optimization opt(model::make_network(c), o, torch::kCPU);
    FAIL() << "a CUDA graph on the CPU was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--cuda-graph"), std::string::npos) << e.what();
  }
  o.cuda_graph = false;
  EXPECT_NO_THROW(Optimization(model::make_network(c), o, torch::kCPU));
}

// `umamba bench train-step` on the CPU at a toy patch: one row per architecture × batch, a fit
// per architecture, the step cut into its parts; the CUDA graph refused without a CUDA device.
TEST(Train_StepBench, reports_runs_fits_and_phases) {
  StepBenchOptions o;
  o.device = "cpu";
  o.precision = "fp32";
  o.modes = {"off"};
  o.architectures = {"bot", "plain"};
  o.batches = {1, 2};
  o.patch = 32;
  o.iterations = 1;
  o.warmup = 4;
  const nlohmann::json r = run_step_bench(o);
  ASSERT_EQ(r.at("runs").size(), 4u);
  for (const auto& run : r.at("runs")) {
    EXPECT_GT(run.at("ms_per_step").get<double>(), 0.0);
    EXPECT_NEAR(run.at("samples_per_s").get<double>(),
                1000.0 * run.at("batch").get<double>() / run.at("ms_per_step").get<double>(), 1e-9);
  }
  ASSERT_EQ(r.at("fits").size(), 2u);
  ASSERT_EQ(r.at("phases").size(), 4u);
  for (const auto& p : r.at("phases"))
    for (const char* k : {"forward", "loss", "backward", "optimizer"})
      EXPECT_GT(p.at(k).at("device_ms").get<double>(), 0.0) << k;
  const std::string text = format_step_bench(r);
  EXPECT_NE(text.find("UMambaBot graph off: t(n) ="), std::string::npos) << text;
  EXPECT_NE(text.find("can reach at most"), std::string::npos) << text;
  o.modes = {"on"};
  EXPECT_THROW(run_step_bench(o), Error);
  o.modes = {"off"};
  o.kernels = true;
  EXPECT_THROW(run_step_bench(o), Error);
}

// The 3D abdomen-CT configuration: at the paper's patch, the topology of reference peer-perf.md
// ("3D CT": 6 stages, strides 1, (1,2,2), 2, 2, 2, (1,2,2), kernels (1,3,3) then 3, features 32 to
// 320); and the bench runs it on the CPU at a toy volume.
TEST(Train_StepBench, ct_3d_configuration_and_run) {
  const model::NetworkConfig c = ct_3d_config(model::Architecture::UMambaEnc, {40, 224, 192});
  EXPECT_EQ(c.features_per_stage, (std::vector<int>{32, 64, 128, 256, 320, 320}));
  EXPECT_EQ(c.strides, (std::vector<std::vector<int>>{
                           {1, 1, 1}, {1, 2, 2}, {2, 2, 2}, {2, 2, 2}, {2, 2, 2}, {1, 2, 2}}));
  EXPECT_EQ(c.kernel_sizes[0], (std::vector<int>{1, 3, 3}));
  for (int i = 1; i < 6; ++i) EXPECT_EQ(c.kernel_sizes[i], (std::vector<int>{3, 3, 3})) << i;
  EXPECT_EQ(c.patch_size, (std::vector<int>{40, 224, 192}));
  EXPECT_EQ(c.input_channels, 1);
  EXPECT_EQ(c.num_classes, 14);
  EXPECT_NO_THROW(model::resolve(c));
  EXPECT_THROW(ct_3d_config(model::Architecture::UMambaEnc, {40, 224}), Error);

  StepBenchOptions o;
  o.config = "ct-3d";
  o.volume = {8, 32, 32};
  o.device = "cpu";
  o.precision = "fp32";
  o.modes = {"off"};
  o.architectures = {"enc"};
  o.batches = {1};
  o.iterations = 1;
  o.warmup = 4;
  o.phases = false;
  const nlohmann::json r = run_step_bench(o);
  ASSERT_EQ(r.at("runs").size(), 1u);
  EXPECT_GT(r.at("runs")[0].at("ms_per_step").get<double>(), 0.0);
  EXPECT_EQ(r.at("patch").get<std::vector<int>>(), (std::vector<int>{8, 32, 32}));
  const std::string text = format_step_bench(r);
  EXPECT_NE(text.find("3D abdomen-CT configuration, patch 8x32x32"), std::string::npos) << text;
  o.config = "ct-4d";
  EXPECT_THROW(run_step_bench(o), Error);
}

}  // namespace
}  // namespace umamba::train
