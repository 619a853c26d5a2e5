// `umamba bench ccl`: connected-component labelling on a random-blob 2D image and volume, ours
// (1 and N threads) beside OpenCV and SciPy measured in the same run (src/pipeline/bench_ccl.h).
#include <fmt/core.h>

#include <memory>

#include "cli/bench.h"
#include "pipeline/bench_ccl.h"

namespace umamba::cli {
namespace {

void add_ccl_bench(CLI::App& bench) {
  auto o = std::make_shared<pipeline::BenchCclOptions>();
  o->python = "python3";
  CLI::App* cmd = bench.add_subcommand(
      "ccl", "Connected components: Mvoxels/s on 1 and N threads beside OpenCV and SciPy");
  cmd->add_option("--size-2d", o->size_2d, "Edge of the 2D image, pixels")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{16}, int64_t{65536}))
      ->envname("UMAMBA_BENCH_CCL_SIZE_2D");
  cmd->add_option("--size-3d", o->size_3d, "Edge of the volume, voxels")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{8}, int64_t{2048}))
      ->envname("UMAMBA_BENCH_CCL_SIZE_3D");
  cmd->add_option("--repeats", o->repeats, "Runs per measurement (the median is reported)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_BENCH_CCL_REPEATS");
  cmd->add_option("--parallel-threads", o->threads, "Threads of the parallel rows")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_BENCH_CCL_THREADS");
  cmd->add_option("--python", o->python,
                  "Python with numpy and scipy for the scipy.ndimage.label peer (empty: skip it)")
      ->capture_default_str()
      ->envname("UMAMBA_PYTHON");
  cmd->add_option("--seed", o->seed, "Seed of the random images")
      ->capture_default_str()
      ->envname("UMAMBA_BENCH_CCL_SEED");
  cmd->callback([o] { fmt::print("{}", pipeline::run_bench_ccl(*o)); });
}

}  // namespace

UMAMBA_REGISTER_BENCH(add_ccl_bench);

}  // namespace umamba::cli
