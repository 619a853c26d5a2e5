// The job behind `umamba import`: convert an nnU-Net / U-Mamba results folder
// (plans.json, dataset.json, fold_*/checkpoint_final.pth) into umamba's model folder
// (src/model/model_folder.h). The folder is assembled under a hidden temporary name beside the
// output and renamed into place when complete, so a stopped run leaves no half model folder.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace umamba::pipeline {

struct ImportJob {
  std::filesystem::path results;   // RESULTS_DIR, e.g. .../nnUNetTrainerUMambaBot__nnUNetPlans__2d
  std::filesystem::path output;    // OUT_DIR (must not exist unless overwrite)
  std::string architecture;        // "" = from the checkpoint's trainer name
  std::string configuration;       // "" = from the checkpoint / folder name
  std::vector<std::string> folds;  // empty = every fold with a checkpoint
  std::string checkpoint = "checkpoint_final.pth";
  bool overwrite = false;  // replace an existing umamba model folder at OUT_DIR
};

struct ImportResult {
  std::filesystem::path output;
  nlohmann::json metadata;  // metadata.json as written
};

// Throws umamba::Error (Unsupported in builds without LibTorch) naming what is wrong.
ImportResult run_import(const ImportJob& job);

// A few lines for the terminal: architecture, configuration, folds, parameters, hashes.
std::string summarize_import(const ImportResult& result);

}  // namespace umamba::pipeline
