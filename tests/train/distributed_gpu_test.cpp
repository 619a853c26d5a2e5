// Data-parallel training on two GPUs with NCCL (label `gpu`; skips without two CUDA devices): two
// `umamba train` processes (cuda:0 and cuda:1) against one process on cuda:0 fed the same samples.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>

#include "dist_test_util.h"
#include "train/data_parallel.h"
#include "train_test_util.h"

namespace umamba::train {
namespace {

namespace fs = std::filesystem;
using namespace testing;  // NOLINT: the test helpers

#ifdef UMAMBA_CLI_PATH

TEST(Train_DistributedGpu, two_nccl_ranks_follow_one_gpu_on_the_same_samples) {
  if (!torch::cuda::is_available() || torch::cuda::device_count() < 2)
    GTEST_SKIP() << "needs two CUDA devices";
  if (!nccl_available()) GTEST_SKIP() << "this build has no NCCL";
  ::setenv("NCCL_NVLS_ENABLE", "0", 1);
  TempDir dir("dist_gpu");
  const fs::path d = dir.path();
  write_neurips_dataset(d / "data", 4, 96);
  std::ofstream(d / "plans.json") << tiny_plans_2d(64, 4).dump(1);
  auto common = [&](const std::string& out, const std::string& dump) {
    return std::vector<std::string>{"train",
                                    (d / "data").string(),
                                    "--plans",
                                    (d / "plans.json").string(),
                                    "-c",
                                    "2d",
                                    "-a",
                                    "bot",
                                    "--epochs",
                                    "2",
                                    "--iterations",
                                    "5",
                                    "--batch-size",
                                    "4",
                                    "--folds",
                                    "3",
                                    "--val-max-cases",
                                    "1",
                                    "--progress",
                                    "lines",
                                    "--precision",
                                    "fp32",
                                    "--no-augment",
                                    "--dist-sampling",
                                    "global-slice",
                                    "--cache-dir",
                                    (d / "cache").string(),
                                    "-o",
                                    out,
                                    "--debug-dump",
                                    dump};
  };
  auto one = common((d / "one").string(), (d / "dump1").string());
  one.insert(one.end(), {"--device", "cuda:0"});
  const pid_t p = spawn_umamba(one, d / "one.log");
  ASSERT_EQ(wait_exit(p), 0) << slurp(d / "one.log");
  const auto log = [&](int r) { return d / ("two" + std::to_string(r) + ".log"); };
  const std::vector<int> codes = run_ranks(
      2,
      [&](int r, int port) {
        auto a = common((d / "two").string(), (d / "dump2").string());
        a.insert(a.end(), {"--world-size", "2", "--rank", std::to_string(r), "--local-rank",
                           std::to_string(r), "--master-addr", "127.0.0.1", "--master-port",
                           std::to_string(port), "--dist-backend", "nccl", "--dist-timeout", "5"});
        return spawn_umamba(a, log(r));
      },
      log(0));
  ASSERT_EQ(codes.size(), 2u);
  for (int r = 0; r < 2; ++r) EXPECT_EQ(codes[static_cast<size_t>(r)], 0) << slurp(log(r));
  // The steps from the fourth on are CUDA-graph replays (the default on GPUs), with the gradient
  // all-reduce captured in them: identical parameters on both ranks show it ran on every replay.
  EXPECT_NE(slurp(d / "two0.log").find("captured in a CUDA graph"), std::string::npos)
      << slurp(d / "two0.log");
  const auto p0 = read_params(d / "dump2" / "rank0_params.pt");
  const auto p1 = read_params(d / "dump2" / "rank1_params.pt");
  const auto p_one = read_params(d / "dump1" / "rank0_params.pt");
  ASSERT_EQ(p0.size(), p1.size());
  ASSERT_EQ(p0.size(), p_one.size());
  double max_diff = 0;
  for (size_t i = 0; i < p0.size(); ++i) {
    EXPECT_TRUE(torch::equal(p0[i], p1[i])) << "parameter " << i;
    max_diff = std::max(max_diff, (p0[i] - p_one[i]).abs().max().item<double>());
  }
  // TF32 convolutions and a different batch split round differently: a loose bound.
  EXPECT_LT(max_diff, 1e-2);
  const auto l_one = read_losses(d / "dump1" / "rank0_losses.txt");
  const auto l0 = read_losses(d / "dump2" / "rank0_losses.txt");
  ASSERT_EQ(l_one.size(), 10u);
  ASSERT_EQ(l0.size(), 10u);
  for (size_t i = 0; i < l0.size(); ++i)
    EXPECT_NEAR(l0[i].second, l_one[i].second, 2e-3 * std::max(1.0, std::abs(l_one[i].second)))
        << "iteration " << i;
}

#endif  // UMAMBA_CLI_PATH

}  // namespace
}  // namespace umamba::train
