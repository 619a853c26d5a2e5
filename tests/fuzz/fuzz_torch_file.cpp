// libFuzzer target: the restricted torch.save reader (src/model/torch_file.cpp) on arbitrary bytes.
//
// The first input byte picks what the rest is:
//   even  the whole file (zip container, records, data.pkl): the zip layer and everything behind
//   odd   only data.pkl, wrapped here into a valid torch.save zip with a few storage records
//         ("0" to "3", 256 bytes each) and byteorder "little": mutations reach the unpickler
//         instead of dying at the zip's CRC check
// Each file is read lenient and strict; a lenient result is walked (to_json) and offered to
// tensor_dict. umamba::Error is the expected outcome of bad input; anything else (another
// exception, a sanitizer report, a crash, a hang, an allocation over -malloc_limit_mb) is a
// finding. Seeds: tests/fuzz/make_checkpoint_seeds.py.
#include <caffe2/serialize/inline_container.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/log.h"
#include "core/memory.h"
#include "model/torch_file.h"

namespace {

std::filesystem::path scratch_file() {
  const std::filesystem::path dir =
      std::filesystem::exists("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
  return dir / ("umamba-fuzz-" + std::to_string(::getpid()) + ".pth");
}

void write_raw(const std::filesystem::path& path, const uint8_t* data, size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
}

void write_wrapped(const std::filesystem::path& path, const uint8_t* pkl, size_t size) {
  caffe2::serialize::PyTorchStreamWriter w(path.string());
  w.writeRecord("data.pkl", pkl, size);
  w.writeRecord("byteorder", "little", 6);
  std::vector<uint8_t> storage(256);
  for (size_t i = 0; i < storage.size(); ++i) storage[i] = static_cast<uint8_t>(i * 37 + 11);
  for (const char* key : {"data/0", "data/1", "data/2", "data/3"}) {
    w.writeRecord(key, storage.data(), storage.size());
  }
  w.writeEndOfFile();
}

}  // namespace

// Findings 1-3 in src/model/torch_file.cpp (fixed since; regression inputs in
// tests/fuzz/regressions, so a tolerant run must now count zero of each):
//   1. torch-data-pkl-crc-c10-error.pth-seed: a zip whose data.pkl record fails LibTorch's CRC
//      check makes read_torch_file throw c10::Error instead of umamba::FileError (it reads the
//      record outside its try block);
//   2. torch-invalid-utf8-json-dump.pth-seed: a pickled str that is not UTF-8 is accepted, and
//      the JSON view (to_json) then throws nlohmann::json::type_error when printed;
//   3. torch-pop-mark-below-stack.pth-seed: a MARK whose position lies above the current stack
//      (items popped after it) makes pop_mark build a vector from an inverted iterator range,
//      which libstdc++ reports as std::length_error (undefined behaviour in general).
// With UMAMBA_FUZZ_TOLERATE_KNOWN=1 these are counted (and the counts printed at exit) so that
// fuzzing can go on looking for other findings; unset, they are findings like any other.
static long g_tolerated_c10 = 0, g_tolerated_utf8 = 0, g_tolerated_mark = 0;

static bool tolerate_known() {
  static const bool on = [] {
    const char* v = std::getenv("UMAMBA_FUZZ_TOLERATE_KNOWN");
    const bool yes = v != nullptr && std::string(v) == "1";
    if (yes) {
      std::atexit([] {
        std::fprintf(stderr,
                     "fuzz_torch_file: known findings tolerated: c10::Error escaped on %ld "
                     "input(s), non-UTF-8 str on %ld, inverted MARK range on %ld\n",
                     g_tolerated_c10, g_tolerated_utf8, g_tolerated_mark);
      });
    }
    return yes;
  }();
  return on;
}

// Reads the file lenient (walking the result) and strict; umamba::Error is a clean rejection.
static void read_both(const std::filesystem::path& path) {
  using namespace umamba;
  try {
    const model::TorchFile f = model::read_torch_file(path.string());
    try {
      (void)model::to_json(f.root).dump();
    } catch (const nlohmann::json::type_error&) {
      // Known finding 2 (regressions/torch-invalid-utf8-json-dump.pth-seed): strings that are not
      // UTF-8 pass the reader and make the JSON view unprintable.
      if (!tolerate_known()) throw;
      ++g_tolerated_utf8;
    }
    try {
      (void)model::tensor_dict(f.root, "fuzz");
    } catch (const Error&) {
    }
  } catch (const Error&) {
    // rejected cleanly
  }
  try {
    model::TorchFileOptions strict;
    strict.strict = true;
    (void)model::read_torch_file(path.string(), strict);
  } catch (const Error&) {
  }
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace umamba;
  static const std::filesystem::path path = [] {
    set_allocation_limit(size_t{256} << 20);
    log::init("off");
    (void)tolerate_known();  // registers the exit report when tolerating
    return scratch_file();
  }();
  if (size < 1) return 0;
  if (data[0] % 2 == 0) {
    write_raw(path, data + 1, size - 1);
  } else {
    write_wrapped(path, data + 1, size - 1);
  }
  try {
    read_both(path);
  } catch (const c10::Error&) {
    if (!tolerate_known()) throw;
    ++g_tolerated_c10;
  } catch (const std::length_error&) {
    if (!tolerate_known()) throw;
    ++g_tolerated_mark;
  }
  return 0;
}
