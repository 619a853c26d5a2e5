// cuda/device.h for the SIMT emulator: "device" memory is host memory, the device is the emulator
// (its multiprocessor count from UMAMBA_SIMT_MULTIPROCESSORS, default 4, so that launch plans cut
// rows into segments and split states as they would on a GPU with more rows than SMs). Timing and
// the benchmark's fills have no meaning here and say so.
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <utility>

#include "core/error.h"
#include "cuda/device.h"

namespace umamba::cuda {

bool device_available() {
  return true;
}

int current_multiprocessors() {
  const char* v = std::getenv("UMAMBA_SIMT_MULTIPROCESSORS");
  const int n = v ? std::atoi(v) : 0;
  return n > 0 ? n : 4;
}

DeviceInfo device_info() {
  DeviceInfo info;
  info.name = "SIMT emulator (CPU)";
  info.multiprocessors = current_multiprocessors();
  info.cc_major = 9;
  return info;
}

std::size_t device_free_bytes() {
  return std::size_t{1} << 34;
}

DeviceBuffer::DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  ptr_ = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  if (!ptr_) throw std::bad_alloc();
}
DeviceBuffer::~DeviceBuffer() {
  std::free(ptr_);
}
DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    std::free(ptr_);
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}
void DeviceBuffer::upload(const void* host, std::size_t bytes) {
  UMAMBA_CHECK(bytes <= bytes_, "upload of {} bytes into a buffer of {}", bytes, bytes_);
  if (bytes) std::memcpy(ptr_, host, bytes);
}
void DeviceBuffer::download(void* host, std::size_t bytes) const {
  UMAMBA_CHECK(bytes <= bytes_, "download of {} bytes from a buffer of {}", bytes, bytes_);
  if (bytes) std::memcpy(host, ptr_, bytes);
}
void DeviceBuffer::fill_bytes(unsigned char value) {
  if (bytes_) std::memset(ptr_, value, bytes_);
}

void fill_uniform(void*, ScanDtype, std::size_t, std::uint64_t, float, float, Stream) {
  throw Unsupported("the SIMT emulator has no device fill (benchmark only)");
}

void synchronize() {}

Timing time_graph_erased(EnqueueFn, void*, int, int) {
  throw Unsupported("the SIMT emulator does not time kernels");
}

double measure_copy_bandwidth(std::size_t) {
  throw Unsupported("the SIMT emulator does not time copies");
}

}  // namespace umamba::cuda
