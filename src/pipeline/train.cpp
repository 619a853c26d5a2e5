// `umamba train`: plans, signals and progress around the trainer (see train.h).
#include "pipeline/train.h"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "core/error.h"
#include "core/log.h"
#include "io/json_file.h"
#include "pipeline/plan.h"
#include "pipeline/progress.h"
#include "plan/dataset.h"

namespace umamba::pipeline {
namespace fs = std::filesystem;

#if !defined(UMAMBA_WITH_TRAIN)

train::TrainResult run_train(const TrainJob&) {
  throw Unsupported(
      "umamba train needs a build with LibTorch and the trainer (configure with UMAMBA_TORCH=ON)");
}

std::string run_train_step_bench(const train::StepBenchOptions&, bool) {
  throw Unsupported(
      "umamba bench train-step needs a build with LibTorch and the trainer (configure with "
      "UMAMBA_TORCH=ON)");
}

#else

namespace {

std::atomic<int> g_train_stop{0};
std::atomic<bool> g_train_stop_flag{false};

extern "C" void on_train_stop_signal(int sig) {
  g_train_stop.store(sig);
  g_train_stop_flag.store(true);
}

class TrainSignals {
 public:
  TrainSignals() {
    g_train_stop.store(0);
    g_train_stop_flag.store(false);
    for (size_t i = 0; i < kSignals.size(); ++i) {
      struct sigaction sa {};
      sa.sa_handler = on_train_stop_signal;
      sigemptyset(&sa.sa_mask);
      sa.sa_flags = kSignals[i] == SIGINT ? SA_RESETHAND : 0;  // a second Ctrl-C kills
      ::sigaction(kSignals[i], &sa, &previous_[i]);
    }
  }
  ~TrainSignals() {
    for (size_t i = 0; i < kSignals.size(); ++i) ::sigaction(kSignals[i], &previous_[i], nullptr);
  }
  TrainSignals(const TrainSignals&) = delete;
  TrainSignals& operator=(const TrainSignals&) = delete;

 private:
  static constexpr std::array<int, 3> kSignals{SIGTERM, SIGUSR1, SIGINT};
  std::array<struct sigaction, 3> previous_{};
};

// The status line / plain lines of a run.
class TrainProgress {
 public:
  TrainProgress(ProgressMode mode, double interval, int64_t epochs, int64_t iterations,
                std::string metric)
      : interval_(interval), epochs_(epochs), iterations_(iterations), metric_(std::move(metric)) {
    if (mode == ProgressMode::Auto)
      mode = ::isatty(::fileno(stderr)) ? ProgressMode::Bar : ProgressMode::Lines;
    mode_ = mode;
    t0_ = last_line_ = Clock::now();
  }

  void iteration(int64_t epoch, int64_t it, int64_t iters, double loss) {
    ++done_;
    if (std::isfinite(loss)) last_loss_ = loss;
    if (mode_ == ProgressMode::Off) return;
    const auto now = Clock::now();
    if (mode_ == ProgressMode::Bar) {
      if (std::chrono::duration<double>(now - last_draw_).count() < 0.2 && it != iters) return;
      last_draw_ = now;
      const std::string text = status(epoch, it, iters);
      std::fprintf(stderr, "\r%s\033[K", text.c_str());
      std::fflush(stderr);
      drawn_ = true;
    } else if (std::chrono::duration<double>(now - last_line_).count() >= interval_) {
      last_line_ = now;
      std::fprintf(stderr, "progress: %s\n", status(epoch, it, iters).c_str());
    }
  }

  void epoch(const train::EpochRecord& r) {
    std::string line;
    if (r.epoch < 0) {
      line = fmt::format("untrained network: validation {} {:.4f} ({:.1f} s)", metric_,
                         r.val_metric, r.val_seconds);
    } else {
      line = fmt::format("epoch {}/{}: loss {:.4f} (ce {:.4f}, dice {:.4f}), lr {:.3e}, {:.1f} s",
                         r.epoch + 1, epochs_, r.train_loss, r.train_ce, r.train_dice, r.lr,
                         r.seconds);
      if (r.val_metric >= 0) {
        line += fmt::format(", val {} {:.4f} (ema {:.4f}, {:.1f} s)", metric_, r.val_metric,
                            r.val_metric_ema, r.val_seconds);
        last_val_seconds_ = r.val_seconds;
      }
      if (r.skipped_steps > 0)
        line += fmt::format(", {} steps skipped (non-finite)", r.skipped_steps);
      if (r.peak_gpu_memory_gb > 0) line += fmt::format(", peak {:.2f} GB", r.peak_gpu_memory_gb);
      if (r.data_wait_seconds > 0.05 * r.seconds && r.seconds > 1)
        line += fmt::format(", waited {:.1f} s for batches", r.data_wait_seconds);
    }
    message(line);
  }

  void message(const std::string& line) {
    if (mode_ == ProgressMode::Off) return;
    if (drawn_) std::fprintf(stderr, "\r\033[K");
    std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
  }

  void finish() {
    if (mode_ == ProgressMode::Bar && drawn_) std::fprintf(stderr, "\r\033[K");
  }

 private:
  using Clock = std::chrono::steady_clock;
  std::string status(int64_t epoch, int64_t it, int64_t iters) const {
    const double elapsed = std::chrono::duration<double>(Clock::now() - t0_).count();
    const double per_it = done_ > 0 ? elapsed / static_cast<double>(done_) : 0;
    const int64_t left = (epochs_ - epoch - 1) * iterations_ + (iters - it);
    const double eta = per_it * static_cast<double>(left) +
                       last_val_seconds_ * static_cast<double>(epochs_ - epoch - 1);
    return fmt::format("epoch {}/{} {} {}/{} loss {:.4f} {:.2f} s/it ETA {}", epoch + 1, epochs_,
                       progress_bar(static_cast<double>(it) / static_cast<double>(iters), 22), it,
                       iters, last_loss_, per_it, format_duration(eta));
  }

  ProgressMode mode_ = ProgressMode::Lines;
  double interval_;
  int64_t epochs_, iterations_;
  std::string metric_;
  Clock::time_point t0_, last_line_, last_draw_{};
  int64_t done_ = 0;
  double last_loss_ = NAN;
  double last_val_seconds_ = 0;
  bool drawn_ = false;
};

}  // namespace

train::TrainResult run_train(const TrainJob& job) {
  UMAMBA_CHECK(!job.options.output.empty(), "umamba train: -o MODEL_DIR is required");
  // Data parallelism: only rank 0 writes (the others plan, when needed, into a temporary folder).
  const train::Rendezvous rdv = train::resolve_rendezvous(job.options.distributed);
  const bool is0 = rdv.rank == 0;
  plan::DatasetDescription dataset = plan::discover_dataset(job.dataset);
  fs::path plans_path = job.plans;
  std::error_code ec;
  if (is0) {
    fs::create_directories(job.options.output, ec);
    if (ec) fail_file(job.options.output.string(), "cannot be created: {}", ec.message());
  }
  fs::path scratch;  // rank > 0 planning
  struct RemoveScratch {
    const fs::path& dir;
    ~RemoveScratch() {
      std::error_code e;
      if (!dir.empty()) fs::remove_all(dir, e);
    }
  } remove_scratch{scratch};
  if (plans_path.empty() && fs::exists(job.options.output / "plans.json")) {
    plans_path = job.options.output / "plans.json";
    log::info("plans: {} (from an earlier run)", plans_path.string());
  }
  if (plans_path.empty()) {
    PlanJob pj;
    pj.dataset = job.dataset;
    if (is0) {
      pj.output = job.options.output / "plans.json";
    } else {
      scratch = fs::temp_directory_path() /
                fmt::format("umamba_plans_rank{}_{}", rdv.rank, static_cast<long>(::getpid()));
      fs::create_directories(scratch, ec);
      if (ec) fail_file(scratch.string(), "cannot be created: {}", ec.message());
      pj.output = scratch / "plans.json";
    }
    pj.gpu_memory_gb = job.gpu_memory_gb;
    pj.rules = job.planner_rules == "2.8.1" ? plan::PlannerRules::V2_8 : plan::PlannerRules::V2_2;
    if (is0)
      log::info("no --plans given: planning {} with nnU-Net's rules ({})", job.dataset.string(),
                job.planner_rules);
    const PlanResult planned = run_plan(pj);
    if (is0) log::info("{}", summarize_plans(planned.plans));
    plans_path = planned.plans_path;
  }
  const nlohmann::json plans = io::read_json_file(plans_path);
  train::TrainOptions options = job.options;
  if (options.configuration.empty()) options.configuration = train::default_configuration(plans);

  TrainSignals signals;
  options.stop_flag = &g_train_stop_flag;
  const bool instance = dataset.layout == plan::DatasetLayout::NeurIPSCells ||
                        (dataset.dataset_json.is_object() &&
                         dataset.dataset_json.value("label_kind", "") == "instance");
  TrainProgress progress(is0 ? progress_mode_from_name(job.progress) : ProgressMode::Off,
                         job.progress_interval, options.epochs, options.iterations,
                         instance ? "F1" : "Dice");
  train::TrainCallbacks cb;
  cb.on_iteration = [&](int64_t e, int64_t it, int64_t n, double loss) {
    progress.iteration(e, it, n, loss);
  };
  cb.on_epoch = [&](const train::EpochRecord& r) { progress.epoch(r); };
  cb.on_message = [&](const std::string& m) { progress.message(m); };
  train::TrainResult result;
  try {
    result = train::train(dataset, plans, options, cb);
  } catch (...) {
    progress.finish();
    throw;
  }
  progress.finish();
  return result;
}

std::string run_train_step_bench(const train::StepBenchOptions& options, bool json) {
  const nlohmann::json result = train::run_step_bench(options);
  return json ? result.dump(2) + "\n" : train::format_step_bench(result);
}

#endif

std::string format_train_summary(const train::TrainResult& r, const TrainJob& job) {
  std::string s;
  if (r.stopped) {
    s += fmt::format("stopped at epoch {}, iteration {}: rerun with --resume to continue\n",
                     r.next_epoch, r.next_iteration);
  }
  if (r.completed) {
    s += fmt::format("trained fold {} of {} ({} epochs, {} train / {} validation cases, {}, {})\n",
                     job.options.fold, job.dataset.string(), r.next_epoch, r.train_cases,
                     r.val_cases, r.device, r.precision);
    if (r.final_metric >= 0) {
      s += fmt::format("final validation metric {:.4f}, best EMA {:.4f}\n", r.final_metric,
                       r.best_metric_ema);
    }
    s += fmt::format("model folder: {}\n", job.options.output.string());
  }
  s += fmt::format("log: {}\n", (r.fold_dir / "training_log.csv").string());
  return s;
}

}  // namespace umamba::pipeline
