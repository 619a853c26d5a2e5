// Out of GPU memory down to one tile per call: `umamba predict` runs that file on the CPU with a
// warning, and its labels equal a CPU run's (label `gpu`; skips without a CUDA device). Run by
// the lead on the GPU machine:
//   ctest --test-dir build-gpu -R Reliability_GpuFallback --output-on-failure
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include "io/image_io.h"
#include "pipeline/pipeline_test_util.h"
#include "pipeline/predict_model_util.h"

namespace umamba::pipeline {
namespace {

using namespace test;

TEST(Reliability_GpuFallback, oom_at_one_tile_falls_back_to_the_cpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  ::unsetenv("UMAMBA_FAULT_INJECT");
  TempDir t;
  const fs::path model = t / "model", in = t / "in";
  make_tiny_model(model, 1);
  for (int i = 0; i < 2; ++i) {
    io::write_image(in / ("img" + std::to_string(i) + ".tif"),
                    cell_image(72, 60 + 4 * i, 20 + static_cast<uint32_t>(i)));
  }
  auto args = [&](const fs::path& out, const std::string& device) {
    return std::vector<std::string>{"predict",      in.string(),  "-o",   out.string(),   "-m",
                                    model.string(), "--device",   device, "--batch-size", "4",
                                    "--no-mirror",  "--progress", "lines"};
  };
  ASSERT_EQ(run_umamba(args(t / "cpu", "cpu"), t / "cpu.log").status, 0);
  // img0 on the GPU: 4 tiles, 2, 1 all fail; the CPU then runs it (its model calls are the
  // 4th onwards, which succeed).
  const RunResult r =
      run_umamba(args(t / "gpu", "cuda:0"), t / "gpu.log", {{"UMAMBA_FAULT_INJECT", "alloc:1-3"}});
  EXPECT_EQ(r.status, 0) << r.log;
  EXPECT_NE(r.log.find("WARNING img0.tif: engine: out of memory on cuda:0 even with one tile"),
            std::string::npos)
      << r.log;
  EXPECT_NE(r.log.find("running this file on the CPU instead"), std::string::npos) << r.log;
  EXPECT_TRUE(io::read_image(t / "gpu" / "img0_label.tiff")
                  .same_pixels(io::read_image(t / "cpu" / "img0_label.tiff")));
  EXPECT_TRUE(fs::exists(t / "gpu" / "img1_label.tiff"));
  const auto m = read_json(t / "gpu" / "umamba_predict.json");
  EXPECT_EQ(m["files"]["img0.tif"]["fallback"]["device"], "cpu");
  EXPECT_FALSE(m["files"]["img1.tif"].contains("fallback"));
}

}  // namespace
}  // namespace umamba::pipeline
