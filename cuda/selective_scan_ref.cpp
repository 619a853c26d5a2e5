// Selective scan, CPU reference in plain loops (see selective_scan_ref.h for the semantics).
#include "cuda/selective_scan_ref.h"

#include <cmath>
#include <cstddef>

namespace umamba::cuda::ref {

namespace {

template <typename Real>
Real softplus(Real x) {
  return x > Real(20) ? x : std::log1p(std::exp(x));
}
template <typename Real>
Real sigmoid(Real x) {
  return Real(1) / (Real(1) + std::exp(-x));
}

template <typename Real>
struct Index {
  const ScanProblem<Real>& p;
  std::size_t row(std::int64_t b, std::int64_t d, std::int64_t t) const {
    return static_cast<std::size_t>((b * p.dim + d) * p.len + t);
  }
  std::size_t state(std::int64_t b, std::int64_t n, std::int64_t t) const {
    return static_cast<std::size_t>((b * p.nstate + n) * p.len + t);
  }
  std::size_t a(std::int64_t d, std::int64_t n) const {
    return static_cast<std::size_t>(d * p.nstate + n);
  }
};

template <typename Real>
Real raw_dt(const ScanProblem<Real>& p, std::int64_t d, Real delta) {
  return delta + (p.delta_bias ? p.delta_bias[d] : Real(0));
}

}  // namespace

template <typename Real>
std::vector<Real> scan_forward(const ScanProblem<Real>& p) {
  const Index<Real> ix{p};
  std::vector<Real> out(static_cast<std::size_t>(p.batch * p.dim * p.len));
  std::vector<Real> h(static_cast<std::size_t>(p.nstate));
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (std::int64_t d = 0; d < p.dim; ++d) {
      for (auto& v : h) v = Real(0);
      for (std::int64_t t = 0; t < p.len; ++t) {
        const Real u = p.u[ix.row(b, d, t)];
        const Real x = raw_dt(p, d, p.delta[ix.row(b, d, t)]);
        const Real dt = p.delta_softplus ? softplus(x) : x;
        Real y = 0;
        for (std::int64_t n = 0; n < p.nstate; ++n) {
          h[n] = std::exp(dt * p.A[ix.a(d, n)]) * h[n] + dt * p.B[ix.state(b, n, t)] * u;
          y += p.C[ix.state(b, n, t)] * h[n];
        }
        Real o = y + (p.D ? p.D[d] * u : Real(0));
        if (p.z) {
          const Real z = p.z[ix.row(b, d, t)];
          o *= z * sigmoid(z);
        }
        out[ix.row(b, d, t)] = o;
      }
    }
  }
  return out;
}

template <typename Real>
ScanGradients<Real> scan_backward(const ScanProblem<Real>& p, const Real* dout) {
  const Index<Real> ix{p};
  const auto row_count = static_cast<std::size_t>(p.batch * p.dim * p.len);
  const auto state_count = static_cast<std::size_t>(p.batch * p.nstate * p.len);
  const auto L = static_cast<std::size_t>(p.len);
  const auto N = static_cast<std::size_t>(p.nstate);
  ScanGradients<Real> g;
  g.du.assign(row_count, 0);
  g.ddelta.assign(row_count, 0);
  g.dA.assign(static_cast<std::size_t>(p.dim) * N, 0);
  g.dB.assign(state_count, 0);
  g.dC.assign(state_count, 0);
  if (p.D) g.dD.assign(static_cast<std::size_t>(p.dim), 0);
  if (p.delta_bias) g.ddelta_bias.assign(static_cast<std::size_t>(p.dim), 0);
  if (p.z) g.dz.assign(row_count, 0);

  std::vector<Real> H(L * N), dt(L), o(L), adj(N);
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (std::int64_t d = 0; d < p.dim; ++d) {
      const Real Dv = p.D ? p.D[d] : Real(0);
      // Forward again, keeping every state h_t.
      for (std::int64_t t = 0; t < p.len; ++t) {
        const Real u = p.u[ix.row(b, d, t)];
        const Real x = raw_dt(p, d, p.delta[ix.row(b, d, t)]);
        dt[t] = p.delta_softplus ? softplus(x) : x;
        Real y = 0;
        for (std::size_t n = 0; n < N; ++n) {
          const Real prev = t > 0 ? H[(t - 1) * N + n] : Real(0);
          const Real h =
              std::exp(dt[t] * p.A[ix.a(d, n)]) * prev + dt[t] * p.B[ix.state(b, n, t)] * u;
          H[t * N + n] = h;
          y += p.C[ix.state(b, n, t)] * h;
        }
        o[t] = y + Dv * u;
      }
      // Adjoint, from the last step back. adj[n] holds exp(dt_{t+1} A) * g_{t+1}.
      for (auto& v : adj) v = Real(0);
      for (std::int64_t t = p.len - 1; t >= 0; --t) {
        const std::size_t r = ix.row(b, d, t);
        const Real u = p.u[r];
        Real dy = dout[r];  // d loss / d o_t
        if (p.z) {
          const Real z = p.z[r];
          const Real s = sigmoid(z);
          g.dz[r] = dout[r] * o[t] * s * (Real(1) + z * (Real(1) - s));
          dy *= z * s;
        }
        Real du = Dv * dy;
        Real ddt = 0;
        for (std::size_t n = 0; n < N; ++n) {
          const Real a = p.A[ix.a(d, n)];
          const Real decay = std::exp(dt[t] * a);
          const Real Bv = p.B[ix.state(b, n, t)];
          const Real Cv = p.C[ix.state(b, n, t)];
          const Real prev = t > 0 ? H[(t - 1) * N + n] : Real(0);
          const Real gt = dy * Cv + adj[n];  // d loss / d h_t
          g.dC[ix.state(b, n, t)] += dy * H[t * N + n];
          g.dB[ix.state(b, n, t)] += gt * dt[t] * u;
          du += gt * dt[t] * Bv;
          ddt += gt * (Bv * u + prev * decay * a);
          g.dA[ix.a(d, n)] += gt * prev * decay * dt[t];
          adj[n] = decay * gt;
        }
        if (p.D) g.dD[d] += dy * u;
        if (p.delta_softplus) ddt *= sigmoid(raw_dt(p, d, p.delta[r]));
        g.du[r] = du;
        g.ddelta[r] = ddt;
        if (p.delta_bias) g.ddelta_bias[d] += ddt;
      }
    }
  }
  return g;
}

template std::vector<float> scan_forward(const ScanProblem<float>&);
template std::vector<double> scan_forward(const ScanProblem<double>&);
template ScanGradients<float> scan_backward(const ScanProblem<float>&, const float*);
template ScanGradients<double> scan_backward(const ScanProblem<double>&, const double*);

}  // namespace umamba::cuda::ref
