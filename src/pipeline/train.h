// The job behind `umamba train DATASET_DIR -o MODEL_DIR`: find the dataset's cases, take the
// plans (a given plans.json, MODEL_DIR/plans.json from an earlier run, or plan them now with
// src/plan as `umamba plan` would, written to MODEL_DIR/plans.json), train one fold
// (src/train/trainer.h) and report progress: on a terminal one redrawn status line with a bar and
// the ETA, elsewhere a plain line every `progress_interval` seconds; one line per epoch in both.
// SIGTERM, SIGUSR1 and SIGINT stop the run after the current step with checkpoint_latest saved
// (exit status 75; rerun with --resume to continue); a second SIGINT ends the process at once.
// Data-parallel runs (options.distributed, the torchrun/SLURM variables): ranks other than 0
// create no folder, plan (when no plans exist yet) into a temporary folder, show no progress.
#pragma once

#include <filesystem>
#include <string>

#include "train/step_bench.h"
#include "train/trainer.h"

namespace umamba::pipeline {

inline constexpr int kTrainStoppedStatus = 75;

struct TrainJob {
  std::filesystem::path dataset;
  std::filesystem::path plans;  // empty: MODEL_DIR/plans.json when present, else planned now
  double gpu_memory_gb = 8.0;   // when planning now
  std::string planner_rules = "2.2.1";
  train::TrainOptions options;    // options.output is MODEL_DIR
  std::string progress = "auto";  // auto, bar, lines, off
  double progress_interval = 30;  // seconds between plain progress lines
};

// Throws Error / FileError (setup, data, resume mismatch, non-finite training, out of memory);
// Unsupported in builds without the trainer.
train::TrainResult run_train(const TrainJob& job);

// `umamba bench train-step` (train/step_bench.h): the table, or the JSON with `json`.
// Unsupported in builds without the trainer.
std::string run_train_step_bench(const train::StepBenchOptions& options, bool json);

// The closing lines: epochs, final and best metric, where the model folder is.
std::string format_train_summary(const train::TrainResult& result, const TrainJob& job);

}  // namespace umamba::pipeline
