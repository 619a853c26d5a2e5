// Sampled GPU utilisation through NVML, loaded at run time (dlopen of libnvidia-ml.so.1), so the
// build needs neither the NVML headers nor the library and runs unchanged on machines without a
// GPU driver.
//
// Method: a background thread reads nvmlDeviceGetUtilizationRates every `period`; NVML's "gpu"
// figure is the percentage of its last sample window (1/6 s to 1 s, driver dependent) during which
// at least one kernel was running. The mean over the samples is the busy fraction. Limits: NVML
// indexes devices in PCI order, which equals CUDA's order unless CUDA_VISIBLE_DEVICES or
// CUDA_DEVICE_ORDER reorder them; "a kernel was running" is not "the SMs were full".
#pragma once

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

namespace umamba::engine {

class GpuMonitor {
 public:
  // Starts sampling device `index`; when NVML or the device is missing, available() is false and
  // the reason is in error().
  explicit GpuMonitor(int index, std::chrono::milliseconds period = std::chrono::milliseconds(50));
  ~GpuMonitor();
  GpuMonitor(const GpuMonitor&) = delete;
  GpuMonitor& operator=(const GpuMonitor&) = delete;

  bool available() const { return available_; }
  const std::string& error() const { return error_; }
  // Stops sampling; returns the mean utilisation in [0, 1] (negative when unavailable).
  double stop();
  int samples() const { return samples_.load(); }

 private:
  void loop();

  void* lib_ = nullptr;
  void* device_ = nullptr;
  void* get_utilization_ = nullptr;
  void* shutdown_ = nullptr;
  bool available_ = false;
  std::string error_;
  std::chrono::milliseconds period_;
  std::atomic<bool> running_{false};
  std::atomic<int> samples_{0};
  std::atomic<long long> sum_{0};
  std::thread thread_;
};

}  // namespace umamba::engine
