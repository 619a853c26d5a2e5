// Process group, bucketed gradient all-reduce, all-reduce with gradient (see data_parallel.h).
//
// ProcessGroupGloo.hpp includes Gloo's headers, which LibTorch's PyPI wheel does not ship; the
// folder c10d_shim/ declares the few Gloo names it mentions (it holds Gloo objects through
// pointers only, and nothing here touches them).
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "train/data_parallel.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"
#include "train/data_parallel_backend.h"

namespace umamba::train {

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
};

namespace {

class WorkPending final : public ProcessGroup::Pending {
 public:
  explicit WorkPending(c10::intrusive_ptr<c10d::Work> work) : work_(std::move(work)) {}
  void wait() override {
    if (!work_) return;
    try {
      work_->wait();
    } catch (const c10::Error& e) {
      fail(
          "a collective of the process group failed (another rank stopped or the network broke): "
          "{}",
          std::string(e.what_without_backtrace()));
    }
    work_.reset();
  }

 private:
  c10::intrusive_ptr<c10d::Work> work_;
};

}  // namespace

ProcessGroup::ProcessGroup(const Rendezvous& r, const std::string& backend, torch::Device device,
                           std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>()),
      rank_(r.rank),
      world_(r.world_size),
      backend_(backend),
      device_(device) {
  UMAMBA_CHECK(backend == "gloo" || backend == "nccl",
               "process group backend '{}': expected nccl or gloo", backend);
  UMAMBA_CHECK(backend != "nccl" || device.is_cuda(),
               "--dist-backend nccl needs CUDA devices (the device is {}); use gloo on the CPU",
               device.str());
  UMAMBA_CHECK(backend != "gloo" || !device.is_cuda(),
               "--dist-backend gloo is set up here for CPU training only (the device is {}); use "
               "nccl on GPUs",
               device.str());
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(r.master_port);
  so.isServer = r.rank == 0;
  so.numWorkers = static_cast<std::size_t>(r.world_size);
  so.waitWorkers = true;
  so.timeout = timeout;
  try {
    impl_->store = c10::make_intrusive<c10d::TCPStore>(r.master_addr, so);
  } catch (const c10::Error& e) {
    fail(
        "rank {} of {}: the rendezvous at {}:{} failed ({}): {}. Check that rank 0 runs, that "
        "the address and port are reachable from every node and that the port is free",
        r.rank, r.world_size, r.master_addr, r.master_port, r.source,
        std::string(e.what_without_backtrace()));
  }
  try {
    if (backend == "gloo") {
      auto options = c10d::ProcessGroupGloo::Options::create_default(timeout);
      impl_->backend =
          c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, r.rank, r.world_size, options);
    } else {
      impl_->backend =
          detail::make_nccl_backend(impl_->store, r.rank, r.world_size, device.index(), timeout);
    }
  } catch (const c10::Error& e) {
    fail("rank {} of {}: creating the {} process group failed: {}", r.rank, r.world_size, backend,
         std::string(e.what_without_backtrace()));
  }
}

ProcessGroup::~ProcessGroup() {
  // NCCL: a normal shutdown of the communicators (a no-op for Gloo).
  if (impl_ && impl_->backend) {
    try {
      impl_->backend->shutdown();
    } catch (...) {
    }
  }
}

std::unique_ptr<ProcessGroup::Pending> ProcessGroup::all_reduce_sum_async(torch::Tensor& tensor) {
  std::vector<at::Tensor> v{tensor};
  c10d::AllreduceOptions opts;
  opts.reduceOp = c10d::ReduceOp::SUM;
  try {
    return std::make_unique<WorkPending>(impl_->backend->allreduce(v, opts));
  } catch (const c10::Error& e) {
    fail("all-reduce of {} values failed: {}", tensor.numel(),
         std::string(e.what_without_backtrace()));
  }
}

void ProcessGroup::all_reduce_sum(torch::Tensor& tensor) {
  all_reduce_sum_async(tensor)->wait();
}

void ProcessGroup::broadcast(torch::Tensor& tensor, int root) {
  std::vector<at::Tensor> v{tensor};
  c10d::BroadcastOptions opts;
  opts.rootRank = root;
  try {
    WorkPending(impl_->backend->broadcast(v, opts)).wait();
  } catch (const c10::Error& e) {
    fail("broadcast of {} values failed: {}", tensor.numel(),
         std::string(e.what_without_backtrace()));
  }
}

void ProcessGroup::barrier() {
  (void)all_true(true);
}

bool ProcessGroup::all_true(bool ok) {
  torch::Tensor t = torch::full({1}, ok ? 0.0f : 1.0f, torch::TensorOptions().device(device_));
  all_reduce_sum(t);
  return t.item<float>() == 0.0f;  // .item() also waits for a GPU collective
}

std::string ProcessGroup::broadcast_bytes(const std::string& bytes, int root) {
  const auto i64 = torch::TensorOptions().dtype(torch::kLong).device(device_);
  torch::Tensor n = torch::full({1}, static_cast<int64_t>(bytes.size()), i64);
  broadcast(n, root);
  const int64_t size = n.item<int64_t>();
  if (size == 0) return {};
  torch::Tensor buf;
  if (rank_ == root) {
    buf = torch::from_blob(const_cast<char*>(bytes.data()), {size}, torch::kUInt8)
              .to(device_, /*non_blocking=*/false, /*copy=*/true);
  } else {
    buf = torch::empty({size}, torch::TensorOptions().dtype(torch::kUInt8).device(device_));
  }
  broadcast(buf, root);
  const torch::Tensor cpu = buf.cpu().contiguous();
  return std::string(reinterpret_cast<const char*>(cpu.data_ptr<uint8_t>()),
                     static_cast<size_t>(size));
}

void broadcast_module_state(ProcessGroup& group, const std::vector<torch::Tensor>& parameters,
                            const std::vector<torch::Tensor>& buffers) {
  torch::NoGradGuard no_grad;
  // Parameters of one dtype travel as one flat tensor; the rest one by one.
  std::vector<torch::Tensor> same, others;
  for (const auto& p : parameters) {
    (p.scalar_type() == parameters.front().scalar_type() ? same : others).push_back(p);
  }
  for (const auto& b : buffers) others.push_back(b);
  if (!same.empty()) {
    std::vector<torch::Tensor> flat_parts;
    for (const auto& p : same) flat_parts.push_back(p.detach().reshape(-1));
    torch::Tensor flat = torch::cat(flat_parts).to(group.device());
    group.broadcast(flat, 0);
    int64_t offset = 0;
    for (const auto& p : same) {
      const int64_t n = p.numel();
      p.detach().copy_(flat.narrow(0, offset, n).view_as(p));
      offset += n;
    }
  }
  for (const auto& t : others) {
    torch::Tensor c = t.detach().contiguous().to(group.device(), false, true);
    group.broadcast(c, 0);
    t.detach().copy_(c);
  }
}

namespace {

std::vector<size_t> reverse_indices(size_t n) {
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = n - 1 - i;
  return order;
}

}  // namespace

std::vector<std::vector<size_t>> assign_buckets(const std::vector<int64_t>& parameter_bytes,
                                                int64_t bucket_bytes) {
  return assign_buckets(parameter_bytes, reverse_indices(parameter_bytes.size()), bucket_bytes);
}

std::vector<std::vector<size_t>> assign_buckets(const std::vector<int64_t>& parameter_bytes,
                                                const std::vector<size_t>& order,
                                                int64_t bucket_bytes) {
  UMAMBA_CHECK(bucket_bytes > 0, "gradient buckets of {} bytes", bucket_bytes);
  UMAMBA_CHECK(order.size() == parameter_bytes.size(),
               "gradient buckets: an order of {} indices for {} parameters", order.size(),
               parameter_bytes.size());
  std::vector<std::vector<size_t>> buckets;
  std::vector<size_t> current;
  int64_t filled = 0;
  for (size_t k : order) {
    UMAMBA_CHECK(k < parameter_bytes.size(), "gradient buckets: parameter index {} of {}", k,
                 parameter_bytes.size());
    current.push_back(k);
    filled += parameter_bytes[k];
    if (filled >= bucket_bytes) {
      buckets.push_back(std::move(current));
      current.clear();
      filled = 0;
    }
  }
  if (!current.empty()) buckets.push_back(std::move(current));
  return buckets;
}

BucketOrder parse_bucket_order(const std::string& text) {
  if (text == "registration") return BucketOrder::Registration;
  if (text == "observed") return BucketOrder::Observed;
  fail("gradient bucket order '{}': expected registration or observed", text);
}

GradientReducer::GradientReducer(std::vector<torch::Tensor> parameters, ProcessGroup& group,
                                 int64_t bucket_bytes, BucketOrder order)
    : params_(std::move(parameters)), group_(group), bucket_bytes_(bucket_bytes), order_(order) {
  UMAMBA_CHECK(!params_.empty(), "gradient reducer: no parameters");
  for (const auto& p : params_) {
    UMAMBA_CHECK(
        p.scalar_type() == params_.front().scalar_type() && p.device() == params_.front().device(),
        "gradient reducer: parameters must share one dtype and device");
  }
  lay_out(reverse_indices(params_.size()));
  seen_.assign(params_.size(), 0);
  unused_.assign(params_.size(), 0);
  for (size_t k = 0; k < params_.size(); ++k) {
    const unsigned handle =
        params_[k].register_hook([this, k](const torch::Tensor& grad) { on_gradient(k, grad); });
    hooks_.emplace_back(k, handle);
  }
}

void GradientReducer::lay_out(const std::vector<size_t>& order) {
  std::vector<int64_t> bytes;
  for (const auto& p : params_) bytes.push_back(p.numel() * static_cast<int64_t>(p.element_size()));
  buckets_ = assign_buckets(bytes, order, bucket_bytes_);
  bucket_of_.assign(params_.size(), 0);
  offset_of_.assign(params_.size(), 0);
  flat_.clear();
  for (size_t b = 0; b < buckets_.size(); ++b) {
    int64_t n = 0;
    for (size_t k : buckets_[b]) {
      bucket_of_[k] = b;
      offset_of_[k] = static_cast<size_t>(n);
      n += params_[k].numel();
    }
    flat_.push_back(torch::zeros({n}, params_.front().options().requires_grad(false)));
  }
  views_.assign(params_.size(), torch::Tensor());
  for (size_t k = 0; k < params_.size(); ++k)
    views_[k] = flat_[bucket_of_[k]]
                    .narrow(0, static_cast<int64_t>(offset_of_[k]), params_[k].numel())
                    .view_as(params_[k]);
  pending_count_.assign(buckets_.size(), 0);
}

GradientReducer::~GradientReducer() {
  for (const auto& [k, handle] : hooks_) {
    try {
      params_[k].remove_hook(handle);
    } catch (...) {
    }
  }
}

void GradientReducer::prepare() {
  std::lock_guard<std::mutex> lock(mutex_);
  armed_ = true;
  next_launch_ = 0;
  launched_in_backward_ = 0;
  work_.clear();
  std::fill(seen_.begin(), seen_.end(), 0);
  for (size_t b = 0; b < buckets_.size(); ++b) {
    int64_t missing = 0;
    for (size_t k : buckets_[b]) {
      if (!first_step_ && unused_[k]) {
        views_[k].zero_();
      } else {
        ++missing;
      }
    }
    pending_count_[b] = missing;
  }
  launch_ready_locked();
}

void GradientReducer::on_gradient(size_t k, const torch::Tensor& grad) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!armed_) return;  // a backward outside a training step
  const size_t b = bucket_of_[k];
  UMAMBA_CHECK(!seen_[k], "gradient reducer: parameter {} received two gradients in one backward",
               k);
  const bool premarked = !first_step_ && unused_[k];
  UMAMBA_CHECK(!(premarked && b < next_launch_),
               "gradient reducer: parameter {} had no gradient in the previous step but has one "
               "now, after its bucket was sent; the set of trained parameters must not change",
               k);
  seen_[k] = 1;
  sent_before_last_ = static_cast<int64_t>(next_launch_);
  if (first_step_) arrival_.push_back(k);
  views_[k].copy_(grad);
  if (!premarked) {
    --pending_count_[b];
    launch_ready_locked();
    launched_in_backward_ = static_cast<int64_t>(next_launch_);
  }
}

void GradientReducer::launch_ready_locked() {
  const double inv = 1.0 / static_cast<double>(group_.world_size());
  while (next_launch_ < buckets_.size() && pending_count_[next_launch_] == 0) {
    torch::Tensor& flat = flat_[next_launch_];
    flat.mul_(inv);
    work_.push_back(group_.all_reduce_sum_async(flat));
    ++next_launch_;
  }
}

void GradientReducer::finish() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    UMAMBA_CHECK(armed_, "gradient reducer: finish() without prepare()");
    for (size_t k = 0; k < params_.size(); ++k) {
      if (seen_[k]) continue;
      const size_t b = bucket_of_[k];
      const bool premarked = !first_step_ && unused_[k];
      if (!premarked) {
        views_[k].zero_();
        --pending_count_[b];
      }
    }
    launch_ready_locked();
    UMAMBA_CHECK(next_launch_ == buckets_.size(), "gradient reducer: {} of {} buckets sent",
                 next_launch_, buckets_.size());
    armed_ = false;
  }
  for (auto& w : work_) w->wait();
  work_.clear();
  // The averaged gradients become the parameters' .grad as views of the buckets, no copy back (as
  // PyTorch DDP's gradient_as_bucket_view; on two H200 it changed no step time measurably,
  // docs/train.md). The next step starts from no gradients (they are reset, not detached), so
  // autograd allocates fresh ones and the hooks copy them in again.
  for (size_t k = 0; k < params_.size(); ++k) {
    unused_[k] = seen_[k] ? 0 : 1;
    if (!seen_[k]) continue;  // no gradient anywhere: it keeps none, as in one process
    params_[k].mutable_grad() = views_[k];
  }
  if (first_step_ && order_ == BucketOrder::Observed) rebuild_in_observed_order();
  arrival_.clear();
  first_step_ = false;
}

void GradientReducer::rebuild_in_observed_order() {
  // Rank 0's arrival order, then the parameters without a gradient (reverse registration order),
  // sent to every rank: all must cut the same buckets and send them in the same order.
  std::vector<size_t> order = arrival_;
  std::vector<char> placed(params_.size(), 0);
  for (size_t k : order) placed[k] = 1;
  for (size_t k = params_.size(); k-- > 0;)
    if (!placed[k]) order.push_back(k);
  torch::Tensor t = torch::empty({static_cast<int64_t>(order.size())}, torch::kLong);
  auto* w = t.data_ptr<int64_t>();
  for (size_t i = 0; i < order.size(); ++i) w[i] = static_cast<int64_t>(order[i]);
  t = t.to(group_.device());
  group_.broadcast(t, 0);
  t = t.cpu();
  const auto* v = t.data_ptr<int64_t>();
  std::vector<size_t> agreed(order.size());
  for (size_t i = 0; i < agreed.size(); ++i) agreed[i] = static_cast<size_t>(v[i]);
  std::vector<size_t> check = agreed;
  std::sort(check.begin(), check.end());
  for (size_t i = 0; i < check.size(); ++i)
    UMAMBA_CHECK(check[i] == i, "gradient reducer: rank 0's bucket order is not a permutation");
  lay_out(agreed);
}

namespace {

struct AllReduceSum : public torch::autograd::Function<AllReduceSum> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               int64_t group) {
    ctx->saved_data["group"] = group;
    torch::Tensor y = x.detach().contiguous().clone();
    reinterpret_cast<ProcessGroup*>(group)->all_reduce_sum(y);
    return y;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* group = reinterpret_cast<ProcessGroup*>(ctx->saved_data["group"].toInt());
    torch::Tensor g = grads[0].contiguous().clone();
    group->all_reduce_sum(g);
    return {g, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor all_reduce_with_grad(const torch::Tensor& x, ProcessGroup& group) {
  return AllReduceSum::apply(x, reinterpret_cast<int64_t>(&group));
}

}  // namespace umamba::train
