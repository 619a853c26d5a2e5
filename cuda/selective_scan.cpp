// Selective scan host side: the launch plan (how rows and time are cut across warps and blocks),
// argument checks, and dispatch to the per-dtype kernels (selective_scan_{fp32,bf16,fp16}.cu).
// The design is described in selective_scan_kernels.cuh and docs/cuda.md.
#include "cuda/selective_scan.h"

#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <utility>

#include "core/error.h"
#include "cuda/device.h"
#include "cuda/selective_scan_launch.h"

namespace umamba::cuda {

namespace {

constexpr std::int64_t kIntMax = std::numeric_limits<std::int32_t>::max();
// Warps the forward's one-tile kernel keeps resident per SM: 8 steps per lane, 78 registers (ptxas,
// sm_90): 6 blocks of 4 warps; 16 steps per lane, 128 registers (its launch bounds): 4 blocks.
constexpr std::int64_t kFwdShortWarpsPerSm8 = 24;
constexpr std::int64_t kFwdShortWarpsPerSm16 = 16;

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  return (a + b - 1) / b;
}

int pow2_at_least(std::int64_t v) {
  int p = 1;
  while (p < v) p <<= 1;
  return p;
}

// Segments per row of a long-row kernel. A block of either long-row kernel walks its rows' tiles
// one after the other, latency-bound (a chain over time steps), so the kernel lasts about
//   waves(main) * seg_len + kSummaryCost * waves(summary) * seg_len,
// with waves(x) = ceil(blocks / resident blocks) for the main pass (S segments) and the summary
// pass (the S - 1 segments that hand a carry on). The smallest time wins (ties: fewer segments).
// Fitted to a sweep of forced segment counts, 1..24, over the benchmark's long shapes on an H200
// (docs/cuda.md): the model's choice was within 4% of the sweep's best on every shape in both
// directions, where "enough blocks for one wave" (the rule it replaces) lost up to 2.5x: 1.16 or
// 1.94 waves ran as 2 (the backward of (2, 128, 430080) took 14.8 ms with 7 segments, 9.5 ms with
// 24), and a short summary pass over few blocks is a long serial walk.
constexpr double kSummaryCost = 0.2;  // a summary step per block over a main step (H200 fit)
constexpr std::int64_t kMaxSegments = 64;
// Resident blocks per SM of the forward's long-row kernel (4 warps, 80 registers: 6; the sweep
// agrees - 1.16 "waves" of 5 blocks ran as one) and of the two summary kernels (96 registers: 5;
// 72 registers: 7).
constexpr std::int64_t kFwdLongBlocksPerSm = 6;
constexpr std::int64_t kFwdSummaryBlocksPerSm = 5;
constexpr std::int64_t kBwdSummaryBlocksPerSm = 7;

// Forward summary pieces. The summary pass is a latency-bound walk too, lasting about
// waves(summary blocks) x piece length; cutting each segment into f pieces gives it f times the
// blocks, each f times shorter (the main kernel folds the summaries of all pieces before its
// segment, one fused multiply-add each). The divisor f of a segment's tiles, at most max_pieces,
// that minimises that (kMaxPieces summaries a row at most). Without pieces the forward of (12, 128,
// 65536) bf16 spent 0.53 ms in a summary pass of 384 blocks over 32768 steps, 0.58 of a wave (ncu,
// H200).
constexpr std::int64_t kMaxPieces = 128;
struct SummaryCut {
  std::int64_t pieces;
  double steps;  // waves x piece length
};
SummaryCut best_pieces(std::int64_t summary_blocks, std::int64_t seg_tiles, std::int64_t max_pieces,
                       std::int64_t summary_slots, std::int64_t overhead_steps) {
  SummaryCut best{1, 0};
  for (std::int64_t f = 1; f <= std::min(seg_tiles, max_pieces); ++f) {
    if (seg_tiles % f) continue;
    const double t = static_cast<double>(ceil_div(summary_blocks * f, summary_slots) *
                                         ((seg_tiles / f) * kStateChunk + overhead_steps));
    if (f == 1 || t < best.steps) best = {f, t};
  }
  return best;
}

// A block's fixed cost (its carry fold, first loads and staging) in steps of its walk: the
// forward's is about a tile. Without it the model took 16 segments of one tile for the forward of
// (2, 640, 4096); a sweep of forced counts (H200, fp32 and bf16) had 2 segments fastest, 130
// against 152 us (and 9 summary pieces of one tile slower than whole segments on (2, 512, 6720),
// 189 against 181 us). The backward's sweep agreed with the model without it.
constexpr std::int64_t kFwdBlockOverheadSteps = kStateChunk;

// max_summaries: summaries a row may hold (kMaxPieces in the forward; 1 - none beyond one a
// segment - in the backward, whose summaries are not cut into pieces).
std::int64_t choose_segments(std::int64_t blocks_per_segment, std::int64_t len,
                             std::int64_t main_slots, std::int64_t summary_slots,
                             std::int64_t max_summaries, std::int64_t overhead_steps) {
  const std::int64_t nchunks = ceil_div(len, kStateChunk);
  double best = 0;
  std::int64_t best_segs = 1;
  for (std::int64_t s = 1; s <= std::min(nchunks, kMaxSegments); ++s) {
    const std::int64_t seg_len = ceil_div(nchunks, s) * kStateChunk;
    const std::int64_t segs = ceil_div(len, seg_len);
    double t = static_cast<double>(ceil_div(blocks_per_segment * segs, main_slots) *
                                   (seg_len + overhead_steps));
    if (segs > 1)
      t += kSummaryCost * best_pieces(blocks_per_segment * (segs - 1), seg_len / kStateChunk,
                                      std::max<std::int64_t>(1, max_summaries / segs),
                                      summary_slots, overhead_steps)
                              .steps;
    if (s == 1 || t < best) {
      best = t;
      best_segs = segs;
    }
  }
  return best_segs;
}

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    fail("selective scan: {} failed: {} ({})", what, cudaGetErrorString(e), static_cast<int>(e));
}

void check_launch(int code, const char* what) {
  check_cuda(static_cast<cudaError_t>(code), what);
}

bool aligned16(const void* p) {
  return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0;
}

}  // namespace

const char* to_string(ScanDtype dtype) {
  switch (dtype) {
    case ScanDtype::F32:
      return "fp32";
    case ScanDtype::BF16:
      return "bf16";
    case ScanDtype::F16:
      return "fp16";
  }
  return "?";
}

std::size_t element_size(ScanDtype dtype) {
  return dtype == ScanDtype::F32 ? 4 : 2;
}

RowStrides contiguous_rows(const ScanShape& s) {
  return {s.dim * s.len, s.len};
}
StateStrides contiguous_states(const ScanShape& s) {
  return {s.nstate * s.len, s.len};
}

std::string ScanPlan::describe() const {
  std::string fwd = fmt::format("fwd {}x{}", fwd_lanes, fwd_items);
  if (fwd_state_split > 1) fwd += fmt::format(" split {}", fwd_state_split);
  if (fwd_segments > 1) fwd += fmt::format(" seg {}x{}", fwd_segments, fwd_segment_len);
  if (fwd_summary_pieces > 1) fwd += fmt::format(" pieces {}", fwd_summary_pieces);
  std::string bwd = fmt::format("bwd {}x{} R{} O{} {}", bwd_lanes, detail::kBwdItems,
                                bwd_rows_per_warp, bwd_blocks_per_sm,
                                bwd_reduce == detail::kReduceBlock    ? "block"
                                : bwd_reduce == detail::kReduceDirect ? "direct"
                                                                      : "warp");
  if (bwd_state_split > 1) bwd += fmt::format(" split {}", bwd_state_split);
  if (bwd_segments > 1) bwd += fmt::format(" seg {}x{}", bwd_segments, bwd_segment_len);
  return fwd + ", " + bwd;
}

ScanPlan plan_scan(const ScanShape& shape, const ScanTuning& tuning) {
  return plan_scan(shape, tuning, current_multiprocessors());
}

ScanPlan plan_scan(const ScanShape& shape, const ScanTuning& tuning, int multiprocessors) {
  const auto& s = shape;
  UMAMBA_CHECK(s.batch >= 1 && s.dim >= 1 && s.len >= 1 && s.nstate >= 1,
               "selective scan: every size must be >= 1 (batch {}, dim {}, len {}, nstate {})",
               s.batch, s.dim, s.len, s.nstate);
  UMAMBA_CHECK(s.nstate <= kMaxState,
               "selective scan: nstate {} is over the kernels' limit of {} states", s.nstate,
               kMaxState);
  UMAMBA_CHECK(s.len < kIntMax - 1024, "selective scan: len {} must be below 2^31", s.len);
  UMAMBA_CHECK(s.batch * s.dim < kIntMax, "selective scan: batch*dim = {} must be below 2^31",
               s.batch * s.dim);
  UMAMBA_CHECK(
      tuning.fwd_short_items == 0 || tuning.fwd_short_items == 8 || tuning.fwd_short_items == 16,
      "selective scan: forward short-row steps per lane {} (8 or 16; 0: choose)",
      tuning.fwd_short_items);
  const int max_short =
      32 * (tuning.fwd_short_items > 0 ? tuning.fwd_short_items : detail::kFwdItems);
  UMAMBA_CHECK(tuning.fwd_short_len >= 0 && tuning.fwd_short_len <= max_short,
               "selective scan: forward short-row length {} (0 to {})", tuning.fwd_short_len,
               max_short);
  UMAMBA_CHECK(tuning.fwd_state_split == 0 || tuning.fwd_state_split == 1 ||
                   tuning.fwd_state_split == 2 || tuning.fwd_state_split == 4,
               "selective scan: forward state split {} (1, 2 or 4; 0: choose)",
               tuning.fwd_state_split);
  UMAMBA_CHECK(tuning.bwd_rows_per_warp == 0 || tuning.bwd_rows_per_warp == 1 ||
                   tuning.bwd_rows_per_warp == 2 || tuning.bwd_rows_per_warp == 4 ||
                   tuning.bwd_rows_per_warp == 8,
               "selective scan: backward rows per warp must be 1, 2, 4 or 8, not {}",
               tuning.bwd_rows_per_warp);
  UMAMBA_CHECK(tuning.bwd_blocks_per_sm == 0 ||
                   (tuning.bwd_blocks_per_sm >= 2 && tuning.bwd_blocks_per_sm <= 4),
               "selective scan: backward blocks per SM must be 2, 3 or 4, not {}",
               tuning.bwd_blocks_per_sm);
  UMAMBA_CHECK(tuning.bwd_state_split == 0 || tuning.bwd_state_split == 1 ||
                   tuning.bwd_state_split == 2 || tuning.bwd_state_split == 4,
               "selective scan: backward state split {} (1, 2 or 4; 0: choose)",
               tuning.bwd_state_split);
  UMAMBA_CHECK(tuning.bwd_state_split <= 1 || tuning.bwd_reduce != detail::kReduceBlock,
               "selective scan: the backward state split works with warp atomics (bwd_reduce 2), "
               "not the block reduction");
  UMAMBA_CHECK(tuning.bwd_reduce >= 0 && tuning.bwd_reduce <= 3,
               "selective scan: backward reduce must be 1 (block), 2 (warp) or 3 (direct), not {}",
               tuning.bwd_reduce);
  const int sms = std::max(1, multiprocessors);
  const std::int64_t rows = s.batch * s.dim;
  ScanPlan plan;
  plan.shape = s;

  // Forward. Short rows: one tile of up to 32 lanes x 8 or 16 steps, several rows per warp when
  // they need fewer lanes (a warp's row read coalesced through shared memory when it fills the
  // warp), no carry or segments, and the states split over 2 or 4 warps (each a share, outputs
  // summed in shared memory) while that still fits the GPU in one wave: a row's work is a chain
  // over its states, too short to hide its latency when rows are few. Longer rows, or rows of up to
  // 512 steps too many to split: the block-staged kernel with 256-step tiles - except rows of 257
  // to 512 steps that fit one wave of the one-tile kernel unsplit. Measured on an H200
  // (docs/cuda.md): the one-tile kernel with a split beats the long-row kernel on (12, 32, 512),
  // (2, 420, 320), (2, 640, 210) and (12, 1024, 16); unsplit, on (2, 640, 512), 1280 rows (19.7
  // against 22.7 us fp32, 16.1 against 21.5 bf16); on (12, 512, 512) and (12, 256, 512), 6144 and
  // 3072 rows, the long-row kernel is faster (60.0 against 68.7 us, 31.3 against 36.0, fp32). Steps
  // per lane: 8 where 32 lanes cover the row (a shorter chain per lane; 78 registers, 24 warps per
  // SM), else 16 (128 registers, 16 warps).
  const int short_items = tuning.fwd_short_items > 0 ? tuning.fwd_short_items
                          : s.len <= 32 * 8          ? 8
                                                     : detail::kFwdItems;
  const std::int64_t fwd_capacity =
      tuning.fwd_target_warps > 0
          ? tuning.fwd_target_warps
          : (short_items == 8 ? kFwdShortWarpsPerSm8 : kFwdShortWarpsPerSm16) * sms;
  const int short_lanes =
      static_cast<int>(std::min<std::int64_t>(32, pow2_at_least(ceil_div(s.len, short_items))));
  const std::int64_t short_tasks = ceil_div(rows, 32 / short_lanes);
  auto split_for = [&](std::int64_t tasks) {
    int split = 1;
    while (split < 4 && tasks * split * 2 <= fwd_capacity && s.nstate >= 2 * split) split *= 2;
    return split;
  };
  const bool short_rows =
      tuning.fwd_short_len > 0
          ? s.len <= tuning.fwd_short_len
          : s.len <= 64 ||
                (s.len <= 32 * short_items &&
                 (split_for(short_tasks) >= 2 || (s.len > 32 * 8 && short_tasks <= fwd_capacity)));
  if (short_rows) {
    plan.fwd_one_tile = true;
    plan.fwd_items = short_items;
    plan.fwd_lanes = short_lanes;
    plan.fwd_segments = 1;
    plan.fwd_segment_len = s.len;
    plan.fwd_state_split =
        tuning.fwd_state_split > 0 ? tuning.fwd_state_split : split_for(short_tasks);
  } else {
    plan.fwd_items = detail::kLongItems;
    plan.fwd_lanes = 32;
    const std::int64_t tile = 32 * plan.fwd_items;
    const std::int64_t ntiles = ceil_div(s.len, tile);
    // Segments from the wave model (choose_segments): 6 blocks of 4 warps resident per SM.
    const std::int64_t slots =
        (tuning.fwd_target_warps > 0 ? tuning.fwd_target_warps : 4 * kFwdLongBlocksPerSm * sms) /
        detail::kFwdWarps;
    const std::int64_t blocks = s.batch * ceil_div(s.dim, detail::kFwdWarps);
    std::int64_t segs =
        tuning.fwd_segments > 0
            ? tuning.fwd_segments
            : choose_segments(blocks, s.len, std::max<std::int64_t>(1, slots),
                              kFwdSummaryBlocksPerSm * sms, kMaxPieces, kFwdBlockOverheadSteps);
    segs = std::clamp<std::int64_t>(segs, 1, ntiles);
    plan.fwd_segment_len = ceil_div(ntiles, segs) * tile;
    plan.fwd_segments = static_cast<int>(ceil_div(s.len, plan.fwd_segment_len));
    if (plan.fwd_segments > 1) {
      const std::int64_t seg_tiles = plan.fwd_segment_len / tile;
      std::int64_t f = tuning.fwd_summary_pieces;
      UMAMBA_CHECK(f >= 0 && (f == 0 || seg_tiles % f == 0),
                   "selective scan: forward summary pieces {} must divide the segment's {} tiles "
                   "(0: choose)",
                   f, seg_tiles);
      if (f == 0)
        f = best_pieces(blocks * (plan.fwd_segments - 1), seg_tiles,
                        std::max<std::int64_t>(1, kMaxPieces / plan.fwd_segments),
                        kFwdSummaryBlocksPerSm * sms, kFwdBlockOverheadSteps)
                .pieces;
      plan.fwd_summary_pieces = static_cast<int>(f);
    }
  }

  // Backward. Rows up to 128 steps: one tile of <= 16 lanes x 8 steps; longer rows: 256-step tiles.
  if (s.len <= 32 * detail::kBwdItems / 2) {
    plan.bwd_lanes = pow2_at_least(ceil_div(s.len, detail::kBwdItems));
    plan.bwd_segments = 1;
    plan.bwd_segment_len = s.len;
    plan.bwd_rows_per_warp = 1;
  } else {
    plan.bwd_lanes = 32;
    // dB/dC over channels: per-warp coalesced atomics (no block barrier per state, B and C staged
    // inside each row's pass: ~170 registers and 47 KB of shared memory, 3 blocks per SM), or the
    // block reduction (fewer atomics, B and C staged once per tile for the block's rows, but 255
    // registers and 84 KB: 2 blocks per SM). The block reduction holds at most kBwdSmemState
    // states. Measured on an H200 (docs/cuda.md): warp atomics with 3 blocks per SM are faster.
    plan.bwd_reduce = tuning.bwd_reduce > 0 ? tuning.bwd_reduce : detail::kReduceWarp;
    if (s.nstate > detail::kBwdSmemState && plan.bwd_reduce == detail::kReduceBlock)
      plan.bwd_reduce = detail::kReduceWarp;
    const bool warp_reduce = plan.bwd_reduce != detail::kReduceBlock;  // warp or direct
    plan.bwd_blocks_per_sm = tuning.bwd_blocks_per_sm > 0 ? tuning.bwd_blocks_per_sm
                             : warp_reduce                ? 3
                                                          : 2;
    if (!warp_reduce) plan.bwd_blocks_per_sm = std::min(plan.bwd_blocks_per_sm, 3);
    const std::int64_t nchunks = ceil_div(s.len, kStateChunk);
    const std::int64_t target =
        tuning.bwd_target_blocks > 0 ? tuning.bwd_target_blocks : plan.bwd_blocks_per_sm * sms;
    // State split (warp atomics): 2 or 4 warps a channel, on rows of at most 2 tiles whose blocks
    // would fill so little of a wave that 2 or 4 times as many still fit in one (there segments
    // cannot add much parallelism). Measured on an H200: (12, 32, 512), 96 blocks, 36.0 -> 34.4 us
    // with 2 and 30.0 us with 4; slower everywhere else, long rows included (they take segments).
    plan.bwd_state_split = 1;
    if (warp_reduce && tuning.bwd_state_split > 0) {
      plan.bwd_state_split = tuning.bwd_state_split;
    } else if (warp_reduce && nchunks <= 2) {
      auto split_blocks = [&](int split) {
        return s.batch * ceil_div(s.dim, detail::kBwdWarps / split);
      };
      while (plan.bwd_state_split < 4 && split_blocks(2 * plan.bwd_state_split) <= target)
        plan.bwd_state_split *= 2;
    }
    const int channels_per_pass = detail::kBwdWarps / plan.bwd_state_split;
    auto blocks_for = [&](int r) { return s.batch * ceil_div(s.dim, channels_per_pass * r); };
    int r = tuning.bwd_rows_per_warp;
    std::int64_t segs = tuning.bwd_segments > 0 ? tuning.bwd_segments : 0;
    if (r == 0 && warp_reduce) {
      r = 1;  // B and C are staged per row: more rows per warp only make fewer, longer blocks
    } else if (r == 0) {
      if (blocks_for(1) >= target) {
        r = 1;  // enough blocks without segments: the largest R that still keeps the target busy
        while (r < 8 && blocks_for(2 * r) >= target) r *= 2;
      } else {
        // Segments are needed: fuller blocks (fewer dB/dC atomics) as long as the row can be cut
        // into enough segments to keep the target busy.
        r = 4;
        while (r > 1 && blocks_for(r) * nchunks < target) r /= 2;
      }
    }
    // Segments from the wave model (choose_segments; "blocks for one wave" lost up to 2.5x).
    if (segs == 0)
      segs = choose_segments(blocks_for(r), s.len, target, kBwdSummaryBlocksPerSm * sms, 1, 0);
    segs = std::clamp<std::int64_t>(segs, 1, nchunks);
    plan.bwd_rows_per_warp = r;
    plan.bwd_segment_len = ceil_div(nchunks, segs) * kStateChunk;
    plan.bwd_segments = static_cast<int>(ceil_div(s.len, plan.bwd_segment_len));
  }

  plan.state_chunks = s.len > kStateChunk ? ceil_div(s.len, kStateChunk) : 0;
  plan.states_floats = static_cast<std::size_t>(rows * plan.state_chunks * s.nstate);
  auto summary_bytes = [&](int segs) {
    return segs > 1 ? static_cast<std::size_t>(rows) * segs * (s.nstate + 1) * sizeof(float)
                    : std::size_t{0};
  };
  plan.fwd_scratch_bytes = summary_bytes(plan.fwd_segments * plan.fwd_summary_pieces);
  plan.bwd_scratch_bytes = summary_bytes(plan.bwd_segments);
  return plan;
}

namespace {

void check_same_shape(const ScanShape& a, const ScanShape& b) {
  UMAMBA_CHECK(
      a.batch == b.batch && a.dim == b.dim && a.len == b.len && a.nstate == b.nstate,
      "selective scan: the plan is for ({}, {}, {}, {}) but the arguments are ({}, {}, {}, "
      "{})",
      a.batch, a.dim, a.len, a.nstate, b.batch, b.dim, b.len, b.nstate);
}

// 16-byte accesses need 16-byte aligned bases and strides that keep every row aligned (a thread's
// run starts at a multiple of 8 or 16 steps; a run cut by the end of a row is read element-wise).
bool vec_ok(std::size_t es, std::initializer_list<std::pair<const void*, RowStrides>> rows,
            std::initializer_list<std::pair<const void*, StateStrides>> planes) {
  const std::int64_t v = 16 / static_cast<std::int64_t>(es);
  bool ok = true;
  for (const auto& [p, st] : rows)
    if (p && (!aligned16(p) || st.batch % v || st.dim % v)) ok = false;
  for (const auto& [p, st] : planes)
    if (p && (!aligned16(p) || st.batch % v || st.state % v)) ok = false;
  return ok;
}

}  // namespace

void scan_forward(const ScanForwardArgs& a, const ScanPlan& plan, Stream stream) {
  const auto& s = a.shape;
  check_same_shape(plan.shape, s);
  UMAMBA_CHECK(a.u && a.delta && a.A && a.B && a.C && a.out,
               "selective scan forward: u, delta, A, B, C and out are required");
  UMAMBA_CHECK(plan.fwd_segments <= 1 || a.scratch,
               "selective scan forward: the plan needs {} bytes of scratch",
               plan.fwd_scratch_bytes);
  UMAMBA_CHECK(!a.scratch || aligned16(a.scratch),
               "selective scan: scratch must be 16-byte aligned");
  const std::size_t es = element_size(a.dtype);
  detail::FwdParams p{};
  p.batch = static_cast<int>(s.batch);
  p.dim = static_cast<int>(s.dim);
  p.len = static_cast<int>(s.len);
  p.nstate = static_cast<int>(s.nstate);
  p.lanes = plan.fwd_lanes;
  p.items = plan.fwd_items;
  p.state_split = plan.fwd_state_split;
  p.one_tile = plan.fwd_one_tile;
  p.segments = plan.fwd_segments;
  p.seg_len = static_cast<int>(plan.fwd_segment_len);
  p.pieces = plan.fwd_summary_pieces;
  p.chunks = static_cast<int>(plan.state_chunks);
  p.softplus = a.delta_softplus;
  p.vec = vec_ok(
      es,
      {{a.u, a.u_strides}, {a.delta, a.delta_strides}, {a.z, a.z_strides}, {a.out, a.out_strides}},
      {{a.B, a.B_strides}, {a.C, a.C_strides}});
  p.u = a.u;
  p.u_sb = a.u_strides.batch;
  p.u_sd = a.u_strides.dim;
  p.delta = a.delta;
  p.dl_sb = a.delta_strides.batch;
  p.dl_sd = a.delta_strides.dim;
  p.A = a.A;
  p.B = a.B;
  p.B_sb = a.B_strides.batch;
  p.B_sn = a.B_strides.state;
  p.C = a.C;
  p.C_sb = a.C_strides.batch;
  p.C_sn = a.C_strides.state;
  p.D = a.D;
  p.z = a.z;
  p.z_sb = a.z_strides.batch;
  p.z_sd = a.z_strides.dim;
  p.delta_bias = a.delta_bias;
  p.out = a.out;
  p.o_sb = a.out_strides.batch;
  p.o_sd = a.out_strides.dim;
  p.states = plan.state_chunks > 0 ? a.states : nullptr;
  p.summary = static_cast<float*>(a.scratch);
  int code = 0;
  switch (a.dtype) {
    case ScanDtype::F32:
      code = detail::launch_forward_fp32(p, stream);
      break;
    case ScanDtype::BF16:
      code = detail::launch_forward_bf16(p, stream);
      break;
    case ScanDtype::F16:
      code = detail::launch_forward_fp16(p, stream);
      break;
  }
  check_launch(code, "the forward kernel launch");
}

void scan_backward(const ScanBackwardArgs& a, const ScanPlan& plan, Stream stream) {
  const auto& s = a.shape;
  check_same_shape(plan.shape, s);
  UMAMBA_CHECK(a.u && a.delta && a.A && a.B && a.C && a.dout,
               "selective scan backward: u, delta, A, B, C and dout are required");
  UMAMBA_CHECK(a.du && a.ddelta && a.dA && a.dB && a.dC,
               "selective scan backward: du, ddelta, dA, dB and dC are required");
  UMAMBA_CHECK(!a.z || a.dz, "selective scan backward: z is given, so dz is required");
  UMAMBA_CHECK(!a.D || a.dD, "selective scan backward: D is given, so dD is required");
  UMAMBA_CHECK(!a.delta_bias || a.ddelta_bias,
               "selective scan backward: delta_bias is given, so ddelta_bias is required");
  UMAMBA_CHECK(plan.state_chunks == 0 || a.states,
               "selective scan backward: len {} > {} needs the states the forward saved", s.len,
               kStateChunk);
  UMAMBA_CHECK(plan.bwd_segments <= 1 || a.scratch,
               "selective scan backward: the plan needs {} bytes of scratch",
               plan.bwd_scratch_bytes);
  UMAMBA_CHECK(!a.scratch || aligned16(a.scratch),
               "selective scan: scratch must be 16-byte aligned");
  const std::size_t es = element_size(a.dtype);
  detail::BwdParams p{};
  p.batch = static_cast<int>(s.batch);
  p.dim = static_cast<int>(s.dim);
  p.len = static_cast<int>(s.len);
  p.nstate = static_cast<int>(s.nstate);
  p.lanes = plan.bwd_lanes;
  p.segments = plan.bwd_segments;
  p.seg_len = static_cast<int>(plan.bwd_segment_len);
  p.rows_per_warp = plan.bwd_rows_per_warp;
  p.state_split = plan.bwd_state_split;
  p.blocks_per_sm = plan.bwd_blocks_per_sm;
  p.reduce = plan.bwd_reduce;
  p.chunks = static_cast<int>(plan.state_chunks);
  p.softplus = a.delta_softplus;
  p.vec = vec_ok(es,
                 {{a.u, a.u_strides},
                  {a.delta, a.delta_strides},
                  {a.z, a.z_strides},
                  {a.dout, a.dout_strides},
                  {a.du, a.du_strides},
                  {a.ddelta, a.ddelta_strides},
                  {a.dz, a.dz_strides}},
                 {{a.B, a.B_strides}, {a.C, a.C_strides}});
  // dB and dC [batch, nstate, len] fp32: every row 16-byte aligned allows 4-float atomics.
  p.vec_dbc = aligned16(a.dB) && aligned16(a.dC) && s.len % 4 == 0;
  p.u = a.u;
  p.u_sb = a.u_strides.batch;
  p.u_sd = a.u_strides.dim;
  p.delta = a.delta;
  p.dl_sb = a.delta_strides.batch;
  p.dl_sd = a.delta_strides.dim;
  p.A = a.A;
  p.B = a.B;
  p.B_sb = a.B_strides.batch;
  p.B_sn = a.B_strides.state;
  p.C = a.C;
  p.C_sb = a.C_strides.batch;
  p.C_sn = a.C_strides.state;
  p.D = a.D;
  p.z = a.z;
  p.z_sb = a.z_strides.batch;
  p.z_sd = a.z_strides.dim;
  p.delta_bias = a.delta_bias;
  p.states = a.states;
  p.dout = a.dout;
  p.do_sb = a.dout_strides.batch;
  p.do_sd = a.dout_strides.dim;
  p.du = a.du;
  p.du_sb = a.du_strides.batch;
  p.du_sd = a.du_strides.dim;
  p.ddelta = a.ddelta;
  p.dd_sb = a.ddelta_strides.batch;
  p.dd_sd = a.ddelta_strides.dim;
  p.dz = a.z ? a.dz : nullptr;
  p.dz_sb = a.dz_strides.batch;
  p.dz_sd = a.dz_strides.dim;
  p.dA = a.dA;
  p.dB = a.dB;
  p.dC = a.dC;
  p.dD = a.D ? a.dD : nullptr;
  p.ddelta_bias = a.delta_bias ? a.ddelta_bias : nullptr;
  p.summary = static_cast<float*>(a.scratch);
  int code = 0;
  switch (a.dtype) {
    case ScanDtype::F32:
      code = detail::launch_backward_fp32(p, stream);
      break;
    case ScanDtype::BF16:
      code = detail::launch_backward_bf16(p, stream);
      break;
    case ScanDtype::F16:
      code = detail::launch_backward_fp16(p, stream);
      break;
  }
  check_launch(code, "the backward kernel launch");
}

}  // namespace umamba::cuda
