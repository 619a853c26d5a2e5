#include "core/memory.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>

#include "core/error.h"

namespace umamba {
namespace {

size_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return size_t{64} << 30;
  return static_cast<size_t>(pages) * static_cast<size_t>(page_size);
}

size_t initial_limit() {
  if (const char* env = std::getenv("UMAMBA_MAX_ALLOC_BYTES")) {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(env, &end, 10);
    if (end != env && *end == '\0' && v > 0) return static_cast<size_t>(v);
  }
  return physical_memory_bytes();
}

std::atomic<size_t>& limit_storage() {
  static std::atomic<size_t> limit{initial_limit()};
  return limit;
}

// Reads a "Key:   1234 kB" line of /proc/self/status.
size_t proc_status_kib(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) {
      return static_cast<size_t>(std::strtoull(line.c_str() + key.size() + 1, nullptr, 10)) * 1024;
    }
  }
  return 0;
}

}  // namespace

size_t allocation_limit() {
  return limit_storage().load();
}
void set_allocation_limit(size_t bytes) {
  limit_storage().store(bytes);
}

size_t checked_allocation_size(uint64_t elements, size_t element_size, const std::string& what) {
  if (element_size != 0 && elements > std::numeric_limits<uint64_t>::max() / element_size) {
    throw Unsupported(fmt::format("{}: {} elements of {} bytes overflow a 64-bit size", what,
                                  elements, element_size));
  }
  const uint64_t bytes = elements * element_size;
  if (bytes > allocation_limit()) {
    throw Unsupported(fmt::format(
        "{}: needs {:.1f} GiB in one buffer, above the limit of {:.1f} GiB (physical memory, or "
        "UMAMBA_MAX_ALLOC_BYTES); read it by regions or raise the limit",
        what, bytes / double(1 << 30), allocation_limit() / double(1 << 30)));
  }
  return static_cast<size_t>(bytes);
}

size_t peak_resident_bytes() {
  return proc_status_kib("VmHWM");
}
size_t current_resident_bytes() {
  return proc_status_kib("VmRSS");
}

bool reset_peak_resident() {
  std::ofstream out("/proc/self/clear_refs");
  if (!out) return false;
  out << "5";
  return static_cast<bool>(out.flush());
}

}  // namespace umamba
