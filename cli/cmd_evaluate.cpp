// `umamba evaluate`: instance F1, DSC or NSD of a prediction folder against a ground-truth folder
// (logic in src/pipeline/evaluate.{h,cpp}).
#include <fmt/core.h>

#include <memory>

#include "cli/commands.h"
#include "pipeline/evaluate.h"

namespace umamba::cli {

namespace {

void add_evaluate_command(CLI::App& app) {
  struct Options {
    std::string pred, gt, output = "evaluation", metric = "f1", threshold = "0.5", tolerances;
    double tolerance = 0;
    std::vector<int64_t> labels;
    bool keep_border = false;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "evaluate", "Score predictions against ground truth: instance F1 (cells), DSC or NSD");
  cmd->add_option("--pred", opts->pred, "Folder of predicted label images")
      ->required()
      ->envname("UMAMBA_EVAL_PRED");
  cmd->add_option("--gt", opts->gt, "Folder of ground-truth label images")
      ->required()
      ->envname("UMAMBA_EVAL_GT");
  cmd->add_option("--metric", opts->metric,
                  "f1: NeurIPS-CellSeg instance F1; dsc: Dice per label; nsd: NSD and Dice per "
                  "label")
      ->capture_default_str()
      ->check(CLI::IsMember({"f1", "dsc", "nsd"}))
      ->envname("UMAMBA_EVAL_METRIC");
  auto* tol = cmd->add_option("--tolerance", opts->tolerance,
                              "NSD tolerance for every label, in the images' spacing unit (mm)")
                  ->check(CLI::NonNegativeNumber)
                  ->envname("UMAMBA_EVAL_TOLERANCE");
  auto* tols = cmd->add_option("--tolerances", opts->tolerances,
                               "NSD tolerances per label, a JSON table (e.g. "
                               "configs/nsd_tolerances_abdomen.json)")
                   ->check(CLI::ExistingFile)
                   ->envname("UMAMBA_EVAL_TOLERANCES");
  tol->excludes(tols);
  cmd->add_option("--labels", opts->labels,
                  "Labels to score (DSC/NSD); default: the tolerance table's, else every label "
                  "present")
      ->delimiter(',')
      ->envname("UMAMBA_EVAL_LABELS");
  cmd->add_option("--threshold", opts->threshold, "IoU at which cells match (F1), a decimal")
      ->capture_default_str()
      ->envname("UMAMBA_EVAL_THRESHOLD");
  cmd->add_flag("--keep-border", opts->keep_border,
                "F1: keep cells touching the 2-pixel image frame (the challenge removes them)")
      ->envname("UMAMBA_EVAL_KEEP_BORDER");
  cmd->add_option("-o,--output", opts->output,
                  "Folder for <metric>_per_case.csv and <metric>_summary.json")
      ->capture_default_str()
      ->envname("UMAMBA_EVAL_OUTPUT");
  cmd->callback([opts, tol] {
    pipeline::EvaluateOptions o;
    o.pred_dir = opts->pred;
    o.gt_dir = opts->gt;
    o.output_dir = opts->output;
    o.metric = pipeline::eval_metric_from_name(opts->metric);
    if (tol->count() > 0) o.tolerance = opts->tolerance;
    o.tolerances = opts->tolerances;
    o.labels = opts->labels;
    o.threshold = opts->threshold;
    o.keep_border = opts->keep_border;
    const auto summary = pipeline::run_evaluate(o);
    fmt::print("{}", pipeline::format_evaluate_summary(summary));
    fmt::print("per-case scores and summary written to {}\n", opts->output);
  });
}

}  // namespace

UMAMBA_REGISTER_COMMAND(300, add_evaluate_command);

}  // namespace umamba::cli
