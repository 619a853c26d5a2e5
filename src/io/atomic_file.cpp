#include "io/atomic_file.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <system_error>

#include "core/error.h"
#include "core/fault_injection.h"

namespace umamba::io {
namespace fs = std::filesystem;

AtomicOutput::AtomicOutput(fs::path final_path, bool overwrite)
    : final_(std::move(final_path)), overwrite_(overwrite) {
  static std::atomic<unsigned> counter{0};
  UMAMBA_CHECK(final_.has_filename(), "output path '{}' names no file", final_.string());
  if (!overwrite_ && fs::exists(final_)) {
    fail("{}: already exists (pass --overwrite to replace it)", final_.string());
  }
  const fs::path folder = final_.has_parent_path() ? final_.parent_path() : fs::path(".");
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec) fail("{}: cannot create the output folder: {}", folder.string(), ec.message());
  temporary_ = folder / fmt::format(".{}.tmp-{}-{}", final_.filename().string(),
                                    static_cast<long>(::getpid()), counter++);
}

AtomicOutput::~AtomicOutput() {
  if (!committed_) {
    std::error_code ec;
    fs::remove(temporary_, ec);  // may not exist if the writer failed before creating it
  }
}

void AtomicOutput::commit() {
  UMAMBA_CHECK(!committed_, "{}: committed twice", final_.string());
  if (!fs::exists(temporary_)) fail("{}: the writer produced no file", final_.string());
  if (!overwrite_ && fs::exists(final_)) {
    fail("{}: appeared while writing; not replaced (pass --overwrite)", final_.string());
  }
  // Test hooks (core/fault_injection.h): the data did not reach the disk, or the rename failed.
  if (fault::should_fail(fault::Kind::Write, final_.native())) {
    fail("{}: writing {} failed: injected fault (UMAMBA_FAULT_INJECT write)", final_.string(),
         temporary_.string());
  }
  std::error_code ec;
  const bool injected = fault::should_fail(fault::Kind::Rename, final_.native());
  if (injected) {
    ec = std::make_error_code(std::errc::io_error);
  } else {
    fs::rename(temporary_, final_, ec);
  }
  if (ec) {
    fail("{}: cannot rename {} into place: {}{}", final_.string(), temporary_.string(),
         ec.message(), injected ? " (injected fault: UMAMBA_FAULT_INJECT rename)" : "");
  }
  committed_ = true;
}

}  // namespace umamba::io
