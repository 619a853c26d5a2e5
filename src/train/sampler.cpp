// Patch sampling and the background batch loader (see sampler.h).
#include "train/sampler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace umamba::train {

namespace {

// Python's floor division for the bounds (−pad // 2 rounds towards −∞).
int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t uniform_int(AugmentRandom& rng, int64_t lo, int64_t hi) {  // [lo, hi]
  return lo + rng.index(hi - lo + 1);
}

}  // namespace

bool force_foreground(int64_t index, int64_t batch_size, double oversample) {
  // nnU-Net: not (index < round(batch_size * (1 - oversample))), NumPy's round (half to even).
  const double r = std::nearbyint(static_cast<double>(batch_size) * (1.0 - oversample));
  return !(static_cast<double>(index) < r);
}

std::vector<PatchBox> sample_boxes(const std::vector<const TrainCase*>& cases,
                                   const SamplerOptions& o, AugmentRandom& rng) {
  UMAMBA_CHECK(!cases.empty(), "patch sampling: no training case");
  const int dims = o.dims;
  UMAMBA_CHECK(
      static_cast<int>(o.patch.size()) == dims && static_cast<int>(o.initial_patch.size()) == dims,
      "patch sampling: patch sizes must have {} axes", dims);
  std::vector<PatchBox> boxes;
  for (int64_t j = 0; j < o.batch_size; ++j) {
    PatchBox box;
    box.case_index = rng.index(static_cast<int64_t>(cases.size()));
    const TrainCase& c = *cases[static_cast<size_t>(box.case_index)];
    const Shape& s = c.data.shape();
    const bool force = force_foreground(j, o.batch_size, o.oversample_foreground);
    // A class with locations, then one location.
    const std::array<int32_t, 3>* voxel = nullptr;
    if (force) {
      std::vector<int64_t> eligible;
      for (size_t k = 0; k < c.foreground.size(); ++k)
        if (!c.foreground[k].empty()) eligible.push_back(static_cast<int64_t>(k));
      if (!eligible.empty()) {
        const int64_t k =
            eligible[static_cast<size_t>(rng.index(static_cast<int64_t>(eligible.size())))];
        const auto& locs = c.foreground[static_cast<size_t>(k)];
        voxel = &locs[static_cast<size_t>(rng.index(static_cast<int64_t>(locs.size())))];
        box.forced_foreground = true;
        box.foreground_class = k + 1;
      }
    }
    std::vector<int64_t> shape;
    std::vector<int64_t> at;  // the selected voxel in the network's axes
    if (dims == 2) {
      box.slice = voxel ? (*voxel)[0] : rng.index(s.z);
      shape = {s.y, s.x};
      if (voxel) at = {(*voxel)[1], (*voxel)[2]};
    } else {
      shape = {s.z, s.y, s.x};
      if (voxel) at = {(*voxel)[0], (*voxel)[1], (*voxel)[2]};
    }
    box.lower.resize(static_cast<size_t>(dims));
    for (int d = 0; d < dims; ++d) {
      const size_t i = static_cast<size_t>(d);
      int64_t pad = o.initial_patch[i] - o.patch[i];
      if (pad + shape[i] < o.initial_patch[i]) pad = o.initial_patch[i] - shape[i];
      const int64_t lb = floor_div(-pad, 2);
      const int64_t ub = shape[i] + pad / 2 + pad % 2 - o.initial_patch[i];
      if (voxel) {
        box.lower[i] = std::max(lb, at[i] - o.initial_patch[i] / 2);
      } else {
        box.lower[i] = uniform_int(rng, lb, std::max(lb, ub));
      }
    }
    boxes.push_back(std::move(box));
  }
  return boxes;
}

CpuBatch crop_boxes(const std::vector<const TrainCase*>& cases, const std::vector<PatchBox>& boxes,
                    const SamplerOptions& o, bool pin) {
  const int dims = o.dims;
  const int64_t B = static_cast<int64_t>(boxes.size());
  UMAMBA_CHECK(B > 0, "crop: empty batch");
  const int64_t C = cases[static_cast<size_t>(boxes[0].case_index)]->data.channels();
  const int64_t pz = dims == 3 ? o.initial_patch[0] : 1;
  const int64_t py = o.initial_patch[static_cast<size_t>(dims - 2)];
  const int64_t px = o.initial_patch[static_cast<size_t>(dims - 1)];
  std::vector<int64_t> dshape{B, C}, lshape{B, 1};
  for (int64_t p : o.initial_patch) {
    dshape.push_back(p);
    lshape.push_back(p);
  }
  auto opts = torch::TensorOptions().dtype(torch::kFloat).pinned_memory(pin);
  torch::Tensor data = torch::zeros(dshape, opts);
  torch::Tensor labels = torch::zeros(lshape, opts);
  float* dp = data.data_ptr<float>();
  float* lp = labels.data_ptr<float>();
  const int64_t patch_voxels = pz * py * px;
  for (int64_t b = 0; b < B; ++b) {
    const PatchBox& box = boxes[static_cast<size_t>(b)];
    const TrainCase& c = *cases[static_cast<size_t>(box.case_index)];
    UMAMBA_CHECK(c.data.channels() == C, "crop: case {} has {} channels, {} expected", c.id,
                 c.data.channels(), C);
    const Shape& s = c.data.shape();
    // Box in [Z,Y,X] of the case.
    const int64_t z0 = dims == 3 ? box.lower[0] : box.slice;
    const int64_t y0 = box.lower[static_cast<size_t>(dims - 2)];
    const int64_t x0 = box.lower[static_cast<size_t>(dims - 1)];
    const int64_t za = std::max<int64_t>(z0, 0), zb = std::min(z0 + pz, s.z);
    const int64_t ya = std::max<int64_t>(y0, 0), yb = std::min(y0 + py, s.y);
    const int64_t xa = std::max<int64_t>(x0, 0), xb = std::min(x0 + px, s.x);
    if (za >= zb || ya >= yb || xa >= xb) continue;
    const float* src = c.data.data_as<float>();
    const Shape& st = c.data.strides();
    for (int64_t ch = 0; ch < C; ++ch) {
      float* dst = dp + (b * C + ch) * patch_voxels;
      for (int64_t z = za; z < zb; ++z)
        for (int64_t y = ya; y < yb; ++y) {
          const float* row = src + ch * st.c + z * st.z + y * st.y + xa * st.x;
          float* out = dst + ((z - z0) * py + (y - y0)) * px + (xa - x0);
          if (st.x == 1) {
            std::memcpy(out, row, static_cast<size_t>(xb - xa) * sizeof(float));
          } else {
            for (int64_t x = 0; x < xb - xa; ++x) out[x] = row[x * st.x];
          }
        }
    }
    float* ldst = lp + b * patch_voxels;
    visit_dtype(c.labels.dtype(), [&](auto tag) {
      using T = decltype(tag);
      for (int64_t z = za; z < zb; ++z)
        for (int64_t y = ya; y < yb; ++y)
          for (int64_t x = xa; x < xb; ++x) {
            ldst[((z - z0) * py + (y - y0)) * px + (x - x0)] =
                static_cast<float>(c.labels.at<T>(0, z, y, x));
          }
    });
  }
  return {data, labels};
}

Batch make_batch(const std::vector<const TrainCase*>& cases, const LoaderOptions& options,
                 int64_t index) {
  torch::NoGradGuard no_grad;
  AugmentRandom rng(mix_seed(options.seed, static_cast<uint64_t>(index)));
  Batch batch;
  batch.index = index;
  batch.boxes = sample_boxes(cases, options.sampler, rng);
  const bool cuda = options.device.is_cuda();
  CpuBatch cpu = crop_boxes(cases, batch.boxes, options.sampler, cuda);
  torch::Tensor data = cpu.data.to(options.device, /*non_blocking=*/cuda);
  torch::Tensor labels = cpu.labels.to(options.device, /*non_blocking=*/cuda);
  Augmented a = augment_batch(data, labels, options.augment, rng);
  batch.data = a.data;
  if (options.ds_scales.empty()) {
    batch.targets = {a.labels};
  } else {
    batch.targets = downsample_targets(a.labels, options.ds_scales);
  }
  if (options.shard_count > 1) {
    const int64_t B = static_cast<int64_t>(batch.boxes.size());
    UMAMBA_CHECK(options.shard_rank >= 0 && options.shard_rank < options.shard_count &&
                     B % options.shard_count == 0,
                 "batch sharding: rank {} of {} over a batch of {}", options.shard_rank,
                 options.shard_count, B);
    const torch::Tensor rows =
        torch::arange(options.shard_rank, B, options.shard_count,
                      torch::TensorOptions().dtype(torch::kLong).device(batch.data.device()));
    batch.data = batch.data.index_select(0, rows);
    for (auto& t : batch.targets) t = t.index_select(0, rows);
    std::vector<PatchBox> kept;
    for (int64_t j = options.shard_rank; j < B; j += options.shard_count)
      kept.push_back(batch.boxes[static_cast<size_t>(j)]);
    batch.boxes = std::move(kept);
  }
  // Class indices in the smallest integer type that holds them: up to queue_depth batches wait on
  // the device, and their f32 targets were about half of a 2D batch's bytes. The loss reads them
  // as integers anyway.
  const torch::ScalarType compact = options.num_classes <= 0       ? torch::kFloat
                                    : options.num_classes <= 256   ? torch::kByte
                                    : options.num_classes <= 32768 ? torch::kShort
                                                                   : torch::kFloat;
  if (compact != torch::kFloat)
    for (auto& t : batch.targets) t = t.to(compact);
  // No synchronisation needed: every thread queues on the device's default stream, so the training
  // thread's kernels run after this batch's; pinned buffers stay reserved until their copies end.
  return batch;
}

BatchLoader::BatchLoader(std::vector<const TrainCase*> cases, LoaderOptions options,
                         int64_t first_index)
    : cases_(std::move(cases)), options_(std::move(options)), next_(first_index) {
  UMAMBA_CHECK(options_.workers >= 1, "batch loader: {} workers", options_.workers);
  UMAMBA_CHECK(options_.queue_depth >= 1, "batch loader: queue depth {}", options_.queue_depth);
  // Worker w makes batches first_index + w + k·workers. The start is fixed here, not read from
  // next_ when the thread starts: a thread that starts late would otherwise begin after batches
  // the others already handed out, leave its own first batch unmade and stall next() for good.
  for (int w = 0; w < options_.workers; ++w) {
    threads_.emplace_back([this, w, first_index] { work(w, first_index + w); });
  }
}

BatchLoader::~BatchLoader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

void BatchLoader::work(int worker, int64_t index) {
  (void)worker;
  const int64_t stride = options_.workers;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || index < next_ + options_.queue_depth; });
      if (stop_) return;
    }
    try {
      Batch b = make_batch(cases_, options_, index);
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.emplace(index, std::move(b));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
      stop_ = true;
    }
    cv_.notify_all();
    index += stride;
  }
}

Batch BatchLoader::next() {
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return error_ || ready_.count(next_) > 0; });
  if (error_) std::rethrow_exception(error_);
  auto it = ready_.find(next_);
  Batch b = std::move(it->second);
  ready_.erase(it);
  ++next_;
  lock.unlock();
  cv_.notify_all();
  wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return b;
}

}  // namespace umamba::train
