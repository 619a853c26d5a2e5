// A small host API over the CUDA runtime for code that must not include it (the CLI, tests): device
// facts, an owning device buffer (cudaMalloc), copies, deterministic random fills, and a
// stream-ordered timer. Errors throw umamba::Error (umamba::Unsupported when there is no device).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include "cuda/selective_scan.h"

namespace umamba::cuda {

// True when the CUDA runtime loads and sees at least one device.
bool device_available();

struct DeviceInfo {
  std::string name;
  int multiprocessors = 0;
  int cc_major = 0, cc_minor = 0;
  std::size_t memory_bytes = 0;
  std::size_t l2_bytes = 0;
  double peak_bandwidth_gbps = 0;  // 2 x memory clock x bus width (the datasheet figure)
};
DeviceInfo device_info();       // the current device
int current_multiprocessors();  // the current device's multiprocessor count (what plans read)
std::size_t device_free_bytes();

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  std::size_t size() const { return bytes_; }

  void upload(const void* host, std::size_t bytes);
  void download(void* host, std::size_t bytes) const;
  void fill_bytes(unsigned char value);  // synchronous memset

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

// Fills `count` elements of `dtype` at `dst` with a deterministic hash of (seed, index) mapped
// uniformly to [lo, hi). Runs on the device (fast for the benchmark's multi-GB tensors).
void fill_uniform(void* dst, ScanDtype dtype, std::size_t count, std::uint64_t seed, float lo,
                  float hi, Stream stream = nullptr);

void synchronize();

// Median/min/max milliseconds of `repeats` replays of a CUDA graph holding `calls_per_replay`
// calls of `work` (which must only enqueue stream-ordered work on `stream`), divided per call.
struct Timing {
  double median_ms = 0, min_ms = 0, max_ms = 0;
  int calls_per_replay = 0, replays = 0;
};
template <typename Work>
Timing time_graph(Work&& work, int calls_per_replay, int repeats);

// Internals of time_graph (type-erased callback).
using EnqueueFn = void (*)(void* context, Stream stream);
Timing time_graph_erased(EnqueueFn fn, void* context, int calls_per_replay, int repeats);

template <typename Work>
Timing time_graph(Work&& work, int calls_per_replay, int repeats) {
  auto trampoline = [](void* ctx, Stream s) {
    (*static_cast<std::remove_reference_t<Work>*>(ctx))(s);
  };
  return time_graph_erased(trampoline, &work, calls_per_replay, repeats);
}

// Device-to-device copy bandwidth in GB/s (bytes read plus bytes written), median of 10 copies.
double measure_copy_bandwidth(std::size_t bytes);

}  // namespace umamba::cuda
