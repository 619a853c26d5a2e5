// Helpers of the pipeline tests: temporary folders, small files, JSON, and running the built
// `umamba` binary as a child process (exit status, standard error, environment, signals).
#pragma once

#include <fcntl.h>
#include <ftw.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace umamba::pipeline::test {

namespace fs = std::filesystem;

// std::filesystem::remove_all is avoided: the torch wheel's libtorch.so carries a crashing copy.
inline int remove_entry(const char* path, const struct stat*, int, struct FTW*) {
  return ::remove(path);
}
inline void remove_tree(const fs::path& p) {
  ::nftw(p.c_str(), remove_entry, 32, FTW_DEPTH | FTW_PHYS);
}

// A fresh folder under the build tree, named after the running test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "t";
    for (char& c : name) {
      if (c == '/') c = '_';
    }
    path_ = fs::path(UMAMBA_BINARY_DIR) / "test_output" / "pipeline" /
            (name + "-" + std::to_string(::getpid()));
    remove_tree(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    if (!::testing::Test::HasFailure()) remove_tree(path_);  // kept for inspection on failure
  }
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

inline void write_text(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream f(path, std::ios::binary);
  f << text;
}

inline std::string read_text(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

inline nlohmann::json read_json(const fs::path& path) {
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << path;
  return nlohmann::json::parse(f);
}

// Every regular file under `dir`, relative, sorted (hidden ones included).
inline std::vector<std::string> list_files(const fs::path& dir) {
  std::vector<std::string> out;
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) out.push_back(e.path().lexically_relative(dir).generic_string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

inline fs::path umamba_binary() {
  return fs::path(UMAMBA_BINARY_DIR) / "umamba";
}

struct Child {
  pid_t pid = -1;
  fs::path err;  // standard error and output of the child
};

// Starts `umamba args...` with the environment of this process plus `env` (a value of "" unsets
// the variable); stdout and stderr go to `log`.
inline Child spawn_umamba(const std::vector<std::string>& args, const fs::path& log,
                          const std::map<std::string, std::string>& env = {}) {
  Child c;
  c.err = log;
  const pid_t pid = ::fork();
  if (pid == 0) {
    for (const auto& [k, v] : env) {
      if (v.empty()) {
        ::unsetenv(k.c_str());
      } else {
        ::setenv(k.c_str(), v.c_str(), 1);
      }
    }
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    const std::string bin = umamba_binary().string();
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(bin.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  c.pid = pid;
  return c;
}

// Waits for the child; returns its exit status, or 128 + signal when a signal ended it.
inline int wait_child(const Child& c) {
  int status = 0;
  if (::waitpid(c.pid, &status, 0) != c.pid) return -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// True when the child has ended (then `status` holds what wait_child would return).
inline bool child_ended(const Child& c, int& status) {
  int s = 0;
  const pid_t r = ::waitpid(c.pid, &s, WNOHANG);
  if (r != c.pid) return false;
  status = WIFEXITED(s) ? WEXITSTATUS(s) : WIFSIGNALED(s) ? 128 + WTERMSIG(s) : -1;
  return true;
}

struct RunResult {
  int status = -1;
  std::string log;
};

inline RunResult run_umamba(const std::vector<std::string>& args, const fs::path& log,
                            const std::map<std::string, std::string>& env = {}) {
  const Child c = spawn_umamba(args, log, env);
  RunResult r;
  r.status = wait_child(c);
  r.log = read_text(log);
  return r;
}

// Occurrences of `needle` in `text`.
inline int count_of(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) ++n;
  return n;
}

}  // namespace umamba::pipeline::test
