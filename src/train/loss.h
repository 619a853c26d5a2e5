// nnU-Net v2's training objective and schedule (reference/umamba-mamba-nnunet.md §4.6):
//
//  * DiceCELoss: cross-entropy (mean over voxels) + soft Dice as MemoryEfficientSoftDiceLoss
//    computes it: softmax, background channel dropped (do_bg = False), per class
//    dc = (2·I + smooth) / max(G + P + smooth, 1e-8) with I = Σ p·y, P = Σ p, G = Σ y over the
//    spatial axes, and over the batch too when batch_dice; loss_dice = −mean(dc) (negative Dice,
//    not 1 − Dice); total = CE + loss_dice. smooth = 1e-5.
//  * Deep supervision: output i (resolution of encoder stage i) against the labels downsampled by
//    the cumulative pooling up to stage i; weights 1/2^i, the last set to 0, normalised to sum 1.
//  * PolyLR: lr = lr0 · (1 − epoch / epochs)^0.9, set at the start of every epoch.
//  * GradScaler for fp16: loss × scale before backward, gradients unscaled and checked for
//    inf/NaN (torch's _amp_foreach_non_finite_check_and_unscale_), the step skipped when any is
//    found, the scale updated as torch.cuda.amp.GradScaler (×0.5 on overflow, ×2 after 2000 clean
//    steps; initial 2^16).
// Limits: no ignore label and no region-based (BCE) training.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace umamba::train {

struct DiceCEOptions {
  bool batch_dice = true;
  double smooth = 1e-5;
  bool do_bg = false;
  double weight_ce = 1.0, weight_dice = 1.0;
  // Data-parallel training: applied to the stacked batch statistics [3, K'] (I, P, G summed over
  // the local batch) when batch_dice, e.g. a sum over ranks with gradient (data_parallel.h), so
  // that every rank's Dice is the Dice of the global batch. Empty: the local batch only.
  std::function<torch::Tensor(const torch::Tensor&)> reduce_batch_stats;
};

struct LossTerms {
  torch::Tensor total, ce, dice;  // dice = −mean(dc)
};

// logits [B, K, *S] (any float dtype; computed in float32), target [B, 1, *S] class indices
// (any dtype).
LossTerms dice_ce_loss(const torch::Tensor& logits, const torch::Tensor& target,
                       const DiceCEOptions& options = {});

// nnU-Net's deep-supervision weights for n outputs: 1/2^i, last 0, normalised (n = 1: {1}).
std::vector<double> deep_supervision_weights(int n);

// Per-output scales (divisors of the patch, per axis) from the plans' pool_op_kernel_sizes:
// cumulative products of the strides of stages 0..n−2 (nnU-Net's 1/cumprod(pool)[:-1]).
std::vector<std::vector<int64_t>> deep_supervision_scales(
    const std::vector<std::vector<int>>& strides);

// Σ_i w_i · loss(outputs[i], targets[i]) over the outputs with w_i ≠ 0.
LossTerms deep_supervision_loss(const std::vector<torch::Tensor>& outputs,
                                const std::vector<torch::Tensor>& targets,
                                const std::vector<double>& weights, const DiceCEOptions& options);

// PolyLRScheduler.step(epoch): lr0 · (1 − epoch / epochs)^exponent.
double poly_lr(double initial_lr, int64_t epoch, int64_t epochs, double exponent = 0.9);

// Loss scaling for fp16 training (torch.cuda.amp.GradScaler's defaults and update rule).
class GradScaler {
 public:
  GradScaler(bool enabled, torch::Device device, double init_scale = 65536.0,
             double growth_factor = 2.0, double backoff_factor = 0.5,
             int64_t growth_interval = 2000);
  bool enabled() const { return enabled_; }
  torch::Tensor scale(const torch::Tensor& loss) const;  // loss × scale (loss when disabled)
  // Divides the gradients by the scale in place; returns true when one is inf or NaN. When
  // disabled, only checks them.
  bool unscale_and_check(const std::vector<torch::Tensor>& params);
  // The same on gradient tensors without waiting for the device: returns the overflow flag, a
  // one-element float tensor on the device (non-zero: an inf or NaN was found).
  torch::Tensor unscale(const std::vector<torch::Tensor>& grads);
  // After the step decision: halves the scale on overflow, doubles it after growth_interval
  // finite steps in a row.
  void update(bool found_inf);
  double current_scale() const;
  // Checkpoint state: {scale, growth_tracker}.
  std::vector<torch::Tensor> state() const;
  void load_state(const std::vector<torch::Tensor>& state);

 private:
  bool enabled_;
  torch::Device device_;
  double growth_factor_, backoff_factor_;
  int64_t growth_interval_;
  torch::Tensor scale_, growth_tracker_, found_inf_;
};

}  // namespace umamba::train
