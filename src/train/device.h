// The training device as the trainer, the step and its benchmark see it: "cuda" resolved to the
// current GPU's index, and the memory LibTorch's CUDA caching allocator accounts on it. On the
// CPU (and in builds whose LibTorch has no CUDA) the memory figures are 0 and resets do nothing.
#pragma once

#include <torch/torch.h>

namespace umamba::train {

// "cuda" without an index becomes cuda:<current device>; other devices are returned as they are.
torch::Device with_device_index(torch::Device device);

struct DeviceMemory {
  double in_use_gb = 0;    // held by tensors now
  double peak_gb = 0;      // held by tensors at most since the last reset_peak_device_memory
  double reserved_gb = 0;  // taken from the driver by the allocator (cached blocks, graph pools)
  double total_gb = 0;     // the card's memory
};
DeviceMemory device_memory(const torch::Device& device);
void reset_peak_device_memory(const torch::Device& device);

}  // namespace umamba::train
