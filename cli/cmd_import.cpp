// `umamba import RESULTS_DIR OUT_DIR`: an nnU-Net / U-Mamba results folder → umamba model folder.
#include <fmt/core.h>

#include <memory>
#include <sstream>

#include "cli/commands.h"
#include "pipeline/import.h"

namespace umamba::cli {

namespace {

void add_import_command(CLI::App& app) {
  struct Options {
    std::string results;
    std::string output;
    std::string architecture;
    std::string configuration;
    std::string folds;
    std::string checkpoint = "checkpoint_final.pth";
    bool overwrite = false;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "import",
      "Convert a trained nnU-Net / U-Mamba results folder (plans.json, dataset.json, "
      "fold_*/checkpoint_final.pth) into an umamba model folder");
  cmd->add_option("results", opts->results,
                  "Results folder, e.g. nnUNet_results/Dataset703_NeurIPSCell/"
                  "nnUNetTrainerUMambaBot__nnUNetPlans__2d")
      ->required()
      ->check(CLI::ExistingDirectory)
      ->envname("UMAMBA_IMPORT_RESULTS");
  cmd->add_option("output", opts->output, "Model folder to create")
      ->required()
      ->envname("UMAMBA_IMPORT_OUTPUT");
  cmd->add_option(
         "--architecture", opts->architecture,
         "UMambaBot, UMambaEnc or PlainConvUNet; empty: from the checkpoint's trainer name")
      ->capture_default_str()
      ->envname("UMAMBA_IMPORT_ARCHITECTURE");
  cmd->add_option("--configuration", opts->configuration,
                  "Plans configuration (2d, 3d_fullres, ...); empty: from the checkpoint or the "
                  "folder name")
      ->capture_default_str()
      ->envname("UMAMBA_IMPORT_CONFIGURATION");
  cmd->add_option(
         "--folds", opts->folds,
         "Comma-separated folds to import (0,1,all); empty: every fold_* with a checkpoint")
      ->capture_default_str()
      ->envname("UMAMBA_IMPORT_FOLDS");
  cmd->add_option("--checkpoint", opts->checkpoint,
                  "Checkpoint file name inside each fold_* folder")
      ->capture_default_str()
      ->envname("UMAMBA_IMPORT_CHECKPOINT");
  cmd->add_flag("--overwrite", opts->overwrite,
                "Replace OUTPUT when it is an existing umamba model folder")
      ->envname("UMAMBA_IMPORT_OVERWRITE");
  cmd->callback([opts] {
    pipeline::ImportJob job;
    job.results = opts->results;
    job.output = opts->output;
    job.architecture = opts->architecture;
    job.configuration = opts->configuration;
    job.checkpoint = opts->checkpoint;
    job.overwrite = opts->overwrite;
    std::stringstream list(opts->folds);
    for (std::string item; std::getline(list, item, ',');) {
      if (!item.empty()) job.folds.push_back(item);
    }
    fmt::print("{}", pipeline::summarize_import(pipeline::run_import(job)));
  });
}

}  // namespace

UMAMBA_REGISTER_COMMAND(260, add_import_command);

}  // namespace umamba::cli
