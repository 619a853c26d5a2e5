// `umamba bench engine`: the tiling engine end to end on a large tiled TIFF (src/engine/bench.h).
#include <fmt/core.h>

#include <memory>

#include "cli/bench.h"
#include "core/build_info.h"
#include "core/error.h"
#include "engine/bench.h"

namespace umamba::cli {
namespace {

// The engine exists only in LibTorch builds; the discarded branch keeps a build without LibTorch
// from referring to it.
template <bool kTorch>
void run_engine_bench(const engine::EngineBenchOptions& options, bool json) {
  if constexpr (kTorch) {
    const auto result = engine::run_engine_bench(options);
    if (json) {
      fmt::print("{}\n", result.dump(2));
    } else {
      fmt::print("{}", engine::format_engine_bench(result));
    }
  } else {
    throw Unsupported("bench engine: this build has no LibTorch (UMAMBA_TORCH=OFF)");
  }
}

void add_bench_engine(CLI::App& bench) {
  struct Options {
    engine::EngineBenchOptions o;
    std::string input, work_dir, model_file, network_config;
    bool json = false;
  };
  auto opts = std::make_shared<Options>();
  auto& o = opts->o;
  CLI::App* cmd = bench.add_subcommand(
      "engine",
      "Tiling engine end to end on a large tiled TIFF (synthetic 40,000 x 40,000 u8 by default): "
      "Mpixel/s, time per stage, peak memory, GPU busy fraction, model-only baseline");
  cmd->add_option("--input", opts->input,
                  "TIFF to process (default: a synthetic one in --work-dir)")
      ->envname("UMAMBA_BENCH_ENGINE_INPUT");
  cmd->add_option("--work-dir", opts->work_dir,
                  "Folder for the synthetic input (reused when present) and the output (default: "
                  "the system's temporary folder)")
      ->envname("UMAMBA_BENCH_ENGINE_WORK_DIR");
  cmd->add_option("--size", o.size, "Edge of the synthetic square u8 image, pixels")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_BENCH_ENGINE_SIZE");
  cmd->add_option("--rows", o.rows, "Process only the first N rows (0: all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->envname("UMAMBA_BENCH_ENGINE_ROWS");
  cmd->add_option("--device", o.device, "cpu, cuda or cuda:N")
      ->capture_default_str()
      ->envname("UMAMBA_BENCH_ENGINE_DEVICE");
  cmd->add_option("--model", o.model,
                  "tiny (conv3x3-ReLU-conv3x3 net), torchscript (--model-file), umamba-bot, "
                  "umamba-enc or plain (the paper's 2D microscopy configuration, random weights), "
                  "network (--network-config)")
      ->capture_default_str()
      ->check(
          CLI::IsMember({"tiny", "torchscript", "umamba-bot", "umamba-enc", "plain", "network"}))
      ->envname("UMAMBA_BENCH_ENGINE_MODEL");
  cmd->add_option("--model-file", opts->model_file,
                  "TorchScript module (batch [N,C,Y,X] -> logits, or a list whose first entry is "
                  "the full-resolution logits)")
      ->envname("UMAMBA_BENCH_ENGINE_MODEL_FILE");
  cmd->add_option("--network-config", opts->network_config,
                  "umamba::model NetworkConfig JSON (--model network)")
      ->envname("UMAMBA_BENCH_ENGINE_NETWORK_CONFIG");
  cmd->add_option("--width", o.width, "tiny: hidden channels")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_BENCH_ENGINE_WIDTH");
  cmd->add_option("--classes", o.classes, "Output classes of the model")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_BENCH_ENGINE_CLASSES");
  cmd->add_option("--patch", o.patch, "Square patch edge, pixels")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_BENCH_ENGINE_PATCH");
  cmd->add_option("--batch", o.batch, "Tiles per model call")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_BENCH_ENGINE_BATCH");
  cmd->add_option("--step", o.step, "Tile step as a fraction of the patch (nnU-Net: 0.5)")
      ->capture_default_str()
      ->envname("UMAMBA_BENCH_ENGINE_STEP");
  cmd->add_option("--precision", o.precision, "fp32, fp16 or bf16 (autocast on the device)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "fp16", "bf16"}))
      ->envname("UMAMBA_BENCH_ENGINE_PRECISION");
  cmd->add_flag("--mirror", o.mirror, "Mirroring test-time augmentation over both axes (4 passes)")
      ->envname("UMAMBA_BENCH_ENGINE_MIRROR");
  cmd->add_option("--in-flight", o.in_flight, "Batches in flight in the pipeline")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_BENCH_ENGINE_IN_FLIGHT");
  cmd->add_option("--readers", o.readers,
                  "Readers decoding the input in parallel, one per block of tiles (0: TBB threads)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->envname("UMAMBA_BENCH_ENGINE_READERS");
  cmd->add_option("--torch-threads", o.torch_threads, "LibTorch intra-op threads (0: its default)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->envname("UMAMBA_BENCH_ENGINE_TORCH_THREADS");
  cmd->add_option("--baseline-batches", o.baseline_batches,
                  "Model-only batches timed as the baseline (0: skip)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->envname("UMAMBA_BENCH_ENGINE_BASELINE_BATCHES");
  cmd->add_flag("--keep-output", o.keep_output, "Keep the written class map")
      ->envname("UMAMBA_BENCH_ENGINE_KEEP_OUTPUT");
  cmd->add_flag("--json", opts->json, "Print the figures as JSON")
      ->envname("UMAMBA_BENCH_ENGINE_JSON");
  cmd->callback([opts] {
    opts->o.input = opts->input;
    opts->o.work_dir = opts->work_dir;
    opts->o.model_file = opts->model_file;
    opts->o.network_config = opts->network_config;
    run_engine_bench<build_info::kTorch>(opts->o, opts->json);
  });
}

}  // namespace

UMAMBA_REGISTER_BENCH(add_bench_engine);

}  // namespace umamba::cli
