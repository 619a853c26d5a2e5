// `umamba train DATASET_DIR -o MODEL_DIR`: nnU-Net's training recipe for U-Mamba (see
// src/train/trainer.h for the recipe and the files, src/pipeline/train.h for plans, progress and
// signals).
#include <fmt/core.h>

#include <cstdio>
#include <limits>
#include <memory>
#include <sstream>

#include "cli/commands.h"
#include "core/error.h"
#include "pipeline/train.h"

namespace umamba::cli {

namespace {

std::vector<int64_t> parse_patch(const std::string& text) {
  std::vector<int64_t> out;
  if (text.empty()) return out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, 'x');) {
    try {
      size_t used = 0;
      const long long v = std::stoll(item, &used);
      if (used != item.size() || v <= 0) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (const std::exception&) {
      fail("--patch-size '{}': expected 2 or 3 positive integers joined by 'x' (e.g. 512x512)",
           text);
    }
  }
  UMAMBA_CHECK(out.size() == 2 || out.size() == 3,
               "--patch-size '{}': expected 2 or 3 edges (YxX or ZxYxX)", text);
  return out;
}

void add_train_command(CLI::App& app) {
  auto job = std::make_shared<pipeline::TrainJob>();
  auto output = std::make_shared<std::string>();
  auto plans = std::make_shared<std::string>();
  auto val_list = std::make_shared<std::string>();
  auto cache_dir = std::make_shared<std::string>();
  auto patch = std::make_shared<std::string>();
  auto seed = std::make_shared<int64_t>(12345);
  train::TrainOptions& o = job->options;
  CLI::App* cmd = app.add_subcommand(
      "train",
      "Train U-Mamba (Bot, Enc) or nnU-Net's plain U-Net with nnU-Net's recipe on a NeurIPS cell "
      "dataset (images/, labels/<name>_label.tiff) or an nnU-Net raw dataset; writes a model "
      "folder for `umamba predict`, checkpoints, logs and curves. Exit status: 0 done, 75 stopped "
      "by SIGTERM/SIGUSR1/SIGINT (rerun with --resume), 1 error");
  cmd->add_option(
         "dataset", job->dataset,
         "Dataset folder: nnU-Net raw (dataset.json, imagesTr/, labelsTr/) or NeurIPS cells")
      ->required()
      ->check(CLI::ExistingDirectory)
      ->envname("UMAMBA_TRAIN_DATASET");
  cmd->add_option("-o,--output", *output, "Model folder to write (checkpoints go in fold_<f>/)")
      ->required()
      ->envname("UMAMBA_TRAIN_OUTPUT");
  cmd->add_option("--plans", *plans,
                  "plans.json to use; empty: MODEL_DIR/plans.json of an earlier run, else planned "
                  "now with nnU-Net's rules (as `umamba plan`)")
      ->capture_default_str()
      ->envname("UMAMBA_TRAIN_PLANS");
  cmd->add_option("--gpu-memory-gb", job->gpu_memory_gb,
                  "GPU memory target when planning now (nnU-Net's -gpu_memory_target)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_TRAIN_GPU_MEMORY_GB");
  cmd->add_option("-c,--configuration", o.configuration,
                  "Plans configuration: 2d, 3d_fullres, 3d_lowres; empty: 3d_fullres when the "
                  "plans have it, else 2d")
      ->capture_default_str()
      ->envname("UMAMBA_TRAIN_CONFIGURATION");
  cmd->add_option("-a,--architecture", o.architecture,
                  "bot (U-Mamba_Bot), enc (U-Mamba_Enc) or plain (nnU-Net's PlainConvUNet)")
      ->capture_default_str()
      ->transform(CLI::IsMember({"bot", "enc", "plain", "UMambaBot", "UMambaEnc", "PlainConvUNet"}))
      ->envname("UMAMBA_TRAIN_ARCHITECTURE");
  cmd->add_option("-f,--fold", o.fold, "Fold to train: 0..folds-1, or all (train on every case)")
      ->capture_default_str()
      ->envname("UMAMBA_TRAIN_FOLD");
  cmd->add_option("--folds", o.folds, "Folds of the seeded split")
      ->capture_default_str()
      ->check(CLI::Range(2, 100))
      ->envname("UMAMBA_TRAIN_FOLDS");
  cmd->add_option("--val-list", *val_list,
                  "Text file of validation case ids (one per line); replaces the k-fold split")
      ->capture_default_str()
      ->envname("UMAMBA_TRAIN_VAL_LIST");
  cmd->add_option("--seed", *seed, "Seed of the split, the initial weights and the batches")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->envname("UMAMBA_TRAIN_SEED");
  cmd->add_option("--epochs", o.epochs, "Epochs")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_TRAIN_EPOCHS");
  cmd->add_option("--iterations", o.iterations, "Iterations (batches) per epoch")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_TRAIN_ITERATIONS");
  cmd->add_option("--batch-size", o.batch_size, "Patches per batch; 0: the plans'")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->envname("UMAMBA_TRAIN_BATCH_SIZE");
  cmd->add_option("--patch-size", *patch,
                  "Patch, e.g. 512x512 or 64x128x128; empty: the plans' (must divide by the "
                  "network's pooling)")
      ->capture_default_str()
      ->envname("UMAMBA_TRAIN_PATCH_SIZE");
  cmd->add_option("--stages", o.stages,
                  "Keep the first N stages of the plans' network (fewer poolings, a smaller "
                  "model); 0: the plans'")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->envname("UMAMBA_TRAIN_STAGES");
  cmd->add_option("--base-features", o.base_features,
                  "Features of the first stage (stage i: min(base*2^i, max)); 0: the plans'")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->envname("UMAMBA_TRAIN_BASE_FEATURES");
  cmd->add_option("--max-features", o.max_features, "Cap of the features per stage; 0: the plans'")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->envname("UMAMBA_TRAIN_MAX_FEATURES");
  cmd->add_option("--device", o.device, "auto (first GPU, else CPU), cpu, cuda or cuda:N")
      ->capture_default_str()
      ->envname("UMAMBA_TRAIN_DEVICE");
  cmd->add_option("--precision", o.precision,
                  "auto (bf16 on a GPU, fp32 on the CPU), bf16, fp16 (with loss scaling) or fp32; "
                  "Mamba layers always run in fp32")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "bf16", "fp16", "fp32"}))
      ->envname("UMAMBA_TRAIN_PRECISION");
  cmd->add_option("--cuda-graph", o.cuda_graph,
                  "Capture the training step in a CUDA graph after 3 ordinary steps and replay it "
                  "(the host stops launching each kernel): auto (on for GPUs), on or off")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "on", "off"}))
      ->envname("UMAMBA_TRAIN_CUDA_GRAPH");
  cmd->add_option("--learning-rate", o.initial_lr, "Initial learning rate (PolyLR 0.9 per epoch)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_TRAIN_LEARNING_RATE");
  cmd->add_option("--weight-decay", o.weight_decay, "SGD weight decay")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->envname("UMAMBA_TRAIN_WEIGHT_DECAY");
  cmd->add_option("--grad-clip", o.grad_clip, "Gradient norm clipping")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_TRAIN_GRAD_CLIP");
  cmd->add_option("--oversample", o.oversample_foreground,
                  "Fraction of each batch forced to contain foreground")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0))
      ->envname("UMAMBA_TRAIN_OVERSAMPLE");
  cmd->add_flag("--deep-supervision,!--no-deep-supervision", o.deep_supervision,
                "Loss on every decoder output (weights 1/2^i, the last 0)")
      ->capture_default_str()
      ->envname("UMAMBA_TRAIN_DEEP_SUPERVISION");
  cmd->add_flag("--augment,!--no-augment", o.augment, "nnU-Net's data augmentation")
      ->capture_default_str()
      ->envname("UMAMBA_TRAIN_AUGMENT");
  cmd->add_option("--workers", o.workers, "Threads preparing batches")
      ->capture_default_str()
      ->check(CLI::Range(1, 64))
      ->envname("UMAMBA_TRAIN_WORKERS");
  cmd->add_option("--queue-depth", o.queue_depth, "Batches prepared ahead")
      ->capture_default_str()
      ->check(CLI::Range(1, 256))
      ->envname("UMAMBA_TRAIN_QUEUE_DEPTH");
  cmd->add_option("--val-every", o.val_every,
                  "Validate every N epochs (whole images through the tiling engine; 0: never)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->envname("UMAMBA_TRAIN_VAL_EVERY");
  cmd->add_option("--val-max-cases", o.val_max_cases, "Validate on at most N cases; 0: all")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->envname("UMAMBA_TRAIN_VAL_MAX_CASES");
  cmd->add_option("--val-batch-size", o.val_batch_size, "Tiles per network call in validation")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_TRAIN_VAL_BATCH_SIZE");
  cmd->add_flag("--validate-untrained", o.validate_untrained,
                "Also score the initial weights before training (logged as epoch -1)")
      ->capture_default_str()
      ->envname("UMAMBA_TRAIN_VALIDATE_UNTRAINED");
  cmd->add_option("--save-every", o.save_every, "Epochs between checkpoint_latest writes")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_TRAIN_SAVE_EVERY");
  cmd->add_option("--max-nonfinite", o.max_nonfinite,
                  "Consecutive steps with a non-finite loss or gradient before training stops")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_TRAIN_MAX_NONFINITE");
  cmd->add_option("--export", o.export_weights,
                  "Weights the model folder gets: final or best (by the validation EMA)")
      ->capture_default_str()
      ->check(CLI::IsMember({"final", "best"}))
      ->envname("UMAMBA_TRAIN_EXPORT");
  cmd->add_flag("--resume", o.resume, "Continue from MODEL_DIR/fold_<f>/checkpoint_latest.pt")
      ->capture_default_str()
      ->envname("UMAMBA_TRAIN_RESUME");
  cmd->add_option("--cache-dir", *cache_dir,
                  "Preprocessed-case cache; empty: MODEL_DIR/preprocessed/<configuration>")
      ->capture_default_str()
      ->envname("UMAMBA_TRAIN_CACHE_DIR");
  cmd->add_option("--planner-rules", job->planner_rules,
                  "nnU-Net planner version when planning now: 2.2.1 or 2.8.1")
      ->capture_default_str()
      ->check(CLI::IsMember({"2.2.1", "2.8.1"}))
      ->envname("UMAMBA_TRAIN_PLANNER_RULES");
  cmd->add_option("--progress", job->progress,
                  "auto (a bar on a terminal, lines otherwise), bar, lines or off")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "bar", "lines", "off"}))
      ->envname("UMAMBA_TRAIN_PROGRESS");
  cmd->add_option("--progress-interval", job->progress_interval,
                  "Seconds between plain progress lines")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_TRAIN_PROGRESS_INTERVAL");
  // Data parallelism (one process per GPU; see docs/train.md "Several GPUs and nodes").
  train::DistributedOptions& d = o.distributed;
  cmd->add_option("--dist-backend", d.backend,
                  "Data-parallel backend: auto (nccl on GPUs, gloo on the CPU), nccl or gloo")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "nccl", "gloo"}))
      ->envname("UMAMBA_TRAIN_DIST_BACKEND");
  cmd->add_option("--world-size", d.world_size,
                  "Processes in the run; 0: WORLD_SIZE (torchrun), else SLURM_NTASKS (srun), else "
                  "1 (no data parallelism)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->envname("UMAMBA_TRAIN_WORLD_SIZE");
  cmd->add_option("--rank", d.rank,
                  "This process's rank in [0, world size); -1: RANK, else SLURM_PROCID")
      ->capture_default_str()
      ->check(CLI::Range(-1, 1000000))
      ->envname("UMAMBA_TRAIN_RANK");
  cmd->add_option("--local-rank", d.local_rank,
                  "This process's index on its node (its GPU is cuda:LOCAL_RANK); -1: LOCAL_RANK, "
                  "else SLURM_LOCALID, else the rank")
      ->capture_default_str()
      ->check(CLI::Range(-1, 1023))
      ->envname("UMAMBA_TRAIN_LOCAL_RANK");
  cmd->add_option("--master-addr", d.master_addr,
                  "Host of rank 0 (the rendezvous); empty: MASTER_ADDR, else the first host of "
                  "SLURM_JOB_NODELIST")
      ->capture_default_str()
      ->envname("UMAMBA_TRAIN_MASTER_ADDR");
  cmd->add_option("--master-port", d.master_port,
                  "TCP port of the rendezvous on rank 0's host; 0: MASTER_PORT, else 29500")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535))
      ->envname("UMAMBA_TRAIN_MASTER_PORT");
  cmd->add_option("--dist-timeout", d.timeout_minutes,
                  "Minutes a rank waits for the others (rendezvous, collectives, rank 0's "
                  "validation)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_TRAIN_DIST_TIMEOUT");
  cmd->add_option("--dist-sampling", o.dist_sampling,
                  "per-rank (each rank its own batch stream) or global-slice (each rank makes the "
                  "global batch and keeps every W-th sample: the 1-process samples, for "
                  "comparisons)")
      ->capture_default_str()
      ->check(CLI::IsMember({"per-rank", "global-slice"}))
      ->envname("UMAMBA_TRAIN_DIST_SAMPLING");
  cmd->add_option("--dist-bucket-order", o.dist_bucket_order,
                  "Gradient buckets of the all-reduce: registration (reverse registration "
                  "order) or observed (after the first step, in the order the gradients arrived, "
                  "as PyTorch's DDP)")
      ->capture_default_str()
      ->check(CLI::IsMember({"observed", "registration"}))
      ->envname("UMAMBA_TRAIN_DIST_BUCKET_ORDER");
  cmd->add_option("--stop-after-iterations", o.stop_after_iterations,
                  "Testing aid: stop after N iterations of this run as a signal would (checkpoint "
                  "saved, exit status 75); -1: never")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{-1}, std::numeric_limits<int64_t>::max()))
      ->envname("UMAMBA_TRAIN_STOP_AFTER_ITERATIONS");
  auto debug_dump = std::make_shared<std::string>();
  cmd->add_option("--debug-dump", *debug_dump,
                  "Testing aid: every rank writes its per-iteration losses and final parameters "
                  "into this folder (rank<r>_losses.txt, rank<r>_params.pt); empty: off")
      ->capture_default_str()
      ->envname("UMAMBA_TRAIN_DEBUG_DUMP");
  cmd->callback([job, output, plans, val_list, cache_dir, patch, seed, debug_dump] {
    job->options.debug_dump = *debug_dump;
    job->options.output = *output;
    job->plans = *plans;
    job->options.val_list = *val_list;
    job->options.cache_dir = *cache_dir;
    job->options.seed = static_cast<uint64_t>(*seed);
    train::TrainResult result;
    try {
      job->options.patch_size = parse_patch(*patch);
      result = pipeline::run_train(*job);
    } catch (const Error& e) {
      std::fprintf(stderr, "umamba: error: %s\n", e.what());
      throw CLI::RuntimeError(1);
    }
    if (result.rank == 0) fmt::print(stderr, "{}", pipeline::format_train_summary(result, *job));
    if (result.stopped) throw CLI::RuntimeError(pipeline::kTrainStoppedStatus);
  });
}

}  // namespace

UMAMBA_REGISTER_COMMAND(400, add_train_command);

}  // namespace umamba::cli
