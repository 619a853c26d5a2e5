// Loss, deep supervision, schedule and loss scaling (see loss.h).
#include "train/loss.h"

#include <cmath>

#include "core/error.h"
#include "train/tensor_text.h"

namespace umamba::train {

namespace F = torch::nn::functional;

LossTerms dice_ce_loss(const torch::Tensor& logits, const torch::Tensor& target,
                       const DiceCEOptions& options) {
  UMAMBA_CHECK(logits.dim() >= 3 && target.dim() == logits.dim(),
               "loss: logits {} and target {} must be [B, K, *S] and [B, 1, *S]",
               shape_text(logits.sizes()), shape_text(target.sizes()));
  UMAMBA_CHECK(target.size(1) == 1, "loss: target must have one channel, has {}", target.size(1));
  const auto x = logits.to(torch::kFloat);
  const auto t = target.select(1, 0).to(torch::kLong);
  const int64_t K = x.size(1);
  LossTerms out;
  out.ce = F::cross_entropy(x, t);

  std::vector<int64_t> axes;
  for (int64_t d = 2; d < x.dim(); ++d) axes.push_back(d);
  auto probs = torch::softmax(x, 1);
  torch::Tensor onehot;
  {
    torch::NoGradGuard no_grad;
    onehot = torch::zeros_like(probs).scatter_(1, t.unsqueeze(1), 1.0);
  }
  if (!options.do_bg) {
    probs = probs.narrow(1, 1, K - 1);
    onehot = onehot.narrow(1, 1, K - 1);
  }
  auto intersect = (probs * onehot).sum(axes);
  auto sum_pred = probs.sum(axes);
  auto sum_gt = onehot.sum(axes);
  if (options.batch_dice) {
    intersect = intersect.sum(0);
    sum_pred = sum_pred.sum(0);
    sum_gt = sum_gt.sum(0);
    if (options.reduce_batch_stats) {
      const auto all = options.reduce_batch_stats(torch::stack({intersect, sum_pred, sum_gt}));
      intersect = all[0];
      sum_pred = all[1];
      sum_gt = all[2];
    }
  }
  const auto dc =
      (2 * intersect + options.smooth) / (sum_gt + sum_pred + options.smooth).clamp_min(1e-8);
  out.dice = -dc.mean();
  out.total = options.weight_ce * out.ce + options.weight_dice * out.dice;
  return out;
}

std::vector<double> deep_supervision_weights(int n) {
  UMAMBA_CHECK(n >= 1, "deep supervision: {} outputs", n);
  if (n == 1) return {1.0};
  std::vector<double> w(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) w[static_cast<size_t>(i)] = 1.0 / std::pow(2.0, i);
  w.back() = 0.0;
  double sum = 0;
  for (double v : w) sum += v;
  for (double& v : w) v /= sum;
  return w;
}

std::vector<std::vector<int64_t>> deep_supervision_scales(
    const std::vector<std::vector<int>>& strides) {
  UMAMBA_CHECK(!strides.empty(), "deep supervision: no pooling strides");
  std::vector<std::vector<int64_t>> out;
  std::vector<int64_t> cum(strides[0].size(), 1);
  for (size_t s = 0; s + 1 < strides.size(); ++s) {
    UMAMBA_CHECK(strides[s].size() == cum.size(),
                 "deep supervision: stage {} has {} strides, {} expected", s, strides[s].size(),
                 cum.size());
    for (size_t a = 0; a < cum.size(); ++a) cum[a] *= strides[s][a];
    out.push_back(cum);
  }
  return out;
}

LossTerms deep_supervision_loss(const std::vector<torch::Tensor>& outputs,
                                const std::vector<torch::Tensor>& targets,
                                const std::vector<double>& weights, const DiceCEOptions& options) {
  UMAMBA_CHECK(outputs.size() == targets.size() && outputs.size() == weights.size(),
               "deep supervision: {} outputs, {} targets, {} weights", outputs.size(),
               targets.size(), weights.size());
  LossTerms sum;
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (weights[i] == 0.0) continue;
    LossTerms t = dice_ce_loss(outputs[i], targets[i], options);
    if (!sum.total.defined()) {
      sum.total = weights[i] * t.total;
      sum.ce = weights[i] * t.ce;
      sum.dice = weights[i] * t.dice;
    } else {
      sum.total = sum.total + weights[i] * t.total;
      sum.ce = sum.ce + weights[i] * t.ce;
      sum.dice = sum.dice + weights[i] * t.dice;
    }
  }
  UMAMBA_CHECK(sum.total.defined(), "deep supervision: every weight is 0");
  return sum;
}

double poly_lr(double initial_lr, int64_t epoch, int64_t epochs, double exponent) {
  UMAMBA_CHECK(epochs > 0, "poly schedule: {} epochs", epochs);
  const double f = 1.0 - static_cast<double>(epoch) / static_cast<double>(epochs);
  return initial_lr * std::pow(std::max(f, 0.0), exponent);
}

GradScaler::GradScaler(bool enabled, torch::Device device, double init_scale, double growth_factor,
                       double backoff_factor, int64_t growth_interval)
    : enabled_(enabled),
      device_(device),
      growth_factor_(growth_factor),
      backoff_factor_(backoff_factor),
      growth_interval_(growth_interval) {
  const auto f = torch::TensorOptions().dtype(torch::kFloat).device(device);
  scale_ = torch::full({1}, enabled ? init_scale : 1.0, f);
  growth_tracker_ = torch::zeros({1}, f.dtype(torch::kInt));
  found_inf_ = torch::zeros({1}, f);
}

torch::Tensor GradScaler::scale(const torch::Tensor& loss) const {
  return enabled_ ? loss * scale_.to(loss.dtype()) : loss;
}

bool GradScaler::unscale_and_check(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  if (grads.empty()) return false;
  return unscale(grads).item<float>() != 0.0f;
}

torch::Tensor GradScaler::unscale(const std::vector<torch::Tensor>& grads) {
  found_inf_.zero_();
  if (grads.empty()) return found_inf_;
  // Disabled: the same check with 1/scale = 1 (gradients unchanged).
  const auto inv = enabled_ ? scale_.to(torch::kDouble).reciprocal().to(torch::kFloat)
                            : torch::ones_like(scale_);
  at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf_, inv);
  return found_inf_;
}

void GradScaler::update(bool found_inf) {
  if (!enabled_) return;
  found_inf_.fill_(found_inf ? 1.0 : 0.0);
  at::_amp_update_scale_(scale_, growth_tracker_, found_inf_, growth_factor_, backoff_factor_,
                         growth_interval_);
}

double GradScaler::current_scale() const {
  return scale_.item<double>();
}

std::vector<torch::Tensor> GradScaler::state() const {
  return {scale_.cpu().clone(), growth_tracker_.cpu().clone()};
}

void GradScaler::load_state(const std::vector<torch::Tensor>& state) {
  UMAMBA_CHECK(state.size() == 2, "grad scaler state has {} tensors, 2 expected", state.size());
  scale_.copy_(state[0]);
  growth_tracker_.copy_(state[1]);
}

}  // namespace umamba::train
