// `umamba predict` on the GPU machine (label `gpu`; skips without a CUDA device): two workers on
// one GPU, and one worker per GPU with --device all, split a folder with no file done twice, and
// their labels equal a one-worker CPU run's up to the pixels where GPU and CPU arithmetic tip the
// arg-max (at most 2 % of the pixels: cuDNN may use TF32, and a random network has many near-ties).
#include <gtest/gtest.h>

#include "io/image_io.h"
#include "pipeline/predict.h"
#include "pipeline_test_util.h"
#include "predict_model_util.h"

namespace umamba::pipeline {
namespace {

using namespace test;

void check_split(const std::string& device, int workers_per_device) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  TempDir t;
  const fs::path model = t / "model", in = t / "in", out = t / "out", cpu = t / "cpu";
  make_tiny_model(model);
  const int files = 12;
  for (int i = 0; i < files; ++i) {
    io::write_image(in / ("img" + std::to_string(i) + ".tif"), cell_image(256, 240, 300 + i));
  }
  const std::vector<std::string> common = {"predict",      in.string(),  "-m",
                                           model.string(), "--progress", "lines"};
  auto args = common;
  args.insert(args.end(), {"-o", out.string(), "--device", device, "--workers",
                           std::to_string(workers_per_device)});
  const RunResult r = run_umamba(args, t / "log");
  ASSERT_EQ(r.status, 0) << r.log;
  auto cpu_args = common;
  cpu_args.insert(cpu_args.end(), {"-o", cpu.string(), "--device", "cpu"});
  ASSERT_EQ(run_umamba(cpu_args, t / "log_cpu").status, 0);
  const auto m = read_json(out / "umamba_predict.json");
  std::map<int, int> per_worker;
  for (int i = 0; i < files; ++i) {
    const std::string key = "img" + std::to_string(i) + ".tif";
    EXPECT_EQ(count_of(r.log, "done " + key + " "), 1) << key;
    ASSERT_EQ(m["files"][key]["status"], "done") << key;
    ++per_worker[m["files"][key]["worker"].get<int>()];
    EXPECT_EQ(m["files"][key]["device"].get<std::string>().rfind("cuda:", 0), 0u);
    const Image a = io::read_image(out / ("img" + std::to_string(i) + "_label.tiff"));
    const Image b = io::read_image(cpu / ("img" + std::to_string(i) + "_label.tiff"));
    ASSERT_EQ(a.shape(), b.shape());
    // Labels may be numbered differently where a flipped pixel splits or joins objects; compare
    // foreground masks.
    int64_t differ = 0;
    const Image a32 = a.cast(DType::U32), b32 = b.cast(DType::U32);
    for (int64_t p = 0; p < a.shape().pixels(); ++p) {
      differ += (a32.data_as<uint32_t>()[p] != 0) != (b32.data_as<uint32_t>()[p] != 0);
    }
    EXPECT_LE(differ, a.shape().pixels() / 50) << key;
  }
  std::cerr << "files per worker:";
  for (const auto& [w, n] : per_worker) std::cerr << " " << w << ":" << n;
  std::cerr << "\n";
}

TEST(Pipeline_PredictGpu, two_workers_on_one_gpu_split_a_folder) {
  check_split("cuda:0", 2);
}

TEST(Pipeline_PredictGpu, one_worker_per_gpu_split_a_folder) {
  check_split("all", 1);
}

}  // namespace
}  // namespace umamba::pipeline
