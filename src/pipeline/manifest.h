// The run manifest: a JSON file beside a batch's outputs that records how they were made and what
// happened to every input, kept across interrupted and resumed runs.
//
// Layout (format "umamba-run-manifest", version 1):
//   {"format", "format_version", "command",
//    "runs":  [ {per run: "started", "finished", "status" ("running", "complete",
//               "interrupted", "failed"), "host", "pid", "umamba", "git_revision", ...
//               whatever the command adds (model hash, effective parameters, shard, devices),
//               "counts": {"done", "skipped", "failed"}} ... ],
//    "files": { "<key>": {per input: "status" ("done", "skipped", "failed"), "run" (index into
//               runs), ... whatever the command adds (input, outputs, seconds, instances,
//               error)} } }
// Merging: opening an existing manifest keeps its runs and files; a new run is appended and the
// files it touches are replaced, the others stay as they were. A manifest that cannot be parsed
// is moved aside to "<name>.corrupt-<time>" with a warning and a new one started.
// Writes are atomic (temporary name, rename), so a run killed at any moment leaves the previous
// complete manifest. All methods are thread-safe.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <mutex>
#include <string>

namespace umamba::pipeline {

class RunManifest {
 public:
  // Reads `path` when it exists (see merging above); `command` names the writer ("predict").
  RunManifest(std::filesystem::path path, std::string command);

  const std::filesystem::path& path() const { return path_; }

  // Appends a run; `run` is merged into the run record (started, host, pid and versions are
  // filled in). Returns the run's index.
  size_t begin_run(const nlohmann::json& run);
  // Sets the current run's status, finished time and counts, and saves.
  void finish_run(const std::string& status);

  // The previous record of `key` (null when none).
  nlohmann::json file(const std::string& key) const;
  // Replaces the record of `key`; "run" is set to the current run.
  void record(const std::string& key, nlohmann::json entry);

  // Writes the manifest now (atomically).
  void save();
  // Writes it when `interval` has passed since the last write (cheap to call after every file).
  void save_if_due(std::chrono::duration<double> interval);

  // A copy of the whole document.
  nlohmann::json json() const;

 private:
  void save_locked();

  std::filesystem::path path_;
  mutable std::mutex mutex_;
  nlohmann::json doc_;
  size_t run_ = 0;
  std::chrono::steady_clock::time_point last_save_{};
};

// Current UTC time as ISO 8601 ("2026-11-27T10:20:00Z").
std::string utc_timestamp();

}  // namespace umamba::pipeline
