// The training device (see device.h).
#include "train/device.h"

#if defined(UMAMBA_TORCH_HAS_CUDA)
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace umamba::train {

torch::Device with_device_index(torch::Device device) {
#if defined(UMAMBA_TORCH_HAS_CUDA)
  if (device.is_cuda() && !device.has_index())
    return torch::Device(torch::kCUDA, c10::cuda::current_device());
#endif
  return device;
}

DeviceMemory device_memory(const torch::Device& device) {
  DeviceMemory m;
#if defined(UMAMBA_TORCH_HAS_CUDA)
  if (device.is_cuda()) {
    const auto index = with_device_index(device).index();
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
    const auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    const double gib = 1024.0 * 1024.0 * 1024.0;
    m.in_use_gb = static_cast<double>(stats.allocated_bytes[all].current) / gib;
    m.peak_gb = static_cast<double>(stats.allocated_bytes[all].peak) / gib;
    m.reserved_gb = static_cast<double>(stats.reserved_bytes[all].current) / gib;
    m.total_gb = static_cast<double>(at::cuda::getDeviceProperties(index)->totalGlobalMem) / gib;
  }
#endif
  (void)device;
  return m;
}

void reset_peak_device_memory(const torch::Device& device) {
#if defined(UMAMBA_TORCH_HAS_CUDA)
  if (device.is_cuda())
    c10::cuda::CUDACachingAllocator::resetPeakStats(with_device_index(device).index());
#endif
  (void)device;
}

}  // namespace umamba::train
