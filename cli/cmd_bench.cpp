// `umamba bench`: the parent of the registered benchmarks (cli/bench.h).
#include <vector>

#include "cli/bench.h"
#include "cli/commands.h"

namespace umamba::cli {
namespace {

std::vector<AddBench>& bench_registry() {
  static std::vector<AddBench> benches;
  return benches;
}

void add_bench_command(CLI::App& app) {
  CLI::App* bench =
      app.add_subcommand("bench", "Measure speed and memory of umamba's building blocks");
  bench->require_subcommand(1);
  add_registered_benches(*bench);
}

}  // namespace

BenchRegistrar::BenchRegistrar(AddBench add) {
  bench_registry().push_back(add);
}

void add_registered_benches(CLI::App& bench) {
  for (AddBench add : bench_registry()) add(bench);
}

UMAMBA_REGISTER_COMMAND(800, add_bench_command);

}  // namespace umamba::cli
