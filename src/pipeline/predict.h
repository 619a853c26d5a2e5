// `umamba predict`: batch segmentation of image folders and slide collections with a model folder,
// resumable, sharded over SLURM array tasks, with one worker per GPU pulling from a shared queue.
//
// Flow per run: discover the inputs (discovery.h), take this shard's part (shard.h), skip inputs
// whose outputs all exist (unless overwrite), then workers (devices × workers_per_device threads,
// each with its own copy of the networks) take files from one queue. Per file: open the reader,
// stream the prediction through the engine (engine/predictor.h: normalisation, sliding window,
// Gaussian blending, band by band), turn classes into instances (postprocess/targets.h, or the
// band-merged plain labelling below), write the outputs, record the file in the run manifest.
//
// Outputs, under `output` mirroring the input tree (discovery.h's relative paths):
//   <stem><suffix><ext>      labels: instances (three-class models) or the class map; uint16, or
//                            uint32 above 65,535 objects; default "_label" + ".tiff" (the NeurIPS
//                            CellSeg convention <name>_label.tiff); ext "auto" = .nii.gz for NIfTI
//                            inputs (header kept), .tiff otherwise
//   <stem>_prob.tiff         class probabilities [K,Z,Y,X] float32 (softmax), written band by band
//   <stem>_objects.csv       per-object measurements (scikit-image regionprops_table names)
//   <stem>.geojson           2D: QuPath detections (polygons in pixel units)
//   <stem>_overlay.png       2D: outlines over the image (.tiff in builds without OpenCV)
//   umamba_predict.json      the run manifest (manifest.h); with sharding
//                            umamba_predict.shard-<i>-of-<N>.json, one per part
// Every output is written under a temporary name and renamed when complete; the label image is
// written last, so its presence means the file's other outputs are complete too. A file counts as
// done when every requested output exists; stale temporaries left by a killed run (whose process
// is gone) are removed before the file is redone.
//
// Spacing: with a 3D model whose plans give a target spacing, and `resample` on (the default, as
// nnU-Net), the whole volume is read, transposed by the plans' transpose_forward, normalised,
// resampled to the target spacing (volumetric/resample.h: order 3, separate-Z when anisotropic),
// predicted by the sliding window, and the blended logits resampled back to the transposed input
// grid (order 1, separate-Z by nnU-Net's rule), transposed back, arg-maxed (probabilities: their
// softmax). The labels land on the input's grid; NIfTI outputs keep the input's header. The
// input's spacing comes from `spacing`, else the file; a TIFF without resolution information is
// an error naming --spacing. Resampled files are never streamed. 2D models are not resampled to a
// spacing; `scale` (2D models) resizes each image plane by a factor instead, the same way.
//
// Large inputs: above `stream_above` pixels (Z·Y·X) a 2D image, or a volume under a 3D model, is
// streamed: the interior class of each band is labelled on its own (postprocess::BandMerger joins
// the labels across band faces), local labels are spilled to a temporary file, and after the last
// band the final labels are written band by band with io::TiffBandWriter. Memory then follows the
// engine's window and one band, not the image. Streamed instances use the plain mode (interior
// components, min_size applied to whole objects): reclaim's boundary growth and hole filling need
// the whole image, so a reclaim request on a streamed file is reported and recorded as plain.
// Measurements, GeoJSON and overlays need the whole label image and are not written for streamed
// files (reported per file).
//
// Stopping: SIGTERM (SLURM's warning signal, sbatch --signal), SIGUSR1 and SIGINT make every
// worker finish its current file and take no new one; the manifest is written and the run ends
// with exit status 75. A second SIGINT ends the process at once.
//
// Exit status (PredictSummary::exit_code): 0 every input of this part is done (now or before);
// 1-63 that many inputs failed (63: 63 or more), the others are done; 75 stopped by a signal
// before the part was complete (rerun the same command to continue); setup errors (options,
// model folder, no inputs) are reported by the CLI with status 64.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "pipeline/discovery.h"
#include "pipeline/shard.h"

namespace umamba::pipeline {

struct PredictJob {
  // inputs
  std::vector<std::string> inputs;  // files, folders, globs
  std::filesystem::path list_file;  // one input per line; empty: none
  bool recursive = false;
  // outputs
  std::filesystem::path output;
  std::string suffix = "_label";
  std::string extension = "auto";  // ".tiff", ".tif", ".nii.gz", ".png" or "auto"
  bool overwrite = false;
  bool probabilities = false;
  bool measurements = false;
  bool geojson = false;
  bool overlay = false;
  // model and inference
  std::filesystem::path model;
  std::string folds;  // comma-separated; empty: every fold (ensembled)
  std::string device = "auto";
  int workers_per_device = 1;
  int64_t batch_size = 4;
  double tile_step = 0.5;
  bool mirror = true;
  std::string precision = "fp32";  // fp32, fp16, bf16
  // Resampling (3D models whose plans.json configuration gives a spacing): the volume goes to the
  // plans' spacing (data order 3, nnU-Net's separate-Z rule), is predicted there, and its logits
  // come back to the input grid (order 1) before the arg-max. false: predicted as it is.
  bool resample = true;
  // The input's voxel size "z,y,x" (or one value for all axes) in the plans' unit (mm), replacing
  // what the file says; empty: from the file (NIfTI pixdim, TIFF resolution / ImageJ spacing).
  std::string spacing;
  // 2D models: each image plane is resized by this factor before prediction (data order 3) and
  // the logits back to the input grid (order 1), as StarDist's `scale`: above 1 when the objects
  // are smaller than those the model was trained on (Cellpose: training diameter / object
  // diameter). 1: as it is. Scaled files are predicted whole.
  double scale = 1.0;
  // post-processing
  std::string postprocess = "auto";  // auto, reclaim, plain, none
  int64_t min_size = 0;
  // large inputs
  std::string stream = "auto";                // auto, always, never
  int64_t stream_above = 64LL * 1024 * 1024;  // pixels (Z·Y·X)
  // batch
  std::string shard;  // "i/N"; empty: SLURM array environment, else everything
  std::string progress = "auto";
  double progress_interval = 30.0;  // seconds between plain progress lines
  double manifest_interval = 10.0;  // seconds between manifest writes during the run
  bool handle_signals = true;       // install the SIGTERM/SIGUSR1/SIGINT handlers
  // Where the run reads SLURM_* from (tests pass their own); null: the process environment.
  GetEnv getenv;
};

struct PredictSummary {
  int64_t discovered = 0;  // inputs before sharding
  int64_t selected = 0;    // this part's inputs
  int64_t done = 0;        // segmented by this run
  int64_t skipped = 0;     // already done before
  int64_t failed = 0;
  int64_t not_started = 0;  // left when stopped
  bool interrupted = false;
  Shard shard;
  std::filesystem::path manifest;
  int exit_code() const;
};

// Runs the job. Throws Error for setup problems (bad options, model folder, output folder, no
// inputs); a single input's failure is recorded, never thrown.
PredictSummary run_predict(const PredictJob& job);

std::string format_predict_summary(const PredictSummary& summary);

// Output paths for an input (exposed for tests): label, then the extras requested.
struct PredictOutputs {
  std::filesystem::path labels, probabilities, measurements, geojson, overlay;
};
PredictOutputs predict_outputs(const PredictJob& job, const InputFile& input);

// The manifest file name of a shard ("umamba_predict.json" when not sharded).
std::string manifest_name(const Shard& shard);

// Exit status constants (see above).
inline constexpr int kPredictMaxFailedStatus = 63;
inline constexpr int kPredictSetupErrorStatus = 64;
inline constexpr int kPredictInterruptedStatus = 75;

}  // namespace umamba::pipeline
