// Data-parallel training: the process group (LibTorch's c10d), the bucketed gradient all-reduce
// overlapped with the backward pass, and the cross-rank sum of the batch-Dice statistics.
//
// Method (PyTorch's DistributedDataParallel, Li et al., "PyTorch Distributed: Experiences on
// Accelerating Data Parallel Training", VLDB 2020; nnU-Net's DDP trainer for the Dice term):
//  * ProcessGroup: a TCPStore at MASTER_ADDR:MASTER_PORT (rank 0 serves it) and
//    ProcessGroupNCCL for CUDA devices or ProcessGroupGloo for the CPU. Collectives must be called
//    in the same order on every rank.
//  * GradientReducer: parameters are cut into buckets of ~25 MB in reverse registration order
//    (the order in which backward produces their gradients). A hook on every parameter copies its
//    gradient into its bucket's flat buffer; when a bucket is full it is divided by the world size
//    and all-reduced asynchronously, buckets always launched in index order, so communication
//    overlaps the rest of the backward pass. finish() launches what is left (parameters without a
//    gradient contribute zeros and keep no gradient, as in a single process), waits, and writes
//    the averaged gradients back, so clipping, the non-finite check and the optimiser see them.
//  * all_reduce_with_grad: a sum over ranks whose backward also sums the incoming gradient over
//    ranks. With the gradients then averaged by the reducer, the gradient of a loss computed from
//    the summed batch-Dice statistics equals that of the 1-process loss over the global batch
//    (every rank computes the same Dice from the same sums; rank r's share of its gradient is
//    W·g_r before the 1/W of the averaging).
// Limits: one process group per process; no gradient accumulation across steps; the parameter
// set that receives gradients must be the same on every step after the first (checked).
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "train/distributed.h"

namespace umamba::train {

class ProcessGroup {
 public:
  // backend: nccl or gloo (auto is resolved by the caller from the device). Blocks until every
  // rank has joined (or the timeout passes: Error naming the master address and port).
  ProcessGroup(const Rendezvous& rendezvous, const std::string& backend, torch::Device device,
               std::chrono::milliseconds timeout);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_; }
  const std::string& backend() const { return backend_; }
  torch::Device device() const { return device_; }

  // A started collective; wait() blocks until its result is usable on the caller's stream.
  class Pending {
   public:
    virtual ~Pending() = default;
    virtual void wait() = 0;
  };

  // In place, over every rank. Tensors must live on device() (CPU for Gloo).
  std::unique_ptr<Pending> all_reduce_sum_async(torch::Tensor& tensor);
  void all_reduce_sum(torch::Tensor& tensor);
  void broadcast(torch::Tensor& tensor, int root = 0);
  void barrier();
  // True on every rank when `ok` is true on every rank (a small all-reduce).
  bool all_true(bool ok);
  // Rank root's bytes on every rank.
  std::string broadcast_bytes(const std::string& bytes, int root = 0);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int rank_ = 0, world_ = 1;
  std::string backend_;
  torch::Device device_;
};

// Parameters (and buffers) of rank 0 copied to every rank.
void broadcast_module_state(ProcessGroup& group, const std::vector<torch::Tensor>& parameters,
                            const std::vector<torch::Tensor>& buffers);

// Bucket assignment: parameter indices in reverse order, a bucket closed once it holds at least
// `bucket_bytes` (a parameter larger than that gets a bucket of its own).
std::vector<std::vector<size_t>> assign_buckets(const std::vector<int64_t>& parameter_bytes,
                                                int64_t bucket_bytes);
// The same over the parameter indices in `order` (each index once).
std::vector<std::vector<size_t>> assign_buckets(const std::vector<int64_t>& parameter_bytes,
                                                const std::vector<size_t>& order,
                                                int64_t bucket_bytes);

// How gradients are grouped into buckets. Registration: reverse registration order throughout.
// Observed: reverse registration order for the first step, then the order in which the gradients
// arrived during that step's backward pass on rank 0 (sent to every rank), as PyTorch's
// DistributedDataParallel rebuilds its buckets. A bucket is sent once it and every bucket before it
// are full, so a bucket holding one late gradient holds back the ones after it: registration order
// follows the network's construction (U-Mamba registers the decoder's upsampling layers apart from
// its stages, and U-Mamba_Enc its Mamba layers apart from the encoder stages), not the backward.
enum class BucketOrder { Registration, Observed };
BucketOrder parse_bucket_order(const std::string& text);  // "registration" or "observed"

class GradientReducer {
 public:
  static constexpr int64_t kDefaultBucketBytes = 25LL << 20;
  GradientReducer(std::vector<torch::Tensor> parameters, ProcessGroup& group,
                  int64_t bucket_bytes = kDefaultBucketBytes,
                  BucketOrder order = BucketOrder::Registration);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  void prepare();  // before backward
  void finish();   // after backward: every bucket reduced; .grad = averaged, a view of its bucket

  size_t bucket_count() const { return buckets_.size(); }
  const std::vector<std::vector<size_t>>& buckets() const { return buckets_; }
  // Buckets launched from gradient hooks (during backward) in the last step.
  int64_t launched_in_backward() const { return launched_in_backward_; }
  // Buckets already sent when the last gradient of the last step arrived (overlap measure).
  int64_t sent_before_last_gradient() const { return sent_before_last_; }
  // Whether the buckets were rebuilt in the observed order (after the first step, Observed only).
  bool rebuilt() const { return order_ == BucketOrder::Observed && !first_step_; }

 private:
  void on_gradient(size_t param, const torch::Tensor& grad);
  void launch_ready_locked();                      // launches buckets next_launch_.. that are full
  void lay_out(const std::vector<size_t>& order);  // buckets, offsets and flat buffers
  void rebuild_in_observed_order();                // after the first step (Observed)

  std::vector<torch::Tensor> params_;
  ProcessGroup& group_;
  std::vector<std::vector<size_t>> buckets_;
  std::vector<size_t> bucket_of_, offset_of_;  // per parameter
  std::vector<torch::Tensor> flat_;            // per bucket, on the parameters' device
  std::vector<torch::Tensor> views_;           // per parameter: its slice of its bucket, its shape
  std::vector<int64_t> pending_count_;         // gradients still missing per bucket
  std::vector<char> seen_;                     // per parameter: gradient arrived this step
  std::vector<char> unused_;                   // per parameter: no gradient in the last step
  std::vector<std::unique_ptr<ProcessGroup::Pending>> work_;
  size_t next_launch_ = 0;
  bool armed_ = false, first_step_ = true;
  int64_t bucket_bytes_;
  BucketOrder order_;
  std::vector<size_t> arrival_;  // parameter indices in the order their gradients arrived
  int64_t launched_in_backward_ = 0;
  int64_t sent_before_last_ = 0;
  std::vector<std::pair<size_t, unsigned>> hooks_;
  std::mutex mutex_;
};

// Σ over ranks of x (every rank gets the sum); backward: Σ over ranks of the incoming gradient.
torch::Tensor all_reduce_with_grad(const torch::Tensor& x, ProcessGroup& group);

// Whether this build can make NCCL process groups (data_parallel_nccl.cpp).
bool nccl_available();

}  // namespace umamba::train
