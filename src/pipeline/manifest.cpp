// Run manifests (see manifest.h).
#include "pipeline/manifest.h"

#include <unistd.h>

#include <ctime>
#include <fstream>

#include "core/build_info.h"
#include "core/error.h"
#include "core/log.h"
#include "io/atomic_file.h"

namespace umamba::pipeline {

namespace fs = std::filesystem;

namespace {

constexpr int kFormatVersion = 1;
constexpr const char* kFormat = "umamba-run-manifest";

std::string hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "?";
  return buf;
}

nlohmann::json fresh(const std::string& command) {
  return {{"format", kFormat},
          {"format_version", kFormatVersion},
          {"command", command},
          {"runs", nlohmann::json::array()},
          {"files", nlohmann::json::object()}};
}

}  // namespace

std::string utc_timestamp() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

RunManifest::RunManifest(fs::path path, std::string command) : path_(std::move(path)) {
  doc_ = fresh(command);
  std::error_code ec;
  if (!fs::exists(path_, ec)) return;
  std::string problem;
  try {
    std::ifstream in(path_);
    nlohmann::json old = nlohmann::json::parse(in);
    if (old.value("format", "") != kFormat) {
      problem = "is not an umamba run manifest";
    } else if (old.value("format_version", 0) > kFormatVersion) {
      problem = "was written by a newer umamba";
    } else if (!old.contains("runs") || !old["runs"].is_array() || !old.contains("files") ||
               !old["files"].is_object()) {
      problem = "lacks 'runs' or 'files'";
    } else {
      doc_["runs"] = old["runs"];
      doc_["files"] = old["files"];
    }
  } catch (const std::exception& e) {
    problem = std::string("cannot be parsed: ") + e.what();
  }
  if (!problem.empty()) {
    fs::path aside = path_;
    aside += ".corrupt-" + utc_timestamp();
    fs::rename(path_, aside, ec);
    log::warn("{} {}; moved aside to {} and starting a new manifest", path_.string(), problem,
              aside.string());
  }
}

size_t RunManifest::begin_run(const nlohmann::json& run) {
  std::lock_guard lock(mutex_);
  nlohmann::json r = {{"started", utc_timestamp()},
                      {"status", "running"},
                      {"host", hostname()},
                      {"pid", static_cast<int64_t>(::getpid())},
                      {"umamba", build_info::kVersion},
                      {"git_revision", build_info::kGitRevision}};
  for (const auto& [k, v] : run.items()) r[k] = v;
  doc_["runs"].push_back(std::move(r));
  run_ = doc_["runs"].size() - 1;
  return run_;
}

void RunManifest::finish_run(const std::string& status) {
  std::lock_guard lock(mutex_);
  if (doc_["runs"].empty()) return;
  auto& r = doc_["runs"][run_];
  r["status"] = status;
  r["finished"] = utc_timestamp();
  nlohmann::json counts = {{"done", 0}, {"skipped", 0}, {"failed", 0}};
  for (const auto& [key, f] : doc_["files"].items()) {
    if (f.value("run", static_cast<size_t>(-1)) != run_) continue;
    const std::string s = f.value("status", "");
    if (counts.contains(s)) counts[s] = counts[s].get<int64_t>() + 1;
  }
  r["counts"] = counts;
  save_locked();
}

nlohmann::json RunManifest::file(const std::string& key) const {
  std::lock_guard lock(mutex_);
  const auto& files = doc_["files"];
  auto it = files.find(key);
  return it == files.end() ? nlohmann::json() : *it;
}

void RunManifest::record(const std::string& key, nlohmann::json entry) {
  std::lock_guard lock(mutex_);
  entry["run"] = run_;
  doc_["files"][key] = std::move(entry);
}

void RunManifest::save() {
  std::lock_guard lock(mutex_);
  save_locked();
}

void RunManifest::save_if_due(std::chrono::duration<double> interval) {
  std::lock_guard lock(mutex_);
  if (std::chrono::steady_clock::now() - last_save_ >= interval) save_locked();
}

nlohmann::json RunManifest::json() const {
  std::lock_guard lock(mutex_);
  return doc_;
}

void RunManifest::save_locked() {
  const std::string text = doc_.dump(2) + "\n";
  std::error_code ec;
  if (!path_.parent_path().empty()) fs::create_directories(path_.parent_path(), ec);
  io::AtomicOutput out(path_);
  {
    std::ofstream f(out.temporary_path(), std::ios::binary);
    f.write(text.data(), static_cast<std::streamsize>(text.size()));
    f.close();
    if (!f) fail_file(path_.string(), "cannot be written (disk full?)");
  }
  out.commit();
  last_save_ = std::chrono::steady_clock::now();
}

}  // namespace umamba::pipeline
