// `umamba bench train-step`: the optimisation step alone, ordinary and as a CUDA graph, with its
// part that does not shrink with the batch (src/train/step_bench.h).
#include <fmt/core.h>

#include <memory>

#include "cli/bench.h"
#include "pipeline/train.h"

namespace umamba::cli {
namespace {

void add_train_step_bench(CLI::App& bench) {
  struct Options {
    train::StepBenchOptions o;
    bool json = false;
  };
  auto opts = std::make_shared<Options>();
  auto& o = opts->o;
  CLI::App* cmd = bench.add_subcommand(
      "train-step",
      "Training step alone on a batch on the device (the paper's 2D microscopy network, or its "
      "3D abdomen-CT one): ms per step with and without the CUDA graph, the part that does not "
      "shrink with the batch, and the step cut into forward, loss, backward and optimiser");
  cmd->add_option("--config", o.config,
                  "microscopy-2d (3 channels, 3 classes, square --patch) or ct-3d (1 channel, 14 "
                  "classes, --volume, nnU-Net's topology at 2.5 x 0.8 x 0.8 mm)")
      ->capture_default_str()
      ->check(CLI::IsMember({"microscopy-2d", "ct-3d"}))
      ->envname("UMAMBA_BENCH_TRAIN_STEP_CONFIG");
  cmd->add_option("--architectures", o.architectures, "bot, enc and/or plain")
      ->capture_default_str()
      ->delimiter(',')
      ->check(CLI::IsMember({"bot", "enc", "plain"}))
      ->envname("UMAMBA_BENCH_TRAIN_STEP_ARCHITECTURES");
  cmd->add_option("--batches", o.batches, "Batch sizes")
      ->capture_default_str()
      ->delimiter(',')
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_BENCH_TRAIN_STEP_BATCHES");
  cmd->add_option("--graph", o.modes, "CUDA graph of the step: off and/or on")
      ->capture_default_str()
      ->delimiter(',')
      ->check(CLI::IsMember({"off", "on"}))
      ->envname("UMAMBA_BENCH_TRAIN_STEP_GRAPH");
  cmd->add_option("--precision", o.precision, "bf16, fp16 or fp32")
      ->capture_default_str()
      ->check(CLI::IsMember({"bf16", "fp16", "fp32"}))
      ->envname("UMAMBA_BENCH_TRAIN_STEP_PRECISION");
  cmd->add_option("--device", o.device, "cuda, cuda:N or cpu")
      ->capture_default_str()
      ->envname("UMAMBA_BENCH_TRAIN_STEP_DEVICE");
  cmd->add_option("--patch", o.patch, "Square patch edge, pixels")
      ->capture_default_str()
      ->check(CLI::Range(8, 4096))
      ->envname("UMAMBA_BENCH_TRAIN_STEP_PATCH");
  cmd->add_option("--volume", o.volume, "ct-3d patch: Z,Y,X voxels")
      ->capture_default_str()
      ->delimiter(',')
      ->expected(3)
      ->check(CLI::Range(4, 4096))
      ->envname("UMAMBA_BENCH_TRAIN_STEP_VOLUME");
  cmd->add_flag("--deep-supervision,!--no-deep-supervision", o.deep_supervision,
                "Loss on every decoder output, as in training")
      ->capture_default_str()
      ->envname("UMAMBA_BENCH_TRAIN_STEP_DEEP_SUPERVISION");
  cmd->add_flag("--phases,!--no-phases", o.phases,
                "Also time forward, loss, backward and optimiser of ordinary steps")
      ->capture_default_str()
      ->envname("UMAMBA_BENCH_TRAIN_STEP_PHASES");
  cmd->add_flag("--kernels,!--no-kernels", o.kernels,
                "Also record the GPU kernels of 3 ordinary steps with LibTorch's profiler (count, "
                "time, the short ones, the largest)")
      ->capture_default_str()
      ->envname("UMAMBA_BENCH_TRAIN_STEP_KERNELS");
  cmd->add_option("--iterations", o.iterations, "Steps timed per run")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_BENCH_TRAIN_STEP_ITERATIONS");
  cmd->add_option("--warmup", o.warmup, "Steps before timing (include the graph's capture)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_BENCH_TRAIN_STEP_WARMUP");
  cmd->add_flag("--json", opts->json, "Print the result as JSON")
      ->envname("UMAMBA_BENCH_TRAIN_STEP_JSON");
  cmd->callback([opts] { fmt::print("{}", pipeline::run_train_step_bench(opts->o, opts->json)); });
}

}  // namespace

UMAMBA_REGISTER_BENCH(add_train_step_bench);

}  // namespace umamba::cli
