// `umamba bench train-step`: the optimisation step (step.h) alone, on a batch already on the
// device, for the U-Mamba paper's 2D microscopy configuration (model::microscopy_2d_config) —
// what the official code's train_step is timed on — or its 3D abdomen-CT configuration
// (ct_3d_config). Free of LibTorch headers.
//
// For each architecture × batch size × step mode (ordinary steps, CUDA graph) it times
// `iterations` steps after `warmup` (which include the graph's capture) and reports the time per
// step, samples/s and the device memory. With two or more batch sizes it fits t(n) = a + b·n per
// mode: a is the part of a step that does not shrink with the batch (what caps data-parallel
// scaling at a fixed global batch), b the time per sample. With `phases`, ordinary steps are also
// cut into forward, loss, backward and optimiser by CUDA events, to show where a comes from; with
// `kernels`, the GPU activity of a few ordinary steps is recorded by LibTorch's profiler: kernels
// per step, their summed time, how much of it is kernels shorter than 20 µs, and the largest.
#pragma once

#include <nlohmann/json.hpp>

#include "model/network_config.h"

#include <cstdint>
#include <string>
#include <vector>

namespace umamba::train {

// The 3D abdomen-CT configuration of the U-Mamba paper's comparisons (reference peer-perf.md
// "3D CT"): 1 channel, 14 classes, the topology nnU-Net's get_pool_and_conv_props gives for the
// patch at a spacing of 2.5 x 0.8 x 0.8 mm (plan::pool_and_conv_props; at 40 x 224 x 192: 6 stages,
// strides 1, (1,2,2), 2, 2, 2, (1,2,2), kernels (1,3,3) then 3), features 32 doubling to 320, two
// convolutions per stage; the patch padded to the pooling's multiple. Deep supervision on.
model::NetworkConfig ct_3d_config(model::Architecture architecture,
                                  const std::vector<int64_t>& patch);

struct StepBenchOptions {
  std::string config = "microscopy-2d";  // microscopy-2d (square `patch`) or ct-3d (`volume`)
  std::vector<std::string> architectures{"bot", "enc"};  // bot, enc, plain
  std::vector<int64_t> batches{6, 12};
  std::vector<std::string> modes{"off", "on"};  // CUDA graph off / on
  std::string precision = "bf16";               // bf16, fp16, fp32
  std::string device = "cuda";
  int patch = 512;                            // microscopy-2d: square edge
  std::vector<int64_t> volume{40, 224, 192};  // ct-3d: Z, Y, X
  bool deep_supervision = true;
  bool phases = true;
  bool kernels = false;  // LibTorch's profiler (Kineto/CUPTI) over ordinary steps: GPU kernels
  int iterations = 20;
  int warmup = 6;  // at least the graph's warm-up + 1 (the capture)
};

nlohmann::json run_step_bench(const StepBenchOptions& options);
std::string format_step_bench(const nlohmann::json& result);

}  // namespace umamba::train
