// `umamba predict INPUT... -m MODEL -o OUT`: batch segmentation with a model folder (see
// src/pipeline/predict.h for outputs, resuming, sharding, signals and exit statuses).
#include <fmt/core.h>

#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "core/error.h"
#include "pipeline/predict.h"

namespace umamba::cli {

namespace {

void add_predict_command(CLI::App& app) {
  auto job = std::make_shared<pipeline::PredictJob>();
  auto list = std::make_shared<std::string>();
  auto output = std::make_shared<std::string>();
  auto model = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "predict",
      "Segment images with a model folder: files, folders, globs or a list; outputs "
      "<name>_label.tiff mirroring the input tree; resumable, sharded (--shard or SLURM arrays), "
      "one worker per GPU. Exit status: 0 all done, 1-63 failed files, 64 setup error, 75 "
      "stopped by SIGTERM/SIGUSR1/SIGINT (rerun to continue). CPU threads: --threads");
  cmd->add_option("inputs", job->inputs,
                  "Image files, folders and glob patterns ('**' for any depth; quote them)")
      ->envname("UMAMBA_PREDICT_INPUTS");
  cmd->add_option("--list", *list, "Text file with one input (file, folder or glob) per line")
      ->capture_default_str()
      ->envname("UMAMBA_PREDICT_LIST");
  cmd->add_flag("-r,--recursive", job->recursive, "Descend into the sub-folders of input folders")
      ->capture_default_str()
      ->envname("UMAMBA_PREDICT_RECURSIVE");
  cmd->add_option("-o,--output", *output, "Output folder (mirrors the input tree)")
      ->required()
      ->envname("UMAMBA_PREDICT_OUTPUT");
  cmd->add_option("-m,--model", *model, "Model folder (umamba train / umamba import)")
      ->required()
      ->check(CLI::ExistingDirectory)
      ->envname("UMAMBA_PREDICT_MODEL");
  cmd->add_option("--folds", job->folds,
                  "Comma-separated folds to run (several are ensembled); empty: every fold")
      ->capture_default_str()
      ->envname("UMAMBA_PREDICT_FOLDS");
  cmd->add_option("--device", job->device,
                  "auto (first GPU, else CPU), cpu, cuda, cuda:N, or all (one worker per GPU)")
      ->capture_default_str()
      ->envname("UMAMBA_PREDICT_DEVICE");
  cmd->add_option("--workers", job->workers_per_device,
                  "Workers per device, each with its own copy of the networks, sharing one queue")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_PREDICT_WORKERS");
  cmd->add_option("--batch-size", job->batch_size, "Tiles per network call")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_PREDICT_BATCH_SIZE");
  cmd->add_option("--tile-step", job->tile_step,
                  "Distance between tiles as a fraction of the patch (nnU-Net: 0.5)")
      ->capture_default_str()
      ->check(CLI::Range(0.01, 1.0))
      ->envname("UMAMBA_PREDICT_TILE_STEP");
  cmd->add_flag("--mirror,!--no-mirror", job->mirror,
                "Mirroring test-time augmentation over every spatial axis (nnU-Net's default)")
      ->capture_default_str()
      ->envname("UMAMBA_PREDICT_MIRROR");
  cmd->add_option("--precision", job->precision, "fp32, fp16 or bf16 (autocast on the device)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "fp16", "bf16"}))
      ->envname("UMAMBA_PREDICT_PRECISION");
  cmd->add_option("--postprocess", job->postprocess,
                  "auto (reclaim for three-class models, none otherwise), reclaim, plain "
                  "(interior components, the paper's), none (write the class map)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "reclaim", "plain", "none"}))
      ->envname("UMAMBA_PREDICT_POSTPROCESS");
  cmd->add_option("--min-size", job->min_size, "Remove instances smaller than this (pixels)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->envname("UMAMBA_PREDICT_MIN_SIZE");
  cmd->add_option("--suffix", job->suffix, "Label file suffix after the input's name")
      ->capture_default_str()
      ->envname("UMAMBA_PREDICT_SUFFIX");
  cmd->add_option("--ext", job->extension,
                  "Label file extension (.tiff, .tif, .nii.gz, .png); auto: .nii.gz for NIfTI "
                  "inputs, else .tiff")
      ->capture_default_str()
      ->envname("UMAMBA_PREDICT_EXT");
  cmd->add_flag("--probabilities", job->probabilities,
                "Also write <name>_prob.tiff (softmax, float32, one channel per class)")
      ->capture_default_str()
      ->envname("UMAMBA_PREDICT_PROBABILITIES");
  cmd->add_flag("--measurements", job->measurements,
                "Also write <name>_objects.csv (regionprops_table columns)")
      ->capture_default_str()
      ->envname("UMAMBA_PREDICT_MEASUREMENTS");
  cmd->add_flag("--geojson", job->geojson, "Also write <name>.geojson (QuPath detections; 2D)")
      ->capture_default_str()
      ->envname("UMAMBA_PREDICT_GEOJSON");
  cmd->add_flag("--overlay", job->overlay, "Also write <name>_overlay.png (outlines; 2D)")
      ->capture_default_str()
      ->envname("UMAMBA_PREDICT_OVERLAY");
  cmd->add_flag("--overwrite", job->overwrite,
                "Redo inputs whose outputs exist (default: skip them, which resumes a run)")
      ->capture_default_str()
      ->envname("UMAMBA_PREDICT_OVERWRITE");
  cmd->add_option("--shard", job->shard,
                  "Part i of N (i from 0) of the sorted inputs: i, i+N, ...; empty: from "
                  "SLURM_ARRAY_TASK_ID/_MIN/_COUNT when set, else everything")
      ->capture_default_str()
      ->envname("UMAMBA_PREDICT_SHARD");
  cmd->add_option("--stream", job->stream,
                  "Band streaming for large inputs: auto (above --stream-above), always, never")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "always", "never"}))
      ->envname("UMAMBA_PREDICT_STREAM");
  cmd->add_option("--stream-above", job->stream_above,
                  "Pixels (Z*Y*X) above which --stream auto streams")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_PREDICT_STREAM_ABOVE");
  cmd->add_flag("--resample,!--no-resample", job->resample,
                "3D models whose plans give a spacing: resample the volume to it (order 3, "
                "nnU-Net's separate-Z rule) and the prediction back to the input grid (order 1)")
      ->capture_default_str()
      ->envname("UMAMBA_PREDICT_RESAMPLE");
  cmd->add_option("--spacing", job->spacing,
                  "The inputs' voxel size z,y,x (or one value) in the plans' unit, replacing the "
                  "file's; needed for TIFF stacks without resolution information")
      ->capture_default_str()
      ->envname("UMAMBA_PREDICT_SPACING");
  cmd->add_option("--scale", job->scale,
                  "2D models: resize each image by this factor before prediction and the "
                  "prediction back (StarDist's scale; >1 for objects smaller than the training "
                  "data's, e.g. training diameter / object diameter)")
      ->capture_default_str()
      ->check(CLI::Range(0.05, 20.0))
      ->envname("UMAMBA_PREDICT_SCALE");
  cmd->add_option("--progress", job->progress,
                  "auto (a bar on a terminal, plain lines otherwise), bar, lines, off")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "bar", "lines", "off"}))
      ->envname("UMAMBA_PREDICT_PROGRESS");
  cmd->add_option("--progress-interval", job->progress_interval,
                  "Seconds between plain progress lines")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_PREDICT_PROGRESS_INTERVAL");
  cmd->callback([job, list, output, model] {
    job->list_file = *list;
    job->output = *output;
    job->model = *model;
    pipeline::PredictSummary summary;
    try {
      summary = pipeline::run_predict(*job);
    } catch (const Error& e) {
      std::fprintf(stderr, "umamba: error: %s\n", e.what());
      throw CLI::RuntimeError(pipeline::kPredictSetupErrorStatus);
    }
    fmt::print(stderr, "{}", pipeline::format_predict_summary(summary));
    if (summary.exit_code() != 0) throw CLI::RuntimeError(summary.exit_code());
  });
}

}  // namespace

UMAMBA_REGISTER_COMMAND(200, add_predict_command);

}  // namespace umamba::cli
