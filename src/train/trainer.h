// `umamba train`: nnU-Net v2's training recipe for U-Mamba (and the plain U-Net), in C++.
// This header is free of LibTorch so that the pipeline and the CLI can include it.
//
// One run trains one fold of one configuration into a model folder (model/model_folder.h) that
// `umamba predict` reads:
//   MODEL_DIR/network.json, plans.json, dataset.json, metadata.json   (written when a fold ends)
//   MODEL_DIR/fold_<f>/weights.pt                                      the exported weights
//   MODEL_DIR/fold_<f>/checkpoint_{latest,best,final}.pt               training state (below)
//   MODEL_DIR/fold_<f>/split.json                                      the cases of each side
//   MODEL_DIR/fold_<f>/training_log.{csv,json}, progress.png           refreshed every epoch
//   MODEL_DIR/splits.json                                              every fold of the split
//   MODEL_DIR/preprocessed/<configuration>/                           the preprocessing cache
//
// Recipe (reference/umamba-mamba-nnunet.md §1.6, §4.5, §4.6): batch and patch from the plans;
// batches of patches with 33% foreground oversampling, augmented on the device (augment.h);
// Dice + CE with deep supervision (loss.h); SGD with Nesterov momentum 0.99, lr 1e-2, weight
// decay 3e-5 on every parameter, PolyLR 0.9 stepped per epoch; gradient norm clipped at 12;
// mixed precision (bf16 autocast, or fp16 autocast with loss scaling; the Mamba layers run in
// fp32 inside the network) or full fp32; 1000 epochs × 250 iterations by default.
// Validation after every `val_every` epochs predicts each validation case whole through the
// tiling engine (Gaussian blending, tile step 0.5, no mirroring) in the preprocessed space and
// scores it: instance tasks by the NeurIPS challenge F1 (classes → instances with
// postprocess::classes_to_instances' reclaim mode, as `umamba predict` does), others by the mean
// Dice over the foreground labels. The best checkpoint follows nnU-Net's rule on that metric: its
// exponential moving average (0.9·ema + 0.1·value) reaching a new maximum.
//
// Checkpoints (torch::serialize archives) hold the network, the optimiser (momentum buffers),
// the loss scaler, LibTorch's CPU (and CUDA) generator states and a JSON record: the next epoch
// and iteration, the running sums of the current epoch, the log so far, best and EMA metric, the
// count of consecutive non-finite steps, and the settings that must not change on resume. Since
// every batch is a pure function of (seed, global iteration) (sampler.h), resuming from
// checkpoint_latest reproduces the uninterrupted run exactly (bit-identical weights on the CPU;
// on a GPU up to the non-determinism of its kernels). checkpoint_latest is written every
// `save_every` epochs and when a run is stopped (stop flag: SIGINT/SIGTERM in the CLI).
//
// Non-finite steps: a step whose loss or gradients hold inf/NaN is skipped (no update; fp16 halves
// the loss scale); after `max_nonfinite` such steps in a row training stops with an error that
// says what to change. A CUDA out-of-memory error stops with a message naming the batch and patch
// size to lower.
//
// Data parallelism (distributed.h, data_parallel.h): one process per GPU (NCCL) or CPU process
// (Gloo), started by hand, torchrun-style variables or SLURM. Rank r trains on batch/W patches of
// its own stream (or its slice of the global batch); gradients are averaged over the ranks in
// buckets during backward; with batch Dice the Dice statistics are summed over the ranks, so the
// loss is that of the global batch. Rank 0 alone reads the checkpoint (broadcast to the others),
// validates and writes every file (the others wait at a barrier); a checkpoint holds the global
// state only, so a run resumes with another world size.
// Limits: no cascade (3d_lowres →
// 3d_cascade_fullres); validation is in the preprocessed space (cropped, resampled for 3D), not
// on the original grid.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plan/dataset.h"
#include "train/distributed.h"

namespace umamba::train {

struct TrainOptions {
  std::filesystem::path output;            // the model folder
  std::string configuration;               // plans configuration ("2d", "3d_fullres", ...)
  std::string architecture = "UMambaBot";  // UMambaBot, UMambaEnc, PlainConvUNet (or bot/enc/plain)
  std::string fold = "0";                  // 0..folds−1 or "all"
  int folds = 5;
  uint64_t seed = 12345;           // split, initial weights, batches
  std::filesystem::path val_list;  // explicit validation ids (one per line); overrides the split
  int64_t epochs = 1000;
  int64_t iterations = 250;         // per epoch
  int64_t batch_size = 0;           // 0: the plans'
  std::vector<int64_t> patch_size;  // empty: the plans'
  // Network size overrides (0: the plans'), e.g. for a small model on the CPU:
  int stages = 0;         // keep the first N encoder stages (the deepest ones and their decoder
                          // stages are dropped), 2..the plans' count
  int base_features = 0;  // features of stage i: min(base · 2^i, max)
  int max_features = 0;   // cap of the features per stage (with base_features 0: the plans' base)
  std::string device = "auto";      // auto, cpu, cuda, cuda:N
  std::string precision = "auto";   // auto (bf16 on CUDA, fp32 on the CPU), bf16, fp16, fp32
  std::string cuda_graph = "auto";  // auto (on for CUDA devices), on, off: step.h
  double initial_lr = 1e-2;
  double weight_decay = 3e-5;
  double momentum = 0.99;
  double grad_clip = 12.0;
  double poly_exponent = 0.9;
  double oversample_foreground = 0.33;
  bool deep_supervision = true;
  bool augment = true;
  int workers = 4;                       // batch preparation threads
  int queue_depth = 8;                   // batches prepared ahead
  int val_every = 1;                     // epochs between validations (0: never)
  int64_t val_max_cases = 0;             // 0: every validation case
  int64_t val_batch_size = 4;            // tiles per network call in validation
  bool validate_untrained = false;       // also score the initial weights (epoch −1 in the log)
  int save_every = 1;                    // epochs between checkpoint_latest writes
  int max_nonfinite = 50;                // consecutive non-finite steps before giving up
  std::string export_weights = "final";  // final or best: what fold_<f>/weights.pt holds
  bool resume = false;                   // continue from fold_<f>/checkpoint_latest.pt
  std::filesystem::path cache_dir;       // empty: MODEL_DIR/preprocessed/<configuration>
  // For tests and signals: stop (saving checkpoint_latest) after this many iterations of this
  // run (-1: never), or when *stop_flag becomes true.
  int64_t stop_after_iterations = -1;
  const std::atomic<bool>* stop_flag = nullptr;
  // Data-parallel training over several processes (distributed.h; a world of 1 is the plain run):
  // batch_size is the global batch, split evenly over the ranks.
  DistributedOptions distributed;
  // per-rank: each rank draws its own batches (seed derived from the run's seed and the rank);
  // global-slice: each rank makes the global batch and keeps samples rank, rank + W, ... (the
  // 1-process run's samples exactly, at W times the data preparation; for comparisons).
  std::string dist_sampling = "per-rank";
  // Gradient buckets: "registration" (reverse registration order) or "observed" (rebuilt after
  // the first step in the order the gradients arrived, as PyTorch's DDP); data_parallel.h. On two
  // H200 the observed order was not faster for U-Mamba (docs/train.md), so it is not the default.
  std::string dist_bucket_order = "registration";
  // Testing aid: when set, EVERY rank writes rank<r>_losses.txt (global iteration and loss per
  // line) and rank<r>_params.pt (its final parameters, torch::save of a tensor list) here.
  std::filesystem::path debug_dump;
};

// One line of the training log.
struct EpochRecord {
  int64_t epoch = 0;      // −1: the untrained network's validation
  double train_loss = 0;  // mean total loss over the epoch's finite steps
  double train_ce = 0, train_dice = 0;
  double val_metric = -1;  // F1 or mean Dice; −1 when not validated this epoch
  double val_metric_ema = -1;
  double lr = 0;
  double seconds = 0;  // wall time of the epoch (training + validation)
  double val_seconds = 0;
  double data_wait_seconds = 0;  // the loop waiting for batches
  int64_t steps = 0, skipped_steps = 0;
  double loss_scale = 1;
  double peak_gpu_memory_gb = 0;  // CUDA: peak allocated by LibTorch during the epoch (with
                                  // the CUDA graph: at least what its allocator holds)
};

struct TrainCallbacks {
  // After every iteration: epoch, iteration within the epoch (1-based), iterations per epoch,
  // this step's loss (NaN for a skipped step).
  std::function<void(int64_t, int64_t, int64_t, double)> on_iteration;
  std::function<void(const EpochRecord&)> on_epoch;
  std::function<void(const std::string&)> on_message;  // setup and checkpoint notes
};

struct TrainResult {
  bool completed = false;  // every epoch ran and the model folder was written
  bool stopped = false;    // stopped early (stop flag or stop_after_iterations)
  int64_t next_epoch = 0, next_iteration = 0;
  std::vector<EpochRecord> history;
  double best_metric_ema = -1;
  double final_metric = -1;
  std::string split_how;
  int64_t train_cases = 0, val_cases = 0;
  int64_t cache_reused = 0, cache_built = 0;
  double cache_seconds = 0;
  std::string device, precision;
  int rank = 0, world_size = 1;  // data parallelism: this process and the world
  std::string dist_backend;      // nccl or gloo (empty: one process)
  std::filesystem::path fold_dir;
  nlohmann::json metadata;  // the model folder's metadata.json (when completed)
};

// Trains one fold. `dataset` from plan::discover_dataset, `plans` the nnU-Net plans (plans.json).
// Throws Error on bad options (naming the option and value), data errors (naming the file),
// a resume that does not fit (naming what changed), non-finite training and out-of-memory.
TrainResult train(const plan::DatasetDescription& dataset, const nlohmann::json& plans,
                  const TrainOptions& options, const TrainCallbacks& callbacks = {});

// The plans configuration used when none is given: "2d" for 2D data (and when the plans have no
// 3D one), else "3d_fullres".
std::string default_configuration(const nlohmann::json& plans);

}  // namespace umamba::train
