// Host helpers over the CUDA runtime (see device.h).
#include "cuda/device.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "core/error.h"

namespace umamba::cuda {

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    fail("CUDA: {} failed: {} ({})", what, cudaGetErrorString(e), static_cast<int>(e));
}

// Releases the stream, events, graph and graph instance of one timing run on every path.
struct TimingResources {
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ~TimingResources() {
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    if (stream) cudaStreamDestroy(stream);
  }
};

}  // namespace

bool device_available() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error for later callers
    return false;
  }
  return count > 0;
}

DeviceInfo device_info() {
  if (!device_available()) throw Unsupported("CUDA: no CUDA device is visible to this process");
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties");
  DeviceInfo info;
  info.name = prop.name;
  info.multiprocessors = prop.multiProcessorCount;
  info.cc_major = prop.major;
  info.cc_minor = prop.minor;
  info.memory_bytes = prop.totalGlobalMem;
  info.l2_bytes = static_cast<std::size_t>(prop.l2CacheSize);
  int clock_khz = 0, bus_bits = 0;
  if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, dev) == cudaSuccess &&
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, dev) == cudaSuccess) {
    info.peak_bandwidth_gbps = 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;
  }
  cudaGetLastError();
  return info;
}

int current_multiprocessors() {
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  int sms = 0;
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev),
        "reading the multiprocessor count");
  return sms;
}

std::size_t device_free_bytes() {
  std::size_t free_bytes = 0, total = 0;
  check(cudaMemGetInfo(&free_bytes, &total), "cudaMemGetInfo");
  return free_bytes;
}

DeviceBuffer::DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  const cudaError_t e = cudaMalloc(&ptr_, bytes);
  if (e != cudaSuccess) {
    ptr_ = nullptr;
    fail("CUDA: cudaMalloc of {} bytes failed: {}", bytes, cudaGetErrorString(e));
  }
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) cudaFree(ptr_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void DeviceBuffer::upload(const void* host, std::size_t bytes) {
  UMAMBA_CHECK(bytes <= bytes_, "CUDA: upload of {} bytes into a buffer of {}", bytes, bytes_);
  check(cudaMemcpy(ptr_, host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to the device");
}

void DeviceBuffer::download(void* host, std::size_t bytes) const {
  UMAMBA_CHECK(bytes <= bytes_, "CUDA: download of {} bytes from a buffer of {}", bytes, bytes_);
  check(cudaMemcpy(host, ptr_, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy from the device");
}

void DeviceBuffer::fill_bytes(unsigned char value) {
  check(cudaMemset(ptr_, value, bytes_), "cudaMemset");
}

namespace detail {
int fill_uniform_launch(void* dst, ScanDtype dtype, std::size_t count, std::uint64_t seed, float lo,
                        float hi, Stream stream);
}

void fill_uniform(void* dst, ScanDtype dtype, std::size_t count, std::uint64_t seed, float lo,
                  float hi, Stream stream) {
  check(static_cast<cudaError_t>(
            detail::fill_uniform_launch(dst, dtype, count, seed, lo, hi, stream)),
        "the fill kernel launch");
}

void synchronize() {
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}

Timing time_graph_erased(EnqueueFn fn, void* context, int calls_per_replay, int repeats) {
  UMAMBA_CHECK(calls_per_replay >= 1 && repeats >= 1,
               "timing: calls per replay ({}) and repeats ({}) must be >= 1", calls_per_replay,
               repeats);
  TimingResources r;
  check(cudaStreamCreateWithFlags(&r.stream, cudaStreamNonBlocking), "cudaStreamCreate");
  check(cudaEventCreate(&r.start), "cudaEventCreate");
  check(cudaEventCreate(&r.stop), "cudaEventCreate");
  fn(context, r.stream);  // warm-up outside the graph (module load, attributes)
  check(cudaStreamSynchronize(r.stream), "warm-up");
  check(cudaStreamBeginCapture(r.stream, cudaStreamCaptureModeRelaxed), "cudaStreamBeginCapture");
  try {
    for (int i = 0; i < calls_per_replay; ++i) fn(context, r.stream);
  } catch (...) {
    cudaGraph_t broken = nullptr;
    cudaStreamEndCapture(r.stream, &broken);
    if (broken) cudaGraphDestroy(broken);
    throw;
  }
  check(cudaStreamEndCapture(r.stream, &r.graph), "cudaStreamEndCapture");
  check(cudaGraphInstantiate(&r.exec, r.graph, 0), "cudaGraphInstantiate");
  check(cudaGraphLaunch(r.exec, r.stream), "cudaGraphLaunch");  // warm replay
  check(cudaStreamSynchronize(r.stream), "graph warm-up");
  std::vector<double> ms;
  for (int i = 0; i < repeats; ++i) {
    check(cudaEventRecord(r.start, r.stream), "cudaEventRecord");
    check(cudaGraphLaunch(r.exec, r.stream), "cudaGraphLaunch");
    check(cudaEventRecord(r.stop, r.stream), "cudaEventRecord");
    check(cudaEventSynchronize(r.stop), "cudaEventSynchronize");
    float t = 0;
    check(cudaEventElapsedTime(&t, r.start, r.stop), "cudaEventElapsedTime");
    ms.push_back(static_cast<double>(t) / calls_per_replay);
  }
  std::sort(ms.begin(), ms.end());
  Timing out;
  out.median_ms = ms[ms.size() / 2];
  out.min_ms = ms.front();
  out.max_ms = ms.back();
  out.calls_per_replay = calls_per_replay;
  out.replays = repeats;
  return out;
}

double measure_copy_bandwidth(std::size_t bytes) {
  DeviceBuffer a(bytes), b(bytes);
  fill_uniform(a.get(), ScanDtype::F32, bytes / 4, 1, -1.f, 1.f);
  struct Ctx {
    void* dst;
    const void* src;
    std::size_t n;
  } ctx{b.get(), a.get(), bytes};
  const Timing t = time_graph_erased(
      [](void* c, Stream s) {
        auto* x = static_cast<Ctx*>(c);
        check(cudaMemcpyAsync(x->dst, x->src, x->n, cudaMemcpyDeviceToDevice, s),
              "cudaMemcpyAsync");
      },
      &ctx, 1, 10);
  return 2.0 * static_cast<double>(bytes) / (t.median_ms * 1e-3) / 1e9;
}

}  // namespace umamba::cuda
