// The optimisation step and its state (see step.h).
#include "train/step.h"

#include <ATen/autocast_mode.h>
#if defined(UMAMBA_TORCH_HAS_CUDA)
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#endif

#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/fault_injection.h"
#include "train/device.h"
#include "train/tensor_text.h"

namespace umamba::train {

Precision precision_from_name(const std::string& name) {
  if (name == "fp32") return Precision::F32;
  if (name == "bf16") return Precision::BF16;
  if (name == "fp16") return Precision::F16;
  fail("precision '{}': expected fp32, bf16 or fp16", name);
}

std::string precision_name(Precision p) {
  switch (p) {
    case Precision::F32:
      return "fp32";
    case Precision::BF16:
      return "bf16";
    case Precision::F16:
      return "fp16";
  }
  return "?";
}

AutocastScope::AutocastScope(Precision precision, torch::DeviceType device) : device_(device) {
  if (precision == Precision::F32) return;
  active_ = true;
  previous_ = at::autocast::is_autocast_enabled(device_);
  previous_dtype_ = at::autocast::get_autocast_dtype(device_);
  at::autocast::set_autocast_enabled(device_, true);
  at::autocast::set_autocast_dtype(device_,
                                   precision == Precision::F16 ? at::kHalf : at::kBFloat16);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(device_, previous_);
  at::autocast::set_autocast_dtype(device_, previous_dtype_);
}

Optimization::Optimization(std::shared_ptr<model::SegmentationNetwork> net,
                           const StepOptions& options, torch::Device device)
    : net_(std::move(net)),
      options_(options),
      device_(device),
      scaler_(options.precision == Precision::F16, device) {
  UMAMBA_CHECK(net_ != nullptr, "optimisation: no network");
  // "cuda" is the current device: named, for the allocator's statistics and the graph's streams.
  device_ = with_device_index(device_);
  UMAMBA_CHECK(options_.max_nonfinite >= 1, "--max-nonfinite {}: at least 1",
               options_.max_nonfinite);
  net_->to(device_);
  net_->train();
  optimizer_ = std::make_unique<torch::optim::SGD>(net_->parameters(),
                                                   torch::optim::SGDOptions(options_.initial_lr)
                                                       .momentum(options_.momentum)
                                                       .nesterov(true)
                                                       .weight_decay(options_.weight_decay));
#if defined(UMAMBA_TORCH_HAS_CUDA)
  const bool graphs_possible = device_.is_cuda();
#else
  const bool graphs_possible = false;
#endif
  UMAMBA_CHECK(!options_.cuda_graph || graphs_possible,
               "--cuda-graph on: CUDA graphs need a CUDA device (the device is {})", device_.str());
  UMAMBA_CHECK(options_.graph_warmup_steps >= 1, "CUDA graph: {} warm-up steps, at least 1",
               options_.graph_warmup_steps);
}

void Optimization::set_lr(double lr) {
  for (auto& group : optimizer_->param_groups()) {
    static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
  }
}

double Optimization::lr() const {
  return static_cast<const torch::optim::SGDOptions&>(optimizer_->param_groups().front().options())
      .lr();
}

// SGD with momentum, dampening, weight decay and Nesterov as torch::optim::SGD::step computes it,
// with multi-tensor (_foreach) kernels: a few launches for all parameters instead of about five
// per parameter tensor (LibTorch's C++ SGD has no foreach path; PyTorch's Python SGD uses one by
// default). The momentum buffers live in the optimizer's own state, so its save/load and a resume
// see exactly what torch::optim::SGD would hold.
void sgd_foreach_step(torch::optim::SGD& optimizer) {
  torch::NoGradGuard no_grad;
  for (auto& group : optimizer.param_groups()) {
    const auto& o = static_cast<const torch::optim::SGDOptions&>(group.options());
    std::vector<torch::Tensor> params, grads, old_grads, bufs;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      params.push_back(p);
      grads.push_back(p.grad());
    }
    if (params.empty()) continue;
    if (o.weight_decay() != 0) at::_foreach_add_(grads, params, o.weight_decay());
    if (o.momentum() != 0) {
      auto& state = optimizer.state();
      std::vector<torch::Tensor> all_bufs;
      for (size_t i = 0; i < params.size(); ++i) {
        auto* key = params[i].unsafeGetTensorImpl();
        auto it = state.find(key);
        if (it == state.end()) {  // first step: the buffer starts as the gradient
          auto s = std::make_unique<torch::optim::SGDParamState>();
          s->momentum_buffer(grads[i].clone().detach());
          all_bufs.push_back(s->momentum_buffer());
          state[key] = std::move(s);
        } else {
          auto& s = static_cast<torch::optim::SGDParamState&>(*it->second);
          bufs.push_back(s.momentum_buffer());
          old_grads.push_back(grads[i]);
          all_bufs.push_back(s.momentum_buffer());
        }
      }
      if (!bufs.empty()) {
        at::_foreach_mul_(bufs, o.momentum());
        at::_foreach_add_(bufs, old_grads, 1.0 - o.dampening());
      }
      if (o.nesterov()) {
        at::_foreach_add_(grads, all_bufs, o.momentum());
      } else {
        grads = all_bufs;
      }
    }
    at::_foreach_add_(params, grads, -o.lr());
  }
}

namespace {

// zero_grad(set_to_none = true) without its detach_(), which LibTorch refuses on views: with data
// parallelism the gradients are views of the all-reduce buckets (data_parallel.h).
void drop_gradients(torch::optim::Optimizer& optimizer) {
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params()) p.mutable_grad().reset();
}

// What the device held when a step ran out of memory, for the message: the memory in use and the
// step's peak so far against the card's total (CUDA); empty elsewhere.
std::string device_memory_text(const torch::Device& device) {
  if (!device.is_cuda()) return {};
  const DeviceMemory m = device_memory(device);
  return fmt::format(" ({:.1f} GiB in use, {:.1f} GiB at the peak, of {:.1f} GiB on {})",
                     m.in_use_gb, m.peak_gb, m.total_gb, device.str());
}

}  // namespace

// The captured step: the graph, its input tensors (the batch is copied into them before each
// replay) and its output, all at fixed device addresses.
struct Optimization::CapturedStep {
#if defined(UMAMBA_TORCH_HAS_CUDA)
  at::cuda::CUDAGraph graph;
#endif
  torch::Tensor data;                  // [B, C, *patch]
  std::vector<torch::Tensor> targets;  // one per deep-supervision output
  torch::Tensor values;                // forward_backward's result

  bool fits(const torch::Tensor& d, const std::vector<torch::Tensor>& t) const {
    const auto same = [](const torch::Tensor& a, const torch::Tensor& b) {
      return a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() &&
             a.device() == b.device();
    };
    if (!same(data, d) || targets.size() != t.size()) return false;
    for (size_t i = 0; i < t.size(); ++i)
      if (!same(targets[i], t[i])) return false;
    return true;
  }
};

Optimization::~Optimization() = default;

torch::Tensor Optimization::graphed_forward_backward(const torch::Tensor& data,
                                                     const std::vector<torch::Tensor>& targets) {
  if (captured_ && !captured_->fits(data, targets)) {
    // Another batch shape: ordinary steps again (its cuDNN plans are new), then a new capture.
    captured_.reset();
    warm_steps_ = 0;
  }
  if (!captured_) {
    if (warm_steps_ < options_.graph_warmup_steps) {
      ++warm_steps_;
      drop_gradients(*optimizer_);
      return forward_backward(data, targets);
    }
    capture(data, targets);
  }
  captured_->data.copy_(data);
  for (size_t i = 0; i < targets.size(); ++i) captured_->targets[i].copy_(targets[i]);
#if defined(UMAMBA_TORCH_HAS_CUDA)
  captured_->graph.replay();
#endif
  return captured_->values;
}

void Optimization::capture(const torch::Tensor& data, const std::vector<torch::Tensor>& targets) {
#if defined(UMAMBA_TORCH_HAS_CUDA)
  auto c = std::make_unique<CapturedStep>();
  c->data = data.clone();
  for (const auto& t : targets) c->targets.push_back(t.clone());
  // No gradients going in: autograd then allocates them inside the capture (the first gradient of
  // a parameter is taken as it is), so they stay at fixed addresses of the graph's pool and each
  // replay overwrites them instead of adding to the last step's.
  drop_gradients(*optimizer_);
  const c10::DeviceIndex index = device_.index();
  const at::cuda::CUDAStream current = at::cuda::getCurrentCUDAStream(index);
  // Blocks the warm-up steps left cached go back to the driver: the capture allocates its own
  // pool, and the caching allocator cannot free blocks while a capture is under way.
  current.synchronize();
  c10::cuda::CUDACachingAllocator::emptyCache();
  // Captures run on a stream of their own (never the default stream); the replays run on the
  // caller's.
  const at::cuda::CUDAStream side = at::cuda::getStreamFromPool(false, index);
  at::cuda::CUDAEvent ready;
  ready.record(current);
  ready.block(side);
  // Autocast's cache of weight casts would hand the graph tensors cast before the capture.
  const bool autocast_cache = at::autocast::is_autocast_cache_enabled();
  at::autocast::set_autocast_cache_enabled(false);
  std::string failure;
  {
    c10::cuda::CUDAStreamGuard on_side(side);
    try {
      // Thread-local mode: the batch threads keep allocating and copying while this thread
      // captures.
      c->graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
      try {
        c->values = forward_backward(c->data, c->targets);
      } catch (...) {
        try {
          c->graph.capture_end();
        } catch (...) {
        }
        throw;
      }
      c->graph.capture_end();
    } catch (const std::exception& e) {
      failure = e.what();
    }
  }
  at::autocast::set_autocast_cache_enabled(autocast_cache);
  if (!failure.empty()) {
    const size_t nl = failure.find('\n');
    if (nl != std::string::npos) failure.resize(nl);
    fail("capturing the training step in a CUDA graph failed{}: {}. Rerun with --cuda-graph off",
         device_memory_text(device_), failure);
  }
  at::cuda::CUDAEvent captured;
  captured.record(side);
  captured.block(current);
  captured_ = std::move(c);
  ++graph_captures_;
#else
  (void)data;
  (void)targets;
  fail("CUDA graphs: this build's LibTorch has no CUDA");
#endif
}

StepResult Optimization::step(const torch::Tensor& data,
                              const std::vector<torch::Tensor>& targets) {
  // Gradients are needed whatever the caller's grad mode (a NoGradGuard around validation or
  // inference in the same thread must not turn steps into no-ops).
  torch::AutoGradMode grad_mode(true);
  try {
    // Test hook (core/fault_injection.h): "alloc:N@train_step" makes the N-th step run out of
    // memory as LibTorch reports it.
    if (fault::should_fail(fault::Kind::Alloc, "train_step")) {
      TORCH_CHECK_WITH(OutOfMemoryError, false,
                       "injected fault (UMAMBA_FAULT_INJECT alloc@train_step): out of memory on ",
                       device_.str());
    }
    torch::Tensor values;
    if (options_.cuda_graph) {
      values = graphed_forward_backward(data, targets);
    } else {
      drop_gradients(*optimizer_);
      values = forward_backward(data, targets);
    }
    return conclude(values);
  } catch (const c10::OutOfMemoryError& e) {
    if (!captured_) drop_gradients(*optimizer_);
    std::string what = e.what();
    const size_t nl = what.find('\n');
    if (nl != std::string::npos) what.resize(nl);
    fail(
        "out of memory in a training step with a batch of {} patches of {} ({}){}: {}. Lower "
        "--batch-size or --patch-size (memory grows about linearly with both), or use "
        "--precision bf16/fp16",
        data.size(0), shape_text(data.sizes().slice(2)), precision_name(options_.precision),
        device_memory_text(device_), what);
  }
}

torch::Tensor Optimization::forward_backward(const torch::Tensor& data,
                                             const std::vector<torch::Tensor>& targets) {
  LossTerms loss;
  {
    AutocastScope autocast(options_.precision, device_.type());
    std::vector<torch::Tensor> outputs = net_->forward(data);
    UMAMBA_CHECK(outputs.size() >= targets.size(),
                 "training step: the network returned {} outputs for {} targets", outputs.size(),
                 targets.size());
    outputs.resize(targets.size());
    std::vector<double> weights = options_.ds_weights;
    UMAMBA_CHECK(weights.size() == targets.size(),
                 "training step: {} deep-supervision weights for {} targets", weights.size(),
                 targets.size());
    loss = deep_supervision_loss(outputs, targets, weights, options_.loss);
  }
  torch::Tensor stacked =
      torch::stack({loss.total.detach(), loss.ce.detach(), loss.dice.detach()}).to(torch::kFloat);
  if (group_ != nullptr) {
    group_->all_reduce_sum(stacked);  // every rank then takes the same skip decision
    stacked = stacked / static_cast<double>(group_->world_size());
  }
  // One wait for the device per step (in conclude): the loss terms, the overflow flag and the
  // gradient norm come back together after the backward pass (a non-finite loss gives
  // non-finite gradients, so it is caught there too). Waiting before the backward, or once per
  // check, left the GPU idle while the host launched the next phase.
  if (reducer_ != nullptr) reducer_->prepare();
  scaler_.scale(loss.total).backward();
  if (reducer_ != nullptr) reducer_->finish();
  std::vector<torch::Tensor> grads;
  for (const auto& p : net_->parameters())
    if (p.grad().defined()) grads.push_back(p.grad());
  const torch::Tensor found_inf = scaler_.unscale(grads);
  // Total 2-norm of the gradients (as clip_grad_norm_), in fp32 on the device.
  const torch::Tensor norm =
      grads.empty()
          ? torch::zeros({1}, stacked.options())
          : torch::stack(at::_foreach_norm(grads, 2)).to(torch::kFloat).norm(2).reshape(1);
  return torch::cat({stacked, norm, found_inf.reshape(1).to(torch::kFloat)}).to(torch::kDouble);
}

StepResult Optimization::conclude(const torch::Tensor& values) {
  StepResult r;
  const torch::Tensor host = values.cpu();
  const double* v = host.data_ptr<double>();
  r.loss = v[0];
  r.ce = v[1];
  r.dice = v[2];
  const double grad_norm = v[3];
  const bool bad = !std::isfinite(r.loss) || v[4] != 0.0 || !std::isfinite(grad_norm);
  if (!bad) {
    // Clipping at options_.grad_clip as torch::nn::utils::clip_grad_norm_ (coefficient
    // max / (norm + 1e-6), applied when below 1).
    r.grad_norm = grad_norm;
    const double coef = options_.grad_clip / (grad_norm + 1e-6);
    if (coef < 1.0) {
      std::vector<torch::Tensor> grads;
      for (const auto& p : net_->parameters())
        if (p.grad().defined()) grads.push_back(p.grad());
      torch::NoGradGuard no_grad;
      at::_foreach_mul_(grads, coef);
    }
    sgd_foreach_step(*optimizer_);
  }
  scaler_.update(bad);
  if (bad) {
    // The captured step keeps its gradients (the next replay overwrites them); an ordinary step
    // frees them now.
    if (!captured_) drop_gradients(*optimizer_);
    r.skipped = true;
    r.grad_norm = 0;
    if (!std::isfinite(r.loss)) r.loss = r.ce = r.dice = std::numeric_limits<double>::quiet_NaN();
    ++consecutive_nonfinite_;
    if (consecutive_nonfinite_ >= options_.max_nonfinite) {
      fail(
          "training stopped: {} steps in a row had a non-finite loss or gradient (last loss {}, "
          "precision {}, loss scale {}). Mixed precision is known to produce NaN in U-Mamba's "
          "Mamba layers (the official U-Mamba_Enc); try --precision fp32, a lower "
          "--learning-rate, or check the images for NaN/Inf values (--max-nonfinite sets the "
          "limit)",
          consecutive_nonfinite_, r.loss, precision_name(options_.precision),
          scaler_.current_scale());
    }
  } else {
    consecutive_nonfinite_ = 0;
  }
  return r;
}

void Optimization::save(torch::serialize::OutputArchive& archive) {
  torch::serialize::OutputArchive net_archive, opt_archive;
  net_->save(net_archive);
  optimizer_->save(opt_archive);
  archive.write("network", net_archive);
  archive.write("optimizer", opt_archive);
  const auto s = scaler_.state();
  archive.write("scaler_scale", s[0]);
  archive.write("scaler_growth_tracker", s[1]);
}

void Optimization::load(torch::serialize::InputArchive& archive) {
  torch::serialize::InputArchive net_archive, opt_archive;
  archive.read("network", net_archive);
  archive.read("optimizer", opt_archive);
  net_->load(net_archive);
  net_->to(device_);
  optimizer_->load(opt_archive);
  torch::Tensor scale, tracker;
  archive.read("scaler_scale", scale);
  archive.read("scaler_growth_tracker", tracker);
  scaler_.load_state({scale.to(device_), tracker.to(device_)});
}

}  // namespace umamba::train
