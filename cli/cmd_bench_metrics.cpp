// `umamba bench metrics`: the time of one metric on one pair of files, without the file reading,
// to compare with reference implementations that score arrays already in memory
// (tests/python/metrics_bench.py runs both in one go).
#include <fmt/core.h>
#include <sys/resource.h>

#include <chrono>
#include <memory>

#include "cli/bench.h"
#include "io/image_io.h"
#include "metrics/instance_f1.h"
#include "metrics/label_scores.h"
#include "metrics/tolerances.h"

namespace umamba::cli {

namespace {

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);  // all threads of the process
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

void add_bench_metrics(CLI::App& bench) {
  struct Options {
    std::string gt, pred, metric = "nsd", tolerances, threshold = "0.5";
    double tolerance = 1.0;
    int repeat = 1;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* cmd = bench.add_subcommand(
      "metrics", "Time F1, DSC or NSD on one file pair (reading excluded); prints one JSON line");
  cmd->add_option("--gt", opts->gt, "Ground-truth label file")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--pred", opts->pred, "Predicted label file")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--metric", opts->metric, "f1, dsc or nsd")
      ->capture_default_str()
      ->check(CLI::IsMember({"f1", "dsc", "nsd"}))
      ->envname("UMAMBA_BENCH_METRIC");
  cmd->add_option("--tolerance", opts->tolerance, "NSD tolerance for every label")
      ->capture_default_str()
      ->envname("UMAMBA_BENCH_TOLERANCE");
  cmd->add_option("--tolerances", opts->tolerances, "NSD tolerance table (JSON)")
      ->check(CLI::ExistingFile)
      ->envname("UMAMBA_BENCH_TOLERANCES");
  cmd->add_option("--threshold", opts->threshold, "F1 IoU threshold")
      ->capture_default_str()
      ->envname("UMAMBA_BENCH_THRESHOLD");
  cmd->add_option("--repeat", opts->repeat, "Runs; the fastest is reported")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_BENCH_REPEAT");
  cmd->callback([opts] {
    const Image g = io::read_image(opts->gt);
    const Image p = io::read_image(opts->pred);
    metrics::ToleranceTable table;
    if (!opts->tolerances.empty()) table = metrics::load_tolerances(opts->tolerances);
    table.default_tolerance = opts->tolerance;
    metrics::LabelScoreOptions lo;
    for (const auto& [l, t] : table.tolerance) lo.labels.push_back(l);
    double best_wall = 1e300, best_cpu = 1e300, score = 0;
    for (int r = 0; r < opts->repeat; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      const double c0 = cpu_seconds();
      if (opts->metric == "f1") {
        metrics::F1Options fo;
        fo.threshold = metrics::Threshold::parse(opts->threshold);
        score = metrics::instance_f1(g, p, fo).f1;
      } else {
        const auto res = opts->metric == "nsd" ? metrics::surface_dice_per_label(
                                                     g, p, g.geometry().spacing,
                                                     [&](int64_t l) { return table.at(l); }, lo)
                                               : metrics::dice_per_label(g, p, lo);
        score = 0;
        for (const auto& s : res) score += (opts->metric == "nsd" ? s.nsd : s.dsc) / res.size();
      }
      const double wall =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best_wall = std::min(best_wall, wall);
      best_cpu = std::min(best_cpu, cpu_seconds() - c0);
    }
    fmt::print(
        "{{\"metric\": \"{}\", \"wall_s\": {:.4f}, \"cpu_s\": {:.4f}, \"score\": {:.17g}, "
        "\"voxels\": {}}}\n",
        opts->metric, best_wall, best_cpu, score, g.shape().pixels());
  });
}

}  // namespace

UMAMBA_REGISTER_BENCH(add_bench_metrics);

}  // namespace umamba::cli
