// `umamba plan DATASET_DIR`: nnU-Net's self-configuration (fingerprint -> plans.json).
#include <fmt/core.h>

#include <memory>
#include <set>
#include <sstream>

#include "cli/commands.h"
#include "core/error.h"
#include "pipeline/plan.h"

namespace umamba::cli {

namespace {

void add_plan_command(CLI::App& app) {
  struct Options {
    std::string dataset;
    std::string output;
    double gpu_memory_gb = 8.0;
    std::string configurations = "2d,3d_fullres,3d_lowres";
    std::string rules = "2.2.1";
    bool reuse_fingerprint = false;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "plan",
      "Fingerprint a training dataset and plan its U-Net configurations with nnU-Net v2's rules "
      "(writes dataset_fingerprint.json and plans.json)");
  cmd->add_option("dataset", opts->dataset,
                  "Dataset folder: nnU-Net raw (dataset.json, imagesTr/, labelsTr/), NeurIPS cells "
                  "(images/, labels/<name>_label.tiff), or dataset.json + dataset_fingerprint.json")
      ->required()
      ->envname("UMAMBA_PLAN_DATASET");
  cmd->add_option("-o,--output", opts->output,
                  "plans.json to write (the fingerprint goes beside it); empty: DATASET/plans.json")
      ->capture_default_str()
      ->envname("UMAMBA_PLAN_OUTPUT");
  cmd->add_option("--gpu-memory-gb", opts->gpu_memory_gb,
                  "GPU memory target in GB; scales nnU-Net's reference feature-map budget")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_PLAN_GPU_MEMORY_GB");
  cmd->add_option("--configurations", opts->configurations,
                  "Comma-separated configurations to emit: 2d, 3d_fullres, 3d_lowres (3D ones only "
                  "for 3D data, 3d_lowres only where nnU-Net makes one)")
      ->capture_default_str()
      ->envname("UMAMBA_PLAN_CONFIGURATIONS");
  cmd->add_option("--rules", opts->rules,
                  "nnU-Net planner version to follow: 2.2.1 (vendored by U-Mamba) or 2.8.1")
      ->capture_default_str()
      ->check(CLI::IsMember({"2.2.1", "2.8.1"}))
      ->envname("UMAMBA_PLAN_RULES");
  cmd->add_flag("--reuse-fingerprint", opts->reuse_fingerprint,
                "Use DATASET/dataset_fingerprint.json instead of reading the images")
      ->envname("UMAMBA_PLAN_REUSE_FINGERPRINT");
  cmd->callback([opts] {
    pipeline::PlanJob job;
    job.dataset = opts->dataset;
    job.output = opts->output;
    job.gpu_memory_gb = opts->gpu_memory_gb;
    job.rules = opts->rules == "2.8.1" ? plan::PlannerRules::V2_8 : plan::PlannerRules::V2_2;
    job.reuse_fingerprint = opts->reuse_fingerprint;
    std::stringstream list(opts->configurations);
    for (std::string item; std::getline(list, item, ',');) {
      if (!item.empty()) job.configurations.insert(item);
    }
    const auto result = pipeline::run_plan(job);
    fmt::print("{}", pipeline::summarize_plans(result.plans));
    fmt::print("plans: {}\n", result.plans_path.string());
    if (!result.fingerprint_reused)
      fmt::print("fingerprint: {}\n", result.fingerprint_path.string());
  });
}

}  // namespace

UMAMBA_REGISTER_COMMAND(250, add_plan_command);

}  // namespace umamba::cli
