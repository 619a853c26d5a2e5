// Shared body of the reader fuzz targets: the input bytes become a file (readers open paths), which
// is opened, described, read whole and read by one region. umamba::Error and its subclasses are
// the expected outcome of bad input; anything else (another exception, a sanitizer report, a
// crash, a hang, an allocation over -malloc_limit_mb) is a finding.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

#include "core/error.h"
#include "core/log.h"
#include "core/memory.h"
#include "io/image_io.h"

namespace umamba::fuzz {

inline std::filesystem::path scratch_file(const char* suffix) {
  const std::filesystem::path dir =
      std::filesystem::exists("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
  return dir / ("umamba-fuzz-" + std::to_string(::getpid()) + suffix);
}

inline int read_one(const uint8_t* data, size_t size, const char* suffix) {
  static const std::filesystem::path path = [&] {
    // 4 MB: the largest seed image needs 2 MB (a 100^3 u16 stack). Inputs that declare a larger
    // image (a 2-million-row strip layout, say) are then refused by the size check before any
    // allocation, as a user's configured limit would refuse them, instead of decoding megabytes of
    // zeros under AddressSanitizer for a tenth of a second or more per execution: at 256 MB such
    // inputs held the TIFF target to 65-109 executions/s, at 16 MB to about 100-150 (2026-11-27);
    // the code they run is the one small images run.
    set_allocation_limit(size_t{4} << 20);
    log::init("off");
    return scratch_file(suffix);
  }();
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr) return 0;
    std::fwrite(data, 1, size, f);
    std::fclose(f);
  }
  try {
    auto reader = io::open_image(path);
    const io::ImageInfo& info = reader->info();
    const Image img = reader->read();
    if (!(img.shape() == info.shape) || img.dtype() != info.dtype) std::abort();  // inconsistent
    const Shape s = info.shape;
    const Image r =
        reader->read_region(Box{s.z / 2, s.y / 3, s.x / 4, 1, s.y - s.y / 3, (s.x + 1) / 2});
    if (!r.same_pixels(
            img.region(Box{s.z / 2, s.y / 3, s.x / 4, 1, s.y - s.y / 3, (s.x + 1) / 2}))) {
      std::abort();  // a region read must equal the crop of the full read
    }
  } catch (const Error&) {
    // rejected cleanly
  }
  return 0;
}

}  // namespace umamba::fuzz
