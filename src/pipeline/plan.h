// The job behind `umamba plan`: find the dataset's cases, fingerprint them, plan the
// configurations and write dataset_fingerprint.json and plans.json (atomically).
#pragma once

#include <filesystem>
#include <set>
#include <string>

#include "plan/planner.h"

namespace umamba::pipeline {

struct PlanJob {
  std::filesystem::path dataset;  // nnU-Net raw or NeurIPS layout, or a folder with
                                  // dataset.json + dataset_fingerprint.json (no images read)
  std::filesystem::path output;   // plans.json; empty: <dataset>/plans.json
  std::filesystem::path fingerprint_output;  // empty: beside plans.json
  double gpu_memory_gb = 8.0;
  std::set<std::string> configurations;  // empty: all nnU-Net makes
  plan::PlannerRules rules = plan::PlannerRules::V2_2;
  // Use <dataset>/dataset_fingerprint.json instead of reading the images (always done when the
  // folder holds no images).
  bool reuse_fingerprint = false;
};

struct PlanResult {
  plan::Plans plans;
  std::filesystem::path plans_path;
  std::filesystem::path fingerprint_path;
  bool fingerprint_reused = false;
  double fingerprint_seconds = 0;
};

PlanResult run_plan(const PlanJob& job);

// One line per configuration: patch, batch, stages, pools, spacing.
std::string summarize_plans(const plan::Plans& plans);

}  // namespace umamba::pipeline
