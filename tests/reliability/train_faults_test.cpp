// `umamba train` under faults, through the built binary: a training step that runs out of memory
// (UMAMBA_FAULT_INJECT "alloc:N@train_step", core/fault_injection.h) stops the run with a message
// naming the batch and patch size and what to lower, a non-zero exit status, and no model folder
// written as if the run had finished.
#include <gtest/gtest.h>

#include "pipeline/pipeline_test_util.h"

namespace umamba::pipeline {
namespace {

using namespace test;

TEST(Reliability_TrainCli, out_of_memory_in_a_step_names_batch_and_patch) {
  TempDir t;
  const fs::path data = t / "data", model = t / "model";
  ASSERT_EQ(run_umamba({"synth", "-o", data.string(), "--count", "4", "--size", "64x64",
                        "--cell-diameter", "10", "--seed", "3"},
                       t / "synth.log")
                .status,
            0);
  const std::vector<std::string> train = {"train",
                                          data.string(),
                                          "-o",
                                          model.string(),
                                          "--device",
                                          "cpu",
                                          "-a",
                                          "bot",
                                          "-c",
                                          "2d",
                                          "--stages",
                                          "3",
                                          "--base-features",
                                          "4",
                                          "--max-features",
                                          "8",
                                          "--patch-size",
                                          "32x32",
                                          "--batch-size",
                                          "2",
                                          "--epochs",
                                          "1",
                                          "--iterations",
                                          "3",
                                          "--fold",
                                          "all",
                                          "--progress",
                                          "lines",
                                          "--workers",
                                          "1"};
  const RunResult r =
      run_umamba(train, t / "train.log", {{"UMAMBA_FAULT_INJECT", "alloc:2@train_step"}});
  EXPECT_NE(r.status, 0) << r.log;
  EXPECT_NE(r.log.find("out of memory in a training step with a batch of 2 patches of 32x32"),
            std::string::npos)
      << r.log;
  EXPECT_NE(r.log.find("Lower --batch-size or --patch-size"), std::string::npos) << r.log;
  // The run did not finish: no model folder that predict would take for a trained model.
  EXPECT_FALSE(fs::exists(model / "network.json"));
  EXPECT_FALSE(fs::exists(model / "fold_all" / "weights.pt"));
  // Without the fault the same command finishes and writes the model folder.
  std::vector<std::string> clean = train;
  clean[3] = (t / "model_ok").string();
  const RunResult ok = run_umamba(clean, t / "train_ok.log", {{"UMAMBA_FAULT_INJECT", ""}});
  EXPECT_EQ(ok.status, 0) << ok.log;
  EXPECT_TRUE(fs::exists(t / "model_ok" / "network.json"));
}

}  // namespace
}  // namespace umamba::pipeline
