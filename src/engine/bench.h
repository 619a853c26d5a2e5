// `umamba bench engine`: the tiling engine end to end on a large tiled TIFF: decode by regions,
// normalise, infer, blend, finish and write the class map band by band, with the time split per
// stage, the peak resident memory, and (on CUDA) the GPU's busy fraction.
//
// Baseline measured in the same run: the model alone on batches of random tiles already on the
// device (no reading, blending or writing). Its tiles/s times the engine's tile count gives the
// time a perfect pipeline would need; the ratio of that to the engine's wall time is the pipeline
// efficiency (1.0 = the engine adds nothing to the model's own time).
//
// This header does not include LibTorch, so the CLI can call it.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>

namespace umamba::engine {

struct EngineBenchOptions {
  std::filesystem::path input;     // a TIFF to process; empty: a synthetic one in work_dir
  std::filesystem::path work_dir;  // synthetic input and the output class map go here
  int64_t size = 40000;            // edge of the synthetic u8 image (pixels)
  bool keep_output = false;        // keep the written class map (default: removed)
  std::string device = "cpu";      // "cpu", "cuda", "cuda:1"
  // "tiny": a small conv net; "torchscript": model_file; "umamba-bot", "umamba-enc", "plain": the
  // paper's 2D microscopy configuration (8 stages at 512²) built by umamba::model, randomly
  // initialised; "network": umamba::model's NetworkConfig JSON in network_config.
  std::string model = "tiny";
  std::filesystem::path model_file;
  std::filesystem::path network_config;
  int64_t width = 8;    // tiny: hidden channels
  int64_t classes = 3;  // tiny: output classes (background, interior, boundary)
  int64_t patch = 512;  // square 2D patch
  int64_t batch = 8;
  double step = 0.5;
  std::string precision = "fp32";  // fp32, fp16, bf16 (autocast)
  bool mirror = false;             // mirroring TTA over both axes
  int in_flight = 4;               // pipeline tokens
  int readers = 0;                 // readers decoding the input in parallel (0: TBB threads)
  int64_t rows = 0;                // process only the first `rows` rows (0: all)
  int torch_threads = 0;           // LibTorch intra-op threads (0: LibTorch's default)
  int baseline_batches = 10;       // model-only batches timed for the baseline (0: skip)
};

// Runs the benchmark; returns the figures (see docs/engine.md for the keys).
nlohmann::json run_engine_bench(const EngineBenchOptions& options);

// A one-screen summary of run_engine_bench's result.
std::string format_engine_bench(const nlohmann::json& result);

}  // namespace umamba::engine
