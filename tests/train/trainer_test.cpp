// The training loop on the CPU: learning on a fixed batch, exact resume, the model folder that
// `umamba predict` reads, non-finite steps, option errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>

#include "model/model_folder.h"
#include "model/model_io.h"
#include "model/networks.h"
#include "plan/dataset.h"
#include "train/augment.h"
#include "train/step.h"
#include "train/trainer.h"
#include "train_test_util.h"

namespace umamba::train {
namespace {

using testing::TempDir;
namespace fs = std::filesystem;

model::NetworkConfig tiny_network(model::Architecture arch) {
  model::NetworkConfig c;
  c.architecture = arch;
  c.input_channels = 1;
  c.num_classes = 3;
  c.features_per_stage = {4, 8, 16};
  c.kernel_sizes = {{3, 3}, {3, 3}, {3, 3}};
  c.strides = {{1, 1}, {2, 2}, {2, 2}};
  c.n_conv_per_stage_encoder = {1, 1, 1};
  c.n_conv_per_stage_decoder = {1, 1};
  c.patch_size = {32, 32};
  c.deep_supervision = true;
  return c;
}

TEST(Train_Loop, loss_decreases_on_a_fixed_batch) {
  for (auto arch : {model::Architecture::UMambaBot, model::Architecture::PlainConvUNet}) {
    torch::manual_seed(0);
    auto net = model::make_network(tiny_network(arch));
    StepOptions o;
    o.ds_weights = deep_supervision_weights(2);
    Optimization opt(net, o, torch::kCPU);
    // A fixed batch: a bright square (class 1) with a ring (class 2) on noise.
    auto lab = torch::zeros({2, 1, 32, 32});
    lab.narrow(2, 8, 16).narrow(3, 8, 16).fill_(2);
    lab.narrow(2, 10, 12).narrow(3, 10, 12).fill_(1);
    const auto data = (lab > 0).to(torch::kFloat) * 2 + torch::randn({2, 1, 32, 32}) * 0.3;
    const auto targets = downsample_targets(lab, {{1, 1}, {2, 2}});
    std::vector<double> losses;
    for (int i = 0; i < 25; ++i) {
      const StepResult r = opt.step(data, targets);
      ASSERT_FALSE(r.skipped);
      losses.push_back(r.loss);
    }
    EXPECT_LT(losses.back(), losses.front() - 0.3)
        << model::to_string(arch) << ": " << losses.front() << " -> " << losses.back();
  }
}

TEST(Train_Loop, bf16_autocast_step_runs_on_cpu) {
  torch::manual_seed(0);
  auto net = model::make_network(tiny_network(model::Architecture::UMambaBot));
  StepOptions o;
  o.precision = Precision::BF16;
  o.ds_weights = deep_supervision_weights(2);
  Optimization opt(net, o, torch::kCPU);
  auto lab = torch::randint(0, 3, {2, 1, 32, 32}).to(torch::kFloat);
  const auto data = torch::randn({2, 1, 32, 32});
  const StepResult r = opt.step(data, downsample_targets(lab, {{1, 1}, {2, 2}}));
  EXPECT_FALSE(r.skipped);
  EXPECT_TRUE(std::isfinite(r.loss));
  for (const auto& p : net->parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat);
}

TEST(Train_Loop, non_finite_steps_are_skipped_then_stop_with_a_message) {
  torch::manual_seed(0);
  auto net = model::make_network(tiny_network(model::Architecture::PlainConvUNet));
  StepOptions o;
  o.ds_weights = deep_supervision_weights(2);
  o.max_nonfinite = 3;
  Optimization opt(net, o, torch::kCPU);
  const auto before = net->parameters().front().clone();
  auto lab = torch::randint(0, 3, {2, 1, 32, 32}).to(torch::kFloat);
  const auto targets = downsample_targets(lab, {{1, 1}, {2, 2}});
  auto bad = torch::randn({2, 1, 32, 32});
  bad[0][0][3][3] = NAN;
  for (int i = 0; i < 2; ++i) {
    const StepResult r = opt.step(bad, targets);
    EXPECT_TRUE(r.skipped);
    EXPECT_TRUE(torch::equal(net->parameters().front(), before))
        << "a skipped step changed weights";
  }
  // A good step resets the count.
  EXPECT_FALSE(opt.step(torch::randn({2, 1, 32, 32}), targets).skipped);
  EXPECT_EQ(opt.consecutive_nonfinite(), 0);
  opt.step(bad, targets);
  opt.step(bad, targets);
  try {
    opt.step(bad, targets);
    FAIL() << "no error after 3 non-finite steps";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("non-finite"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--precision fp32"), std::string::npos) << e.what();
  }
}

TrainOptions tiny_options(const fs::path& out) {
  TrainOptions o;
  o.output = out;
  o.configuration = "2d";
  o.architecture = "bot";
  o.fold = "0";
  o.folds = 3;
  o.epochs = 2;
  o.iterations = 3;
  o.device = "cpu";
  o.workers = 2;
  o.queue_depth = 3;
  o.val_max_cases = 1;
  return o;
}

std::map<std::string, torch::Tensor> weights_of(const fs::path& model_dir) {
  return model::read_weights((model_dir / "fold_0" / "weights.pt").string());
}

TEST(Train_Loop, resume_reproduces_the_uninterrupted_run_exactly) {
  torch::set_num_threads(1);  // bit-identical CPU reductions in both runs
  TempDir dir("resume");
  testing::write_neurips_dataset(dir.path() / "data", 4, 48);
  const plan::DatasetDescription d = plan::discover_dataset(dir.path() / "data");
  const nlohmann::json plans = testing::tiny_plans_2d();

  TrainOptions a = tiny_options(dir.path() / "A");
  const TrainResult ra = train(d, plans, a);
  ASSERT_TRUE(ra.completed);
  ASSERT_EQ(ra.history.size(), 2u);

  // Same run, stopped after 4 iterations (inside epoch 1), then resumed.
  TrainOptions b = tiny_options(dir.path() / "B");
  b.stop_after_iterations = 4;
  const TrainResult rb1 = train(d, plans, b);
  EXPECT_TRUE(rb1.stopped);
  EXPECT_FALSE(rb1.completed);
  EXPECT_EQ(rb1.next_epoch, 1);
  EXPECT_EQ(rb1.next_iteration, 1);
  EXPECT_TRUE(fs::exists(dir.path() / "B" / "fold_0" / "checkpoint_latest.pt"));
  // Without --resume the folder is refused.
  b.stop_after_iterations = -1;
  EXPECT_THROW(train(d, plans, b), Error);
  b.resume = true;
  const TrainResult rb2 = train(d, plans, b);
  ASSERT_TRUE(rb2.completed);
  // Bit-identical weights and the same log.
  const auto wa = weights_of(dir.path() / "A"), wb = weights_of(dir.path() / "B");
  ASSERT_EQ(wa.size(), wb.size());
  for (const auto& [k, t] : wa) {
    ASSERT_TRUE(wb.count(k)) << k;
    EXPECT_TRUE(torch::equal(t, wb.at(k))) << k;
  }
  ASSERT_EQ(rb2.history.size(), ra.history.size());
  for (size_t i = 0; i < ra.history.size(); ++i) {
    EXPECT_EQ(rb2.history[i].train_loss, ra.history[i].train_loss) << "epoch " << i;
    EXPECT_EQ(rb2.history[i].val_metric, ra.history[i].val_metric) << "epoch " << i;
  }
  // Resuming with other settings is refused, naming the setting.
  TrainOptions c = tiny_options(dir.path() / "B");
  c.resume = true;
  c.seed = 1;
  c.epochs = 3;
  try {
    train(d, plans, c);
    FAIL() << "resume with another seed was accepted";
  } catch (const FileError& e) {
    EXPECT_NE(std::string(e.what()).find("seed"), std::string::npos) << e.what();
  }
}

TEST(Train_Loop, writes_a_model_folder_that_predict_reads) {
  TempDir dir("folder");
  testing::write_neurips_dataset(dir.path() / "data", 4, 48);
  const plan::DatasetDescription d = plan::discover_dataset(dir.path() / "data");
  TrainOptions o = tiny_options(dir.path() / "model");
  o.epochs = 1;
  o.validate_untrained = true;
  const TrainResult r = train(d, testing::tiny_plans_2d(), o);
  ASSERT_TRUE(r.completed);
  const fs::path m = dir.path() / "model";
  for (const char* f :
       {"network.json", "plans.json", "dataset.json", "metadata.json", "splits.json",
        "fold_0/weights.pt", "fold_0/checkpoint_final.pt", "fold_0/checkpoint_latest.pt",
        "fold_0/training_log.csv", "fold_0/training_log.json", "fold_0/split.json"}) {
    EXPECT_TRUE(fs::exists(m / f)) << f;
  }
  if (io::is_supported_image(m / "fold_0" / "progress.png")) {
    EXPECT_TRUE(fs::exists(m / "fold_0" / "progress.png"));
    const Image png = io::read_image(m / "fold_0" / "progress.png");
    EXPECT_EQ(png.channels(), 3);
  }
  const model::ModelFolder folder = model::read_model_folder(m.string());
  EXPECT_EQ(folder.metadata.value("configuration", ""), "2d");
  EXPECT_EQ(folder.network.num_classes, 3);
  EXPECT_EQ(folder.network.architecture, model::Architecture::UMambaBot);
  EXPECT_EQ(folder.folds, std::vector<std::string>{"0"});
  EXPECT_EQ(folder.dataset["labels"]["interior"], 1);
  {
    auto net = model::load_network(folder, "0");
    net->set_deep_supervision(false);
    torch::NoGradGuard g;
    const auto out = net->forward(torch::randn({1, 1, 32, 32}));
    EXPECT_EQ(out.front().sizes(), (std::vector<int64_t>{1, 3, 32, 32}));
  }
  // The log: the untrained validation (epoch −1) and one epoch, with the F1 and lr.
  ASSERT_EQ(r.history.size(), 2u);
  EXPECT_EQ(r.history[0].epoch, -1);
  EXPECT_GE(r.history[0].val_metric, 0.0);
  EXPECT_EQ(r.history[1].epoch, 0);
  EXPECT_DOUBLE_EQ(r.history[1].lr, 1e-2);
  EXPECT_EQ(r.history[1].steps, 3);
  std::ifstream csv(m / "fold_0" / "training_log.csv");
  std::string header;
  std::getline(csv, header);
  EXPECT_EQ(header.rfind("epoch,train_loss", 0), 0u);
  // A second fold joins the same folder and both stay listed.
  TrainOptions o1 = o;
  o1.fold = "1";
  o1.validate_untrained = false;
  ASSERT_TRUE(train(d, testing::tiny_plans_2d(), o1).completed);
  const model::ModelFolder both = model::read_model_folder(m.string());
  EXPECT_EQ(both.folds, (std::vector<std::string>{"0", "1"}));
  // The cache made the second fold's preprocessing a pure reuse.
}

TEST(Train_Loop, second_run_reuses_the_cache) {
  TempDir dir("cachereuse");
  testing::write_neurips_dataset(dir.path() / "data", 3, 48);
  const plan::DatasetDescription d = plan::discover_dataset(dir.path() / "data");
  TrainOptions o = tiny_options(dir.path() / "m1");
  o.epochs = 1;
  o.iterations = 1;
  o.val_every = 0;
  o.cache_dir = dir.path() / "cache";
  const TrainResult r1 = train(d, testing::tiny_plans_2d(), o);
  EXPECT_EQ(r1.cache_built, 3);
  o.output = dir.path() / "m2";
  const TrainResult r2 = train(d, testing::tiny_plans_2d(), o);
  EXPECT_EQ(r2.cache_reused, 3);
  EXPECT_EQ(r2.cache_built, 0);
}

TEST(Train_Loop, network_overrides_shrink_the_model) {
  TempDir dir("overrides");
  testing::write_neurips_dataset(dir.path() / "data", 3, 48);
  const plan::DatasetDescription d = plan::discover_dataset(dir.path() / "data");
  TrainOptions o = tiny_options(dir.path() / "m");
  o.epochs = 1;
  o.iterations = 1;
  o.val_every = 0;
  o.stages = 2;
  o.base_features = 2;
  o.max_features = 3;
  o.patch_size = {16, 16};
  const TrainResult r = train(d, testing::tiny_plans_2d(), o);
  ASSERT_TRUE(r.completed);
  const model::ModelFolder folder = model::read_model_folder((dir.path() / "m").string());
  // Plans: 3 stages of 4/8/16 features; now the first 2 stages with min(2·2^i, 3) features.
  EXPECT_EQ(folder.network.features_per_stage, (std::vector<int>{2, 3}));
  EXPECT_EQ(folder.network.strides, (std::vector<std::vector<int>>{{1, 1}, {2, 2}}));
  EXPECT_EQ(folder.network.n_conv_per_stage_decoder.size(), 1u);
  EXPECT_EQ(folder.network.patch_size, (std::vector<int>{16, 16}));
  EXPECT_EQ(r.metadata["training"]["0"]["network_overrides"]["stages"], 2);
  EXPECT_EQ(r.metadata["training"]["0"]["cuda_graph"], false);  // auto on the CPU: ordinary steps
  auto net = model::load_network(folder, "0");
  net->set_deep_supervision(false);
  torch::NoGradGuard g;
  EXPECT_EQ(net->forward(torch::randn({1, 1, 16, 16})).front().sizes(),
            (std::vector<int64_t>{1, 3, 16, 16}));
}

TEST(Train_Loop, option_errors_name_the_option) {
  TempDir dir("errors");
  testing::write_neurips_dataset(dir.path() / "data", 3, 48);
  const plan::DatasetDescription d = plan::discover_dataset(dir.path() / "data");
  auto message_of = [&](TrainOptions o) {
    try {
      train(d, testing::tiny_plans_2d(), o);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  TrainOptions o = tiny_options(dir.path() / "m");
  o.patch_size = {30, 30};
  EXPECT_NE(message_of(o).find("not divisible"), std::string::npos);
  o = tiny_options(dir.path() / "m");
  o.configuration = "3d_fullres";
  EXPECT_NE(message_of(o).find("no configuration '3d_fullres'"), std::string::npos);
  o = tiny_options(dir.path() / "m");
  o.precision = "fp8";
  EXPECT_NE(message_of(o).find("fp8"), std::string::npos);
  o = tiny_options(dir.path() / "m");
  o.fold = "7";
  EXPECT_NE(message_of(o).find("--fold"), std::string::npos);
  o = tiny_options(dir.path() / "m");
  o.stages = 4;
  EXPECT_NE(message_of(o).find("--stages 4"), std::string::npos);
  o = tiny_options(dir.path() / "m");
  o.base_features = 8;
  o.max_features = 4;
  EXPECT_NE(message_of(o).find("--max-features 4"), std::string::npos);
}

}  // namespace
}  // namespace umamba::train
