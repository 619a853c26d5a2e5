// `umamba plan`: dataset -> fingerprint -> plans.json; see plan.h.
#include "pipeline/plan.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <fstream>

#include "core/error.h"
#include "core/log.h"
#include "io/atomic_file.h"
#include "io/json_file.h"
#include "plan/dataset.h"
#include "plan/fingerprint.h"

namespace umamba::pipeline {

namespace fs = std::filesystem;

namespace {

void write_json_atomically(const fs::path& path, const nlohmann::ordered_json& j) {
  io::AtomicOutput out(path);
  {
    std::ofstream f(out.temporary_path());
    if (!f) throw FileError(out.temporary_path().string(), "cannot be written");
    f << j.dump(4) << "\n";
    if (!f) throw FileError(out.temporary_path().string(), "write failed");
  }
  out.commit();
}

}  // namespace

PlanResult run_plan(const PlanJob& job) {
  PlanResult r;
  r.plans_path = job.output.empty() ? job.dataset / "plans.json" : job.output;
  r.fingerprint_path = job.fingerprint_output.empty()
                           ? r.plans_path.parent_path() / "dataset_fingerprint.json"
                           : job.fingerprint_output;
  if (r.plans_path.has_parent_path()) fs::create_directories(r.plans_path.parent_path());

  const fs::path existing = job.dataset / "dataset_fingerprint.json";
  const bool images_present =
      fs::is_directory(job.dataset / "imagesTr") || fs::is_directory(job.dataset / "images") ||
      (fs::exists(job.dataset / "dataset.json") &&
       io::read_json_file(job.dataset / "dataset.json").contains("dataset"));
  plan::DatasetDescription dataset;
  plan::Fingerprint fingerprint;
  if (fs::exists(existing) && (job.reuse_fingerprint || !images_present)) {
    if (!fs::exists(job.dataset / "dataset.json")) {
      throw FileError((job.dataset / "dataset.json").string(),
                      "is needed beside dataset_fingerprint.json (channel_names, labels)");
    }
    dataset = plan::parse_dataset_json(io::read_json_file(job.dataset / "dataset.json"),
                                       (job.dataset / "dataset.json").string());
    dataset.name = job.dataset.filename().string();
    if (dataset.num_training == 0)
      fail("{}: dataset.json has no numTraining", job.dataset.string());
    fingerprint = plan::fingerprint_from_json(io::read_json_file(existing), existing.string());
    r.fingerprint_reused = true;
    log::info("plan: using the fingerprint {}", existing.string());
  } else {
    dataset = plan::discover_dataset(job.dataset);
    log::info("plan: {} cases in {}", dataset.cases.size(), job.dataset.string());
    const auto t0 = std::chrono::steady_clock::now();
    fingerprint = plan::extract_fingerprint(dataset);
    r.fingerprint_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    write_json_atomically(r.fingerprint_path, plan::fingerprint_to_json(fingerprint));
    log::info("plan: fingerprint of {} cases in {:.2f} s -> {}", dataset.cases.size(),
              r.fingerprint_seconds, r.fingerprint_path.string());
  }
  if (dataset.name.empty()) dataset.name = fs::absolute(job.dataset).filename().string();

  plan::PlannerOptions options;
  options.gpu_memory_target_gb = job.gpu_memory_gb;
  options.configurations = job.configurations;
  options.rules = job.rules;
  r.plans = plan::plan_experiment(fingerprint, plan::planner_input(dataset), options);
  nlohmann::ordered_json j = plan::plans_to_json(r.plans);
  j["umamba"] = {{"planner_rules",
                  job.rules == plan::PlannerRules::V2_2 ? "nnunetv2-2.2.1" : "nnunetv2-2.8.1"},
                 {"gpu_memory_target_gb", job.gpu_memory_gb},
                 {"channel_names", dataset.channel_names},
                 {"num_labels", dataset.labels.size()},
                 {"num_training", dataset.num_training}};
  write_json_atomically(r.plans_path, j);
  return r;
}

std::string summarize_plans(const plan::Plans& plans) {
  std::string s;
  for (const auto& c : plans.configurations) {
    s += fmt::format("{:<11} patch {} batch {} stages {} pools {} spacing {}\n", c.name,
                     fmt::join(c.patch_size, "x"), c.batch_size, c.n_stages(),
                     fmt::join(c.num_pool_per_axis, ","), fmt::join(c.spacing, " x "));
  }
  return s;
}

}  // namespace umamba::pipeline
