// Selective scan: CPU forward/backward (TBB), autograd glue, and the LibTorch-ops path for other
// devices. Semantics and shapes: selective_scan.h (mamba_ssm v1.2.0 selective_scan_ref).
//
// CPU method. Forward: one sequential pass per (batch, channel) row, state h[N] in registers-ish
// local memory, the state at the start of every `checkpoint_interval` steps saved when gradients
// are wanted ([batch, dim, chunks, N]). Backward: per row, chunks in reverse; each chunk's states
// are recomputed from its checkpoint into a K×N buffer, then the adjoint runs backwards through
// the chunk (the recomputation scheme of the mamba CUDA kernel, Gu & Dao 2023 §3.3.2):
//   G_t   = dL/dh_t = carry + dy_t · C_t          carry ← G_t ⊙ exp(Δ_t A)
//   dC_t += dy_t · h_t                           dB_t += G_t · Δ_t u_t
//   du_t  = dy_t · D + Σ_n G_t Δ_t B_t           dΔ_t  = Σ_n G_t (h_{t−1} e^{Δ_t A} A + B_t u_t)
//   dA   += G_t ⊙ h_{t−1} e^{Δ_t A} Δ_t          dD += dy_t u_t,  dΔ-bias += dΔ_t σ(δ_t + bias)
// dB and dC are shared by all channels of a batch item: rows are grouped into channel blocks,
// each block accumulates into its own slab, and the slabs are summed in a fixed order, so the
// result does not depend on scheduling (only on the number of blocks, i.e. of threads).
#include "model/selective_scan.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include <fmt/ranges.h>

#include "core/error.h"

#if defined(UMAMBA_WITH_CUDA_KERNELS)
#include "model/selective_scan_cuda.h"
#endif

namespace umamba::model {
namespace {

constexpr int64_t kDefaultCheckpointInterval = 256;

template <typename T>
inline T softplus(T x) {
  // torch.nn.functional.softplus(beta=1, threshold=20)
  return x > T(20) ? x : std::log1p(std::exp(x));
}
template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// Everything the CPU kernels read, converted to one compute dtype and made contiguous.
struct ScanInputs {
  torch::Tensor u, delta, A, Bt, Ct, D, z, bias;  // Bt, Ct: [batch, L, N] (time-major)
  int64_t batch = 0, dim = 0, len = 0, nstate = 0;
  bool softplus = false;
};

void check_shapes(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A,
                  const torch::Tensor& B, const torch::Tensor& C,
                  const std::optional<torch::Tensor>& D, const std::optional<torch::Tensor>& z,
                  const std::optional<torch::Tensor>& delta_bias) {
  UMAMBA_CHECK(u.dim() == 3, "selective_scan: u must be [batch, dim, L], got {} dims", u.dim());
  const int64_t b = u.size(0), d = u.size(1), l = u.size(2);
  UMAMBA_CHECK(delta.sizes() == u.sizes(), "selective_scan: delta {} differs from u {}",
               fmt::join(delta.sizes(), "x"), fmt::join(u.sizes(), "x"));
  UMAMBA_CHECK(A.dim() == 2 && A.size(0) == d, "selective_scan: A must be [dim={}, N], got {}", d,
               fmt::join(A.sizes(), "x"));
  UMAMBA_CHECK(!A.is_complex(), "selective_scan: complex A is not supported");
  const int64_t n = A.size(1);
  for (const auto* t : {&B, &C}) {
    UMAMBA_CHECK(t->dim() == 3 && t->size(0) == b && t->size(1) == n && t->size(2) == l,
                 "selective_scan: B and C must be [batch={}, N={}, L={}] (input-dependent), got {}",
                 b, n, l, fmt::join(t->sizes(), "x"));
  }
  if (D) {
    UMAMBA_CHECK(D->dim() == 1 && D->size(0) == d, "selective_scan: D must be [dim={}], got {}", d,
                 fmt::join(D->sizes(), "x"));
  }
  if (delta_bias) {
    UMAMBA_CHECK(delta_bias->dim() == 1 && delta_bias->size(0) == d,
                 "selective_scan: delta_bias must be [dim={}], got {}", d,
                 fmt::join(delta_bias->sizes(), "x"));
  }
  if (z) {
    UMAMBA_CHECK(z->sizes() == u.sizes(), "selective_scan: z {} differs from u {}",
                 fmt::join(z->sizes(), "x"), fmt::join(u.sizes(), "x"));
  }
  for (const auto* t : {&delta, &A, &B, &C}) {
    UMAMBA_CHECK(t->device() == u.device(),
                 "selective_scan: all tensors must be on {}, one is on {}", u.device().str(),
                 t->device().str());
  }
}

torch::ScalarType compute_dtype(const torch::Tensor& u) {
  return u.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
}

ScanInputs prepare(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A,
                   const torch::Tensor& B, const torch::Tensor& C, const torch::Tensor& D,
                   const torch::Tensor& z, const torch::Tensor& bias, bool softplus) {
  const auto dt = compute_dtype(u);
  auto conv = [dt](const torch::Tensor& t) {
    return t.defined() ? t.detach().to(dt).contiguous() : torch::Tensor();
  };
  ScanInputs in;
  in.u = conv(u);
  in.delta = conv(delta);
  in.A = conv(A);
  in.Bt = B.detach().to(dt).transpose(1, 2).contiguous();
  in.Ct = C.detach().to(dt).transpose(1, 2).contiguous();
  in.D = conv(D);
  in.z = conv(z);
  in.bias = conv(bias);
  in.batch = u.size(0);
  in.dim = u.size(1);
  in.len = u.size(2);
  in.nstate = A.size(1);
  in.softplus = softplus;
  return in;
}

// Forward over all rows. `out` [batch, dim, L]; `ckpt` [batch, dim, chunks, N] or undefined.
template <typename T>
void scan_forward(const ScanInputs& in, torch::Tensor& out, torch::Tensor* ckpt, int64_t interval) {
  const int64_t L = in.len, N = in.nstate, Dm = in.dim;
  const int64_t chunks = (L + interval - 1) / interval;
  const T* u = in.u.data_ptr<T>();
  const T* delta = in.delta.data_ptr<T>();
  const T* A = in.A.data_ptr<T>();
  const T* Bt = in.Bt.data_ptr<T>();
  const T* Ct = in.Ct.data_ptr<T>();
  const T* D = in.D.defined() ? in.D.data_ptr<T>() : nullptr;
  const T* z = in.z.defined() ? in.z.data_ptr<T>() : nullptr;
  const T* bias = in.bias.defined() ? in.bias.data_ptr<T>() : nullptr;
  T* o = out.data_ptr<T>();
  T* ck = ckpt ? ckpt->data_ptr<T>() : nullptr;
  const bool sp = in.softplus;

  tbb::parallel_for(tbb::blocked_range<int64_t>(0, in.batch * Dm), [&](const auto& range) {
    std::vector<T> h(N);
    for (int64_t row = range.begin(); row != range.end(); ++row) {
      const int64_t b = row / Dm, d = row % Dm;
      const T* ur = u + row * L;
      const T* dr = delta + row * L;
      const T* zr = z ? z + row * L : nullptr;
      const T* Ar = A + d * N;
      const T Dd = D ? D[d] : T(0);
      const T bd = bias ? bias[d] : T(0);
      T* orow = o + row * L;
      std::fill(h.begin(), h.end(), T(0));
      for (int64_t t = 0; t < L; ++t) {
        if (ck && t % interval == 0) {
          std::copy(h.begin(), h.end(), ck + (row * chunks + t / interval) * N);
        }
        T dt = dr[t] + bd;
        if (sp) dt = softplus(dt);
        const T dtu = dt * ur[t];
        const T* Bn = Bt + (b * L + t) * N;
        const T* Cn = Ct + (b * L + t) * N;
        T y = 0;
        for (int64_t n = 0; n < N; ++n) {
          h[n] = std::exp(dt * Ar[n]) * h[n] + dtu * Bn[n];
          y += h[n] * Cn[n];
        }
        y += Dd * ur[t];
        orow[t] = zr ? y * (zr[t] * sigmoid(zr[t])) : y;
      }
    }
  });
}

torch::Tensor or_undefined(const std::optional<torch::Tensor>& t) {
  return t ? *t : torch::Tensor();
}

struct ScanGrads {
  torch::Tensor du, ddelta, dA, dB, dC, dD, dz, dbias;
};

template <typename T>
ScanGrads scan_backward(const ScanInputs& in, const torch::Tensor& ckpt,
                        const torch::Tensor& dout_in, int64_t interval) {
  const int64_t L = in.len, N = in.nstate, Dm = in.dim, Bsz = in.batch;
  const int64_t chunks = (L + interval - 1) / interval;
  const auto opts = in.u.options();
  const torch::Tensor dout = dout_in.to(in.u.scalar_type()).contiguous();
  ScanGrads g;
  g.du = torch::empty_like(in.u);
  g.ddelta = torch::empty_like(in.u);
  g.dz = in.z.defined() ? torch::empty_like(in.u) : torch::Tensor();
  // Per (batch, channel) partials of the per-channel parameter gradients, summed over batch below.
  torch::Tensor dA_part = torch::zeros({Bsz, Dm, N}, opts);
  torch::Tensor dD_part = torch::zeros({Bsz, Dm}, opts);
  torch::Tensor dbias_part = torch::zeros({Bsz, Dm}, opts);
  // Channel blocks, each with its own [batch, L, N] slabs for dB and dC.
  const int64_t blocks =
      std::max<int64_t>(1, std::min<int64_t>(Dm, tbb::this_task_arena::max_concurrency()));
  torch::Tensor dB_slab = torch::zeros({blocks, Bsz, L, N}, opts);
  torch::Tensor dC_slab = torch::zeros({blocks, Bsz, L, N}, opts);

  const T* u = in.u.data_ptr<T>();
  const T* delta = in.delta.data_ptr<T>();
  const T* A = in.A.data_ptr<T>();
  const T* Bt = in.Bt.data_ptr<T>();
  const T* Ct = in.Ct.data_ptr<T>();
  const T* D = in.D.defined() ? in.D.data_ptr<T>() : nullptr;
  const T* z = in.z.defined() ? in.z.data_ptr<T>() : nullptr;
  const T* bias = in.bias.defined() ? in.bias.data_ptr<T>() : nullptr;
  const T* ck = ckpt.data_ptr<T>();
  const T* go = dout.data_ptr<T>();
  T* du = g.du.data_ptr<T>();
  T* dd = g.ddelta.data_ptr<T>();
  T* dz = z ? g.dz.data_ptr<T>() : nullptr;
  T* dAp = dA_part.data_ptr<T>();
  T* dDp = dD_part.data_ptr<T>();
  T* dbp = dbias_part.data_ptr<T>();
  T* dBs = dB_slab.data_ptr<T>();
  T* dCs = dC_slab.data_ptr<T>();
  const bool sp = in.softplus;

  tbb::parallel_for(tbb::blocked_range<int64_t>(0, blocks * Bsz, 1), [&](const auto& range) {
    std::vector<T> hs(interval * N), as(interval * N), dts(interval), carry(N), hprev0(N);
    for (int64_t task = range.begin(); task != range.end(); ++task) {
      const int64_t blk = task / Bsz, b = task % Bsz;
      const int64_t d0 = Dm * blk / blocks, d1 = Dm * (blk + 1) / blocks;
      T* dBb = dBs + (blk * Bsz + b) * L * N;
      T* dCb = dCs + (blk * Bsz + b) * L * N;
      for (int64_t d = d0; d < d1; ++d) {
        const int64_t row = b * Dm + d;
        const T* ur = u + row * L;
        const T* dr = delta + row * L;
        const T* zr = z ? z + row * L : nullptr;
        const T* gr = go + row * L;
        const T* Ar = A + d * N;
        const T Dd = D ? D[d] : T(0);
        const T bd = bias ? bias[d] : T(0);
        T* dAr = dAp + row * N;
        T dDacc = 0, dbacc = 0;
        std::fill(carry.begin(), carry.end(), T(0));
        for (int64_t c = chunks - 1; c >= 0; --c) {
          const int64_t t0 = c * interval, t1 = std::min(L, t0 + interval);
          // Recompute this chunk's states from its checkpoint.
          const T* h0 = ck + (row * chunks + c) * N;
          std::copy(h0, h0 + N, hprev0.begin());
          for (int64_t t = t0; t < t1; ++t) {
            T dt = dr[t] + bd;
            if (sp) dt = softplus(dt);
            dts[t - t0] = dt;
            const T dtu = dt * ur[t];
            const T* Bn = Bt + (b * L + t) * N;
            const T* hp = t == t0 ? hprev0.data() : hs.data() + (t - t0 - 1) * N;
            T* hc = hs.data() + (t - t0) * N;
            T* ac = as.data() + (t - t0) * N;
            for (int64_t n = 0; n < N; ++n) {
              ac[n] = std::exp(dt * Ar[n]);
              hc[n] = ac[n] * hp[n] + dtu * Bn[n];
            }
          }
          // Adjoint, backwards through the chunk.
          for (int64_t t = t1 - 1; t >= t0; --t) {
            const T dt = dts[t - t0];
            const T* hc = hs.data() + (t - t0) * N;
            const T* ac = as.data() + (t - t0) * N;
            const T* hp = t == t0 ? hprev0.data() : hs.data() + (t - t0 - 1) * N;
            const T* Bn = Bt + (b * L + t) * N;
            const T* Cn = Ct + (b * L + t) * N;
            T dy = gr[t];
            if (zr) {
              T y = Dd * ur[t];
              for (int64_t n = 0; n < N; ++n) y += hc[n] * Cn[n];
              const T s = sigmoid(zr[t]);
              dz[row * L + t] = gr[t] * y * s * (T(1) + zr[t] * (T(1) - s));
              dy = gr[t] * zr[t] * s;
            }
            dDacc += dy * ur[t];
            T dut = dy * Dd;
            T ddt = 0;
            const T ut = ur[t];
            T* dBt = dBb + t * N;
            T* dCt = dCb + t * N;
            for (int64_t n = 0; n < N; ++n) {
              const T G = carry[n] + dy * Cn[n];
              dCt[n] += dy * hc[n];
              dBt[n] += G * dt * ut;
              dut += G * dt * Bn[n];
              const T hpa = hp[n] * ac[n];
              ddt += G * (hpa * Ar[n] + Bn[n] * ut);
              dAr[n] += G * hpa * dt;
              carry[n] = G * ac[n];
            }
            if (sp) ddt *= sigmoid(dr[t] + bd);
            dd[row * L + t] = ddt;
            du[row * L + t] = dut;
            dbacc += ddt;
          }
        }
        dDp[row] = dDacc;
        dbp[row] = dbacc;
      }
    }
  });

  g.dA = dA_part.sum(0);
  g.dD = dD_part.sum(0);
  g.dbias = dbias_part.sum(0);
  // Fixed-order sum of the slabs, then back to [batch, N, L].
  g.dB = dB_slab.sum(0).transpose(1, 2).contiguous();
  g.dC = dC_slab.sum(0).transpose(1, 2).contiguous();
  return g;
}

torch::Tensor cpu_forward(const ScanInputs& in, torch::Tensor* ckpt, int64_t interval) {
  torch::Tensor out = torch::empty_like(in.u);
  if (ckpt) {
    const int64_t chunks = (in.len + interval - 1) / interval;
    *ckpt = torch::empty({in.batch, in.dim, chunks, in.nstate}, in.u.options());
  }
  if (in.u.scalar_type() == torch::kDouble) {
    scan_forward<double>(in, out, ckpt, interval);
  } else {
    scan_forward<float>(in, out, ckpt, interval);
  }
  return out;
}

// Autograd function for the CPU kernels. Undefined tensors stand for absent optionals.
class SelectiveScanCpu : public torch::autograd::Function<SelectiveScanCpu> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& u,
                               const torch::Tensor& delta, const torch::Tensor& A,
                               const torch::Tensor& B, const torch::Tensor& C,
                               const std::optional<torch::Tensor>& D_opt,
                               const std::optional<torch::Tensor>& z_opt,
                               const std::optional<torch::Tensor>& bias_opt, bool softplus,
                               int64_t interval) {
    // Absent optionals are not inputs of the autograd node (LibTorch refuses undefined ones).
    const torch::Tensor D = or_undefined(D_opt), z = or_undefined(z_opt),
                        bias = or_undefined(bias_opt);
    ScanInputs in = prepare(u, delta, A, B, C, D, z, bias, softplus);
    torch::Tensor ckpt;
    torch::Tensor out = cpu_forward(in, &ckpt, interval);
    ctx->save_for_backward({u, delta, A, B, C, D, z, bias, ckpt});
    ctx->saved_data["softplus"] = softplus;
    ctx->saved_data["interval"] = interval;
    return out.to(u.scalar_type());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &u = saved[0], &delta = saved[1], &A = saved[2], &B = saved[3],
                        &C = saved[4], &D = saved[5], &z = saved[6], &bias = saved[7],
                        &ckpt = saved[8];
    const bool softplus = ctx->saved_data["softplus"].toBool();
    const int64_t interval = ctx->saved_data["interval"].toInt();
    ScanInputs in = prepare(u, delta, A, B, C, D, z, bias, softplus);
    torch::Tensor dout = grad_out[0];
    if (!dout.defined()) dout = torch::zeros_like(in.u);
    ScanGrads g = in.u.scalar_type() == torch::kDouble
                      ? scan_backward<double>(in, ckpt, dout, interval)
                      : scan_backward<float>(in, ckpt, dout, interval);
    auto like = [](const torch::Tensor& grad, const torch::Tensor& input) {
      return input.defined() ? grad.to(input.scalar_type()) : torch::Tensor();
    };
    return {like(g.du, u),
            like(g.ddelta, delta),
            like(g.dA, A),
            like(g.dB, B),
            like(g.dC, C),
            D.defined() ? like(g.dD, D) : torch::Tensor(),
            z.defined() ? like(g.dz, z) : torch::Tensor(),
            bias.defined() ? like(g.dbias, bias) : torch::Tensor(),
            torch::Tensor(),
            torch::Tensor()};
  }
};

bool wants_grad(std::initializer_list<const torch::Tensor*> tensors) {
  if (!torch::GradMode::is_enabled()) return false;
  for (const auto* t : tensors) {
    if (t->defined() && t->requires_grad()) return true;
  }
  return false;
}

}  // namespace

namespace detail {

torch::Tensor selective_scan_cpu(const torch::Tensor& u, const torch::Tensor& delta,
                                 const torch::Tensor& A, const torch::Tensor& B,
                                 const torch::Tensor& C, const std::optional<torch::Tensor>& D,
                                 const std::optional<torch::Tensor>& z,
                                 const std::optional<torch::Tensor>& delta_bias,
                                 bool delta_softplus, int64_t checkpoint_interval) {
  check_shapes(u, delta, A, B, C, D, z, delta_bias);
  UMAMBA_CHECK(u.device().is_cpu(), "selective_scan_cpu: tensors are on {}", u.device().str());
  UMAMBA_CHECK(checkpoint_interval >= 1, "selective_scan_cpu: checkpoint interval {} < 1",
               checkpoint_interval);
  const torch::Tensor Dt = or_undefined(D), zt = or_undefined(z), bt = or_undefined(delta_bias);
  if (wants_grad({&u, &delta, &A, &B, &C, &Dt, &zt, &bt})) {
    return SelectiveScanCpu::apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                   checkpoint_interval);
  }
  ScanInputs in = prepare(u, delta, A, B, C, Dt, zt, bt, delta_softplus);
  return cpu_forward(in, nullptr, checkpoint_interval).to(u.scalar_type());
}

torch::Tensor selective_scan_torch_ops(const torch::Tensor& u, const torch::Tensor& delta,
                                       const torch::Tensor& A, const torch::Tensor& B,
                                       const torch::Tensor& C,
                                       const std::optional<torch::Tensor>& D,
                                       const std::optional<torch::Tensor>& z,
                                       const std::optional<torch::Tensor>& delta_bias,
                                       bool delta_softplus, int64_t chunk) {
  check_shapes(u, delta, A, B, C, D, z, delta_bias);
  const auto cdt = compute_dtype(u);
  const int64_t batch = u.size(0), dim = u.size(1), L = u.size(2), N = A.size(1);
  if (chunk <= 0) {
    // The chunk's decay matrix is [batch, dim, N, l, l]; keep it near 2^26 elements.
    const double budget = double(1 << 26) / double(std::max<int64_t>(1, batch * dim * N));
    chunk = std::clamp<int64_t>(static_cast<int64_t>(std::sqrt(budget)), 1, 128);
  }
  torch::Tensor dt = delta.to(cdt);
  if (delta_bias) dt = dt + delta_bias->to(cdt).unsqueeze(-1);
  if (delta_softplus) dt = torch::nn::functional::softplus(dt);
  const torch::Tensor uf = u.to(cdt), Af = A.to(cdt).view({1, dim, N, 1});
  const torch::Tensor Bf = B.to(cdt), Cf = C.to(cdt);
  torch::Tensor h = torch::zeros({batch, dim, N}, uf.options());
  std::vector<torch::Tensor> ys;
  for (int64_t t0 = 0; t0 < L; t0 += chunk) {
    const int64_t l = std::min(chunk, L - t0);
    const torch::Tensor dtc = dt.narrow(2, t0, l);                // [b, d, l]
    const torch::Tensor S = (dtc.unsqueeze(2) * Af).cumsum(-1);   // [b, d, N, l]
    const torch::Tensor seg = S.unsqueeze(-1) - S.unsqueeze(-2);  // [b, d, N, l(t), l(s)]
    const torch::Tensor causal =
        torch::ones({l, l}, torch::TensorOptions().dtype(torch::kBool).device(u.device())).tril();
    const torch::Tensor W = seg.masked_fill(causal.logical_not(), -INFINITY).exp();
    const torch::Tensor x = (dtc * uf.narrow(2, t0, l)).unsqueeze(2) *
                            Bf.narrow(2, t0, l).unsqueeze(1);  // [b, d, N, l]
    const torch::Tensor hs =
        torch::matmul(W, x.unsqueeze(-1)).squeeze(-1) + S.exp() * h.unsqueeze(-1);
    ys.push_back((hs * Cf.narrow(2, t0, l).unsqueeze(1)).sum(2));  // [b, d, l]
    h = hs.select(-1, l - 1);
  }
  torch::Tensor out = torch::cat(ys, 2);
  if (D) out = out + uf * D->to(cdt).unsqueeze(-1);
  if (z) out = out * torch::silu(z->to(cdt));
  return out.to(u.scalar_type());
}

}  // namespace detail

torch::Tensor selective_scan(const torch::Tensor& u, const torch::Tensor& delta,
                             const torch::Tensor& A, const torch::Tensor& B, const torch::Tensor& C,
                             const std::optional<torch::Tensor>& D,
                             const std::optional<torch::Tensor>& z,
                             const std::optional<torch::Tensor>& delta_bias, bool delta_softplus) {
  if (u.device().is_cpu()) {
    return detail::selective_scan_cpu(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                      kDefaultCheckpointInterval);
  }
#if defined(UMAMBA_WITH_CUDA_KERNELS)
  if (u.device().is_cuda() && u.scalar_type() != torch::kDouble) {
    check_shapes(u, delta, A, B, C, D, z, delta_bias);
    return detail::selective_scan_cuda(u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  }
#endif
  return detail::selective_scan_torch_ops(u, delta, A, B, C, D, z, delta_bias, delta_softplus);
}

}  // namespace umamba::model
