// One optimisation step of nnU-Net's recipe on a network, and its state for checkpoints (the
// tensor side of trainer.h; see there for the recipe).
//
// step(): zero the gradients; forward and loss under autocast (bf16/fp16) or in fp32; a non-finite
// loss skips the step; backward of the (scaled) loss; gradients unscaled and checked (loss.h
// GradScaler); finite gradients are clipped to norm `grad_clip` and SGD steps; the scaler updates.
// After `max_nonfinite` skipped steps in a row step() throws umamba::Error.
// CUDA graph (StepOptions::cuda_graph): the device part of the step (forward, loss, backward with
// the gradient all-reduce, unscale, gradient norm) is captured once, after `graph_warmup_steps`
// ordinary steps, and replayed on every later step with the batch copied into the graph's input
// tensors, so the host no longer launches its several thousand kernels one by one. The decision,
// clipping and the SGD step stay outside the graph (host values, a handful of launches). The
// gradients then live at fixed addresses in the graph's memory pool and are overwritten by each
// replay; a batch of another shape or dtype makes a new capture.
// Data-parallel (set_data_parallel): the reported loss is the mean over ranks (with batch Dice
// summed over ranks it is the loss of the global batch) and the gradients are the mean over ranks.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "model/networks.h"
#include "train/data_parallel.h"
#include "train/loss.h"

namespace umamba::train {

enum class Precision { F32, BF16, F16 };
Precision precision_from_name(const std::string& name);  // fp32, bf16, fp16
std::string precision_name(Precision p);

struct StepOptions {
  Precision precision = Precision::F32;
  double initial_lr = 1e-2, weight_decay = 3e-5, momentum = 0.99, grad_clip = 12.0;
  DiceCEOptions loss;
  std::vector<double> ds_weights{1.0};  // one per network output used
  int max_nonfinite = 50;
  bool cuda_graph = false;     // capture and replay the step (CUDA devices only)
  int graph_warmup_steps = 3;  // ordinary steps before the capture (cuDNN, cuBLAS, the allocator)
};

// One step of `optimizer` over the parameters that have gradients: torch::optim::SGD::step's
// arithmetic (weight decay, momentum with dampening, Nesterov) in multi-tensor kernels, the
// momentum buffers kept in the optimizer's state (so its save/load is unchanged).
void sgd_foreach_step(torch::optim::SGD& optimizer);

struct StepResult {
  double loss = 0, ce = 0, dice = 0;  // NaN when the loss was not finite
  bool skipped = false;
  double grad_norm = 0;  // before clipping (0 when skipped)
};

class Optimization {
 public:
  Optimization(std::shared_ptr<model::SegmentationNetwork> net, const StepOptions& options,
               torch::Device device);
  ~Optimization();

  // data [B, C, *patch]; targets one per deep-supervision output (or one). Throws Error after
  // max_nonfinite consecutive skipped steps, and on CUDA out-of-memory with advice.
  StepResult step(const torch::Tensor& data, const std::vector<torch::Tensor>& targets);

  void set_lr(double lr);
  double lr() const;
  int consecutive_nonfinite() const { return consecutive_nonfinite_; }
  void set_consecutive_nonfinite(int n) { consecutive_nonfinite_ = n; }
  double loss_scale() const { return scaler_.current_scale(); }
  // Data-parallel training: the loss values are averaged over the ranks before the non-finite
  // decision (so every rank decides alike) and the gradients all-reduced by `reducer` during
  // backward, before the check, clipping and the SGD step. nullptr: one process.
  void set_data_parallel(ProcessGroup* group, GradientReducer* reducer) {
    group_ = group;
    reducer_ = reducer;
  }
  model::SegmentationNetwork& network() { return *net_; }
  std::shared_ptr<model::SegmentationNetwork> network_ptr() { return net_; }
  torch::optim::SGD& optimizer() { return *optimizer_; }
  // CUDA graph: captures made so far (0 before the first; a new batch shape makes another).
  int graph_captures() const { return graph_captures_; }

  // Network, optimiser and scaler state.
  void save(torch::serialize::OutputArchive& archive);
  void load(torch::serialize::InputArchive& archive);

 private:
  std::shared_ptr<model::SegmentationNetwork> net_;
  StepOptions options_;
  torch::Device device_;
  std::unique_ptr<torch::optim::SGD> optimizer_;
  GradScaler scaler_;
  int consecutive_nonfinite_ = 0;
  ProcessGroup* group_ = nullptr;
  GradientReducer* reducer_ = nullptr;

  // Forward, loss and backward without waiting for the device: [loss, ce, dice, gradient norm,
  // overflow] as doubles on the device. What a CUDA graph captures.
  torch::Tensor forward_backward(const torch::Tensor& data,
                                 const std::vector<torch::Tensor>& targets);
  // The same through the graph: ordinary steps while warming up, then capture, then replays.
  torch::Tensor graphed_forward_backward(const torch::Tensor& data,
                                         const std::vector<torch::Tensor>& targets);
  void capture(const torch::Tensor& data, const std::vector<torch::Tensor>& targets);
  // Reads the values (the step's one wait), decides, clips, steps SGD, updates the scaler.
  StepResult conclude(const torch::Tensor& values);

  struct CapturedStep;
  std::unique_ptr<CapturedStep> captured_;
  int warm_steps_ = 0, graph_captures_ = 0;
};

// Autocast for the current thread (restores the previous state when destroyed).
class AutocastScope {
 public:
  AutocastScope(Precision precision, torch::DeviceType device);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  torch::DeviceType device_;
  bool previous_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
};

}  // namespace umamba::train
