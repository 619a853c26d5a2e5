// Sampled GPU utilisation through NVML loaded with dlopen (see gpu_monitor.h).
#include "engine/gpu_monitor.h"

#include <dlfcn.h>

namespace umamba::engine {
namespace {

// The few NVML declarations used here (nvml.h, stable ABI since NVML 2.x).
using nvmlReturn_t = int;
struct NvmlUtilization {
  unsigned int gpu;
  unsigned int memory;
};
using InitFn = nvmlReturn_t (*)();
using HandleFn = nvmlReturn_t (*)(unsigned int, void**);
using UtilFn = nvmlReturn_t (*)(void*, NvmlUtilization*);
using ShutdownFn = nvmlReturn_t (*)();

}  // namespace

GpuMonitor::GpuMonitor(int index, std::chrono::milliseconds period) : period_(period) {
  lib_ = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib_) {
    error_ = "libnvidia-ml.so.1 not found (no NVIDIA driver)";
    return;
  }
  auto init = reinterpret_cast<InitFn>(dlsym(lib_, "nvmlInit_v2"));
  auto handle = reinterpret_cast<HandleFn>(dlsym(lib_, "nvmlDeviceGetHandleByIndex_v2"));
  get_utilization_ = dlsym(lib_, "nvmlDeviceGetUtilizationRates");
  shutdown_ = dlsym(lib_, "nvmlShutdown");
  if (!init || !handle || !get_utilization_ || !shutdown_) {
    error_ = "NVML lacks the expected functions";
    return;
  }
  if (init() != 0) {
    error_ = "nvmlInit failed";
    shutdown_ = nullptr;
    return;
  }
  if (handle(static_cast<unsigned int>(index), &device_) != 0) {
    error_ = "NVML has no device " + std::to_string(index);
    return;
  }
  available_ = true;
  running_ = true;
  thread_ = std::thread([this] { loop(); });
}

void GpuMonitor::loop() {
  auto util = reinterpret_cast<UtilFn>(get_utilization_);
  while (running_.load()) {
    NvmlUtilization u{};
    if (util(device_, &u) == 0) {
      sum_ += u.gpu;
      ++samples_;
    }
    std::this_thread::sleep_for(period_);
  }
}

double GpuMonitor::stop() {
  if (running_.exchange(false) && thread_.joinable()) thread_.join();
  if (!available_ || samples_.load() == 0) return -1.0;
  return static_cast<double>(sum_.load()) / (100.0 * samples_.load());
}

GpuMonitor::~GpuMonitor() {
  stop();
  if (shutdown_) reinterpret_cast<ShutdownFn>(shutdown_)();
  if (lib_) dlclose(lib_);
}

}  // namespace umamba::engine
