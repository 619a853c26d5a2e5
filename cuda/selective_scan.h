// Selective scan (Mamba-1 S6, real diagonal A, input-dependent B and C) on the GPU: the host API.
//
// What it computes, per batch b and channel d (shapes as mamba's selective_scan_ref, [batch, dim,
// len] for u, delta, z, out; A [dim, nstate] fp32; B, C [batch, nstate, len]):
//   dt_t = softplus(delta_t + delta_bias)            (softplus optional)
//   h_t  = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t  (h: nstate values, h_{-1} = 0, fp32)
//   out_t = (sum_n C_t[n] * h_t[n] + D * u_t) * silu(z_t)   (D and z optional)
// and the gradients of all inputs in the backward pass. The CPU reference with the same semantics
// in plain loops is selective_scan_ref.h; docs/cuda.md describes the kernels' design.
//
// Raw device pointers, element strides and a stream: no LibTorch here, and this header compiles
// without the CUDA headers. u, delta, z, out, dout, du, ddelta, dz and B, C are in the input dtype
// (fp32, bf16 or fp16), last dimension contiguous, other strides free. A, D, delta_bias and every
// accumulated gradient (dA, dB, dC, dD, ddelta_bias) are fp32; dB and dC are contiguous
// [batch, nstate, len]. All arithmetic and the state are fp32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

struct CUstream_st;

namespace umamba::cuda {

using Stream = CUstream_st*;  // a cudaStream_t; nullptr is the legacy default stream

enum class ScanDtype { F32, BF16, F16 };

const char* to_string(ScanDtype dtype);
std::size_t element_size(ScanDtype dtype);

constexpr int kMaxState = 64;     // largest nstate the kernels accept
constexpr int kStateChunk = 256;  // spacing along len of the states the forward saves for backward

struct ScanShape {
  std::int64_t batch = 0;
  std::int64_t dim = 0;
  std::int64_t len = 0;
  std::int64_t nstate = 0;
};

// A [batch, dim, len] tensor with a contiguous last dimension: (batch, dim) strides in elements.
struct RowStrides {
  std::int64_t batch = 0;
  std::int64_t dim = 0;
};
// A [batch, nstate, len] tensor (B, C): (batch, nstate) strides in elements.
struct StateStrides {
  std::int64_t batch = 0;
  std::int64_t state = 0;
};

RowStrides contiguous_rows(const ScanShape& s);      // {dim*len, len}
StateStrides contiguous_states(const ScanShape& s);  // {nstate*len, len}

// How the work is cut. Defaults suit H100/H200; the benchmark sweeps them. A value <= 0 means
// "choose". Segments split len across independent warps (or blocks), joined by a short summary
// pass.
struct ScanTuning {
  int fwd_target_warps = 0;    // warps the forward keeps resident (0: what fits: one-tile kernel 24
                               // or 16 per SM, long rows 24)
  int fwd_segments = 0;        // force this many segments per row in the forward (0: wave model)
  int fwd_summary_pieces = 0;  // forward summaries per segment (0: choose; a divisor of its tiles)
  // Rows up to this length take the forward's one-tile kernel (direct loads, no staging; 16 steps
  // per lane, so at most 512); 0: choose.
  int fwd_short_len = 0;
  // One-tile kernel: warps that share a row, each a share of the states (1, 2 or 4; 0: choose).
  int fwd_state_split = 0;
  // One-tile kernel: steps per lane, 8 or 16 (0: choose).
  int fwd_short_items = 0;
  int bwd_target_blocks = 0;  // blocks the backward should keep busy (0: blocks per SM x SMs)
  int bwd_segments = 0;       // force this many segments per row in the backward
  int bwd_rows_per_warp = 0;  // channels each backward warp walks through (1, 2, 4 or 8; 0: choose)
  int bwd_blocks_per_sm = 0;  // backward register budget: 2, 3 or 4 blocks of 4 warps per SM
                              // (0: choose)
  // Long-row backward with warp atomics: warps that share a channel, each a share of the states
  // (1, 2 or 4; 0: choose - 2 or 4 on rows of at most 2 tiles whose blocks, split, still fit in
  // one wave, else 1).
  int bwd_state_split = 0;
  int bwd_reduce = 0;  // how the long-row backward sums dB and dC over channels: 1 = in shared
                       // memory over the block's channels, then one atomic per block; 2 = one
                       // coalesced atomic per warp (no block barrier per state); 3 = 4-float
                       // atomics straight from each lane's registers (no transposition, twice
                       // the L2 sectors; whole aligned tiles, else as 2); 0: choose
};

// The launch plan for one shape on the current device, and the scratch memory it needs.
struct ScanPlan {
  ScanShape shape;
  int fwd_lanes = 32;  // lanes that share one row in the forward (1..32)
  int fwd_items = 16;  // time steps per forward thread
  int fwd_segments = 1;
  std::int64_t fwd_segment_len = 0;
  int fwd_summary_pieces = 1;  // summaries per segment (the summary pass's blocks, see plan_scan)
  int fwd_state_split = 1;     // one-tile kernel only (see ScanTuning)
  bool fwd_one_tile = false;   // the forward's one-tile (short-row) kernel
  int bwd_lanes = 32;
  int bwd_segments = 1;
  std::int64_t bwd_segment_len = 0;
  int bwd_rows_per_warp = 1;
  int bwd_blocks_per_sm = 2;
  int bwd_reduce = 1;                 // 1 block, 2 warp, 3 direct (see ScanTuning)
  int bwd_state_split = 1;            // warp atomics only (see ScanTuning)
  std::int64_t state_chunks = 0;      // ceil(len / kStateChunk) when len > kStateChunk, else 0
  std::size_t states_floats = 0;      // forward -> backward checkpoints: batch*dim*chunks*nstate
  std::size_t fwd_scratch_bytes = 0;  // segment summaries of the forward
  std::size_t bwd_scratch_bytes = 0;  // segment summaries of the backward
  std::string describe() const;
};

// Throws umamba::Error for shapes the kernels do not take (nstate > kMaxState, a size < 1, len or
// batch*dim at or over 2^31). The first form reads the multiprocessor count of the current device.
ScanPlan plan_scan(const ScanShape& shape, const ScanTuning& tuning = {});
ScanPlan plan_scan(const ScanShape& shape, const ScanTuning& tuning, int multiprocessors);

struct ScanForwardArgs {
  ScanDtype dtype = ScanDtype::F32;
  ScanShape shape;
  const void* u = nullptr;
  RowStrides u_strides;
  const void* delta = nullptr;
  RowStrides delta_strides;
  const float* A = nullptr;  // [dim, nstate], contiguous
  const void* B = nullptr;
  StateStrides B_strides;
  const void* C = nullptr;
  StateStrides C_strides;
  const float* D = nullptr;  // [dim] or nullptr
  const void* z = nullptr;   // or nullptr (no gate)
  RowStrides z_strides;
  const float* delta_bias = nullptr;  // [dim] or nullptr
  bool delta_softplus = true;
  void* out = nullptr;
  RowStrides out_strides;
  // Checkpoints for the backward (plan.states_floats floats), or nullptr when no backward follows.
  float* states = nullptr;
  void* scratch = nullptr;  // plan.fwd_scratch_bytes, 16-byte aligned (may be nullptr when 0)
};

struct ScanBackwardArgs {
  ScanDtype dtype = ScanDtype::F32;
  ScanShape shape;
  const void* u = nullptr;
  RowStrides u_strides;
  const void* delta = nullptr;
  RowStrides delta_strides;
  const float* A = nullptr;
  const void* B = nullptr;
  StateStrides B_strides;
  const void* C = nullptr;
  StateStrides C_strides;
  const float* D = nullptr;
  const void* z = nullptr;
  RowStrides z_strides;
  const float* delta_bias = nullptr;
  bool delta_softplus = true;
  const float* states = nullptr;  // what scan_forward saved (needed when plan.state_chunks > 0)
  const void* dout = nullptr;
  RowStrides dout_strides;
  // Outputs. du, ddelta, dz (when z) are written; dA, dB, dC, dD (when D), ddelta_bias (when
  // delta_bias) are zeroed and accumulated by the call itself.
  void* du = nullptr;
  RowStrides du_strides;
  void* ddelta = nullptr;
  RowStrides ddelta_strides;
  void* dz = nullptr;
  RowStrides dz_strides;
  float* dA = nullptr;
  float* dB = nullptr;  // [batch, nstate, len] fp32, contiguous
  float* dC = nullptr;
  float* dD = nullptr;
  float* ddelta_bias = nullptr;
  void* scratch = nullptr;  // plan.bwd_scratch_bytes
};

// Stream-ordered, no synchronisation and no allocation (so they can be captured in a CUDA graph).
// Throw umamba::Error on inconsistent arguments and on launch errors.
void scan_forward(const ScanForwardArgs& args, const ScanPlan& plan, Stream stream);
void scan_backward(const ScanBackwardArgs& args, const ScanPlan& plan, Stream stream);

}  // namespace umamba::cuda
