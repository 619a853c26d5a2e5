// `umamba bench <name>`: measurements that users and developers can rerun. Each benchmark lives in
// cli/cmd_bench_<name>.cpp (picked up by the cmd_*.cpp glob) and registers itself here; the
// numbers it prints come with the machine and the baseline measured in the same run.
#pragma once

#include <CLI/CLI.hpp>

namespace umamba::cli {

using AddBench = void (*)(CLI::App& bench);  // declares one subcommand of `umamba bench`

struct BenchRegistrar {
  explicit BenchRegistrar(AddBench add);
};

// Adds every registered benchmark below `bench` (used by cmd_bench.cpp).
void add_registered_benches(CLI::App& bench);

}  // namespace umamba::cli

#define UMAMBA_REGISTER_BENCH(add_function)                                          \
  static const ::umamba::cli::BenchRegistrar umamba_bench_registrar_##add_function { \
    add_function                                                                     \
  }
