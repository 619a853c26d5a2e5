// `umamba evaluate`: scores a folder of predictions against a folder of ground truths with
// instance F1 (cells), DSC or NSD (organs), writes a per-case CSV and a summary JSON, and renders
// the per-label mean ± std table.
//
// Pairing: files are matched by name without the extension (.tif, .tiff, .nii.gz, .nii, .png,
// ...) and without a trailing "_label", so NeurIPS "<name>_label.tiff" pairs with
// "<name>_label.tiff" or "<name>.tiff", and nnU-Net case ids ("<case>.nii.gz") pair with equal
// names. Every pair is checked before any pixel is read: a missing prediction or ground truth,
// a duplicate name, or a shape or spacing mismatch stops the run with an Error listing them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace umamba::pipeline {

enum class EvalMetric { F1, Dsc, Nsd };
EvalMetric eval_metric_from_name(const std::string& name);  // "f1", "dsc", "nsd"

struct EvaluateOptions {
  std::filesystem::path pred_dir;
  std::filesystem::path gt_dir;
  std::filesystem::path output_dir;  // receives <metric>_per_case.csv and <metric>_summary.json
  EvalMetric metric = EvalMetric::F1;
  std::optional<double> tolerance;   // NSD: one tolerance for every label (spacing unit)
  std::filesystem::path tolerances;  // NSD: per-label table (JSON, src/metrics/tolerances.h)
  std::vector<int64_t> labels;       // DSC/NSD: labels to score (default: the table's, else all)
  std::string threshold = "0.5";     // F1: IoU threshold, a decimal
  bool keep_border = false;          // F1: keep cells touching the 2-pixel frame
};

struct CasePair {
  std::string name;  // the pairing key
  std::filesystem::path gt;
  std::filesystem::path pred;
};

// The pairing rule above; throws Error listing unpaired or duplicate files.
std::vector<CasePair> pair_cases(const std::filesystem::path& gt_dir,
                                 const std::filesystem::path& pred_dir);

// The key of a file name: without extension and trailing "_label".
std::string case_key(const std::filesystem::path& file);

// Runs the evaluation, writes the outputs and returns the summary (also in the JSON file).
nlohmann::json run_evaluate(const EvaluateOptions& options);

// The summary as the table printed on the terminal.
std::string format_evaluate_summary(const nlohmann::json& summary);

}  // namespace umamba::pipeline
