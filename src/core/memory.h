// Memory accounting: the allocation limit that keeps a crafted header from allocating without
// bound, and the process's peak resident size for tests and benchmarks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace umamba {

// Largest single buffer the readers and the image type will allocate, in bytes. Default: the
// machine's physical memory; UMAMBA_MAX_ALLOC_BYTES (or set_allocation_limit) overrides it.
size_t allocation_limit();
void set_allocation_limit(size_t bytes);

// Throws Unsupported naming `what` when `bytes` exceeds allocation_limit(); `elements` and
// `element_size` are multiplied with overflow checking.
size_t checked_allocation_size(uint64_t elements, size_t element_size, const std::string& what);

// Peak resident set size of this process so far (VmHWM), in bytes; 0 where unknown.
size_t peak_resident_bytes();
// Current resident set size (VmRSS), in bytes; 0 where unknown.
size_t current_resident_bytes();
// Resets the peak to the current size (Linux: writes 5 to /proc/self/clear_refs); false if refused.
bool reset_peak_resident();

}  // namespace umamba
