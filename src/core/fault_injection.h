// Fault injection for tests: makes chosen reads, writes, renames and device allocations fail, so
// that tests can prove what a run does when a disk fills, a file vanishes or a GPU runs out of
// memory (tests/reliability).
//
// Method: the environment variable UMAMBA_FAULT_INJECT, read once on the first check, names which
// calls of each kind fail, counting the calls of that kind in this process from 1:
//   UMAMBA_FAULT_INJECT="write:2,rename:1,read:3-4,alloc:5+"
//     kind:N     the N-th call fails          kind:N-M   calls N to M fail
//     kind:N+    the N-th and every later call fails
//     kind:N@text  (any of the forms above) counts only the calls whose subject (the file path
//                  for read, write and rename) contains `text`: "write:1@img2_label" fails the
//                  first commit of an output named like that, whatever else was written before
// Kinds and where they are checked:
//   read    io::open_image: the file cannot be opened (FileError, as for an unreadable file)
//   write   io::AtomicOutput::commit: the writer's data did not reach the disk (as a full disk
//           reports on close); the temporary is removed, nothing appears under the final name
//   rename  io::AtomicOutput::commit: rename(2) of the temporary over the final name fails
//   alloc   the engine's model call for a batch: the device allocation fails as LibTorch reports
//           it (c10::OutOfMemoryError); counted once per model call attempt
// Unset or empty: inert. The check is one relaxed atomic load when inert, and it is compiled in
// always (release builds included), so tests exercise the shipped code. A malformed value throws
// umamba::Error naming the entry on the first check.
// Limits: counts are per process and shared by all threads; with several workers the N-th call
// is whichever thread gets there first, so tests that need a particular file use one worker.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace umamba::fault {

enum class Kind { Read = 0, Write = 1, Rename = 2, Alloc = 3 };
inline constexpr int kKinds = 4;

const char* kind_name(Kind kind);

namespace detail {
// -1: not read yet, 0: inert, 1: active.
extern std::atomic<int> g_state;
bool should_fail_slow(Kind kind, std::string_view subject);
}  // namespace detail

// True when this call of `kind` (on `subject`, a file path; empty where there is none) is one
// that must fail. Counts the call when injection is active.
inline bool should_fail(Kind kind, std::string_view subject = {}) {
  if (detail::g_state.load(std::memory_order_relaxed) == 0) return false;
  return detail::should_fail_slow(kind, subject);
}

// Replaces the plan (tests in one process); "" makes injection inert. Resets the counters. Throws
// Error on a malformed spec.
void configure(std::string_view spec);

// Reads UMAMBA_FAULT_INJECT now, if not read yet, without counting a call: commands call it at
// start so that a malformed value is a setup error, not a failure of whichever call came first.
void init_from_environment();

// Calls of `kind` counted so far (0 when inert).
int64_t calls(Kind kind);

// The name of the environment variable: "UMAMBA_FAULT_INJECT".
inline constexpr const char* kEnvironmentVariable = "UMAMBA_FAULT_INJECT";

}  // namespace umamba::fault
