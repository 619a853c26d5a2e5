// Helpers of the data-parallel tests: a free TCP port, starting `umamba` processes, reading the
// --debug-dump files.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

extern char** environ;

namespace umamba::train::testing {

namespace fs = std::filesystem;

// A port for a test's rendezvous, free at the time of the call. It is drawn at random from below
// the kernel's ephemeral range (net.ipv4.ip_local_port_range): a port the kernel handed out for
// bind(0) is handed out again, and tests running beside this one (ctest -j) open Gloo listeners
// and client sockets on ephemeral ports all the time, so such a port was taken again between the
// draw and rank 0's listen often enough to fail CI. Below the range, only another test's own draw
// can collide; the process launchers below retry on "address already in use" for that.
inline int free_port() {
  int ephemeral_low = 32768;
  {
    std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
    int low = 0;
    if (range >> low && low > 0) ephemeral_low = low;
  }
  const int first = 10000;
  std::random_device seed;
  std::mt19937 rng(seed() ^ static_cast<unsigned>(::getpid()));
  for (int attempt = 0; attempt < 64; ++attempt) {
    const bool below = ephemeral_low > first + 1000;
    const int port = below ? std::uniform_int_distribution<int>(first, ephemeral_low - 1)(rng) : 0;
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) break;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    int got = -1;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
      socklen_t len = sizeof(a);
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
      got = ntohs(a.sin_port);
    }
    ::close(fd);
    if (got > 0) return got;
  }
  return 29500 + (::getpid() % 1000);
}

// Whether a rendezvous failed because its port was taken (then the caller draws another port and
// starts the ranks again).
inline bool port_was_taken(const std::string& log) {
  return log.find("address already in use") != std::string::npos ||
         log.find("EADDRINUSE") != std::string::npos;
}

#ifdef UMAMBA_CLI_PATH

// Starts `umamba args...` with extra environment variables; returns its pid.
inline pid_t spawn_umamba(const std::vector<std::string>& args, const fs::path& log,
                          const std::vector<std::pair<std::string, std::string>>& env = {}) {
  std::vector<std::string> argv_s{UMAMBA_CLI_PATH};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  // This process's environment with `env` set on top.
  std::vector<std::string> env_s;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string item(*e);
    bool replaced = false;
    for (const auto& [k, v] : env) replaced = replaced || item.rfind(k + "=", 0) == 0;
    if (!replaced) env_s.push_back(item);
  }
  for (const auto& [k, v] : env) env_s.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv_s[0].c_str(), &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return -1;
  return pid;
}

inline int wait_exit(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

inline std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Starts `world` processes, spawn(rank, port) each, on a port from free_port(), and returns their
// exit codes by rank. When rank 0 failed because another test took the port meanwhile (its log,
// rank0_log, says so), the other ranks are killed - they would wait for rank 0 until their timeout
// - and all start again on a new port, up to 3 times.
inline std::vector<int> run_ranks(int world, const std::function<pid_t(int, int)>& spawn,
                                  const fs::path& rank0_log) {
  std::vector<int> codes;
  for (int attempt = 0; attempt < 3; ++attempt) {
    const int port = free_port();
    std::vector<pid_t> pids;
    for (int r = 0; r < world; ++r) {
      pids.push_back(spawn(r, port));
      EXPECT_GT(pids.back(), 0);
    }
    codes.assign(1, wait_exit(pids[0]));
    const bool again = world > 1 && codes[0] != 0 && port_was_taken(slurp(rank0_log));
    for (size_t r = 1; r < pids.size(); ++r) {
      if (again) ::kill(pids[r], SIGKILL);
      codes.push_back(wait_exit(pids[r]));
    }
    if (!again) break;
  }
  return codes;
}

inline std::vector<std::pair<int64_t, double>> read_losses(const fs::path& p) {
  std::vector<std::pair<int64_t, double>> out;
  std::ifstream in(p);
  int64_t i = 0;
  double l = 0;
  while (in >> i >> l) out.emplace_back(i, l);
  return out;
}

inline std::vector<torch::Tensor> read_params(const fs::path& p) {
  std::vector<torch::Tensor> v;
  torch::load(v, p.string());
  return v;
}

#endif  // UMAMBA_CLI_PATH

}  // namespace umamba::train::testing
