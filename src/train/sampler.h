// Patch sampling and the background batch loader.
//
// Sampling follows nnU-Net v2.2.1's nnUNetDataLoader2D/3D (reference §4.5–4.6): cases are drawn
// uniformly with replacement; sample j of a batch of B is forced to contain foreground when
// j ≥ round(B · (1 − oversample)) (oversample 0.33: 1 of 2, 4 of 12); a forced sample picks a
// class among those with sampled locations, then one of its locations uniformly, and centres the
// patch there (lower corner max(lb, voxel − patch//2)); a free sample draws the lower corner
// uniformly in [lb, ub] with lb = −pad//2 (floor), ub = size + pad//2 + pad%2 − patch, where pad
// is the room for augmentation (initial − final patch), raised so that a case smaller than the
// patch is padded. 2D configurations over volumes take one slice (a forced sample the slice of its
// location, a free one a uniform slice). Outside the case the patch is padded with 0 (image) and
// background (labels).
//
// The loader prepares batches on background threads: crop on the CPU, copy to the device (pinned
// memory for CUDA), augment there (augment.h), downsample the deep-supervision targets. Batch i is
// a pure function of (seed, i): its random streams are seeded by mix_seed(seed, i), so batches do
// not depend on the number of threads or their timing, and a resumed run sees exactly the batches
// the uninterrupted run would have seen. Batches come out in index order; at most `queue_depth`
// are prepared ahead.
// Data parallelism: each rank runs its own loader with the per-rank batch size and a per-rank seed
// (distributed.h rank_seed), or, for comparisons, the global batch sliced by rank (shard_*).
// Limits: device augmentation runs on the current (default) CUDA stream of each worker thread.
#pragma once

#include <torch/torch.h>

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "train/augment.h"
#include "train/dataset.h"

namespace umamba::train {

struct SamplerOptions {
  int dims = 2;
  std::vector<int64_t> patch;          // final patch
  std::vector<int64_t> initial_patch;  // cropped (room for rotation and scaling)
  int64_t batch_size = 2;
  double oversample_foreground = 0.33;
};

struct PatchBox {
  int64_t case_index = 0;
  int64_t slice = -1;          // 2D configurations: the slice; -1 for 3D
  std::vector<int64_t> lower;  // lower corner per spatial axis of the network
  bool forced_foreground = false;
  int64_t foreground_class = 0;  // the class a forced sample was centred on (0: none)
};

// nnU-Net's rule: sample `index` of a batch of `batch_size` is forced to contain foreground.
bool force_foreground(int64_t index, int64_t batch_size, double oversample);

// The boxes of one batch.
std::vector<PatchBox> sample_boxes(const std::vector<const TrainCase*>& cases,
                                   const SamplerOptions& options, AugmentRandom& rng);

// Crops the boxes: data [B, C, *initial_patch] f32 and labels [B, 1, *initial_patch] f32, on the
// CPU (pinned when `pin`).
struct CpuBatch {
  torch::Tensor data, labels;
};
CpuBatch crop_boxes(const std::vector<const TrainCase*>& cases, const std::vector<PatchBox>& boxes,
                    const SamplerOptions& options, bool pin = false);

struct LoaderOptions {
  SamplerOptions sampler;
  AugmentConfig augment;
  std::vector<std::vector<int64_t>> ds_scales;  // deep-supervision scales (empty: one target)
  torch::Device device = torch::kCPU;
  int workers = 2;
  int queue_depth = 4;
  // Classes of the task: queued targets are stored as uint8 (<= 256 classes) or int16 (<= 32768)
  // instead of f32, so the batches waiting on the device take less memory; 0 keeps f32.
  int64_t num_classes = 0;
  uint64_t seed = 12345;
  // Data-parallel comparison mode: every rank makes the global batch (sampler.batch_size is the
  // global batch) and keeps samples shard_rank, shard_rank + shard_count, ... of it, so that W
  // ranks see exactly the samples of the 1-process run. 1: the batch as made.
  int64_t shard_rank = 0, shard_count = 1;
};

struct Batch {
  int64_t index = 0;
  torch::Tensor data;                  // [B, C, *patch] f32 on the device
  std::vector<torch::Tensor> targets;  // per output, [B, 1, *patch / scale] class indices: f32,
                                       // or uint8/int16 (LoaderOptions::num_classes)
  std::vector<PatchBox> boxes;
};

// Batch `index` (the pure function the loader's threads evaluate).
Batch make_batch(const std::vector<const TrainCase*>& cases, const LoaderOptions& options,
                 int64_t index);

class BatchLoader {
 public:
  // Prepares batches first_index, first_index + 1, ... until destroyed.
  BatchLoader(std::vector<const TrainCase*> cases, LoaderOptions options, int64_t first_index);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  // The next batch in index order; rethrows a worker's exception.
  Batch next();
  // Seconds next() spent waiting for a batch so far (the training loop's data stall).
  double wait_seconds() const { return wait_s_; }

 private:
  void work(int worker, int64_t first_index);  // makes first_index + k·workers

  std::vector<const TrainCase*> cases_;
  LoaderOptions options_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::map<int64_t, Batch> ready_;
  int64_t next_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
  std::vector<std::thread> threads_;
  double wait_s_ = 0;
};

}  // namespace umamba::train
