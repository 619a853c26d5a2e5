// The CPU reference of the selective scan (cuda/selective_scan_ref.h) against plainer forms of the
// same definition: the forward against the closed-form sum h_t = sum_{s<=t} exp(A * sum_{r=s+1..t}
// dt_r) dt_s B_s u_s (no recurrence), the backward against central finite differences of
// sum(dout * out) in double. Also the launch plan's invariants. CPU only: runs everywhere.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "core/error.h"
#include "cuda/scan_test_util.h"
#include "cuda/selective_scan.h"
#include "cuda/selective_scan_ref.h"

namespace {

using umamba::cuda::ScanDtype;
using umamba::cuda::ScanShape;
using umamba::cuda::testing::make_problem;
using umamba::cuda::testing::max_rel_error;
using umamba::cuda::testing::Problem;
using umamba::cuda::testing::ProblemOptions;
namespace ref = umamba::cuda::ref;

double softplus(double x) {
  return x > 20 ? x : std::log1p(std::exp(x));
}

std::vector<double> closed_form_forward(const Problem& p) {
  const auto& s = p.shape;
  std::vector<double> out(static_cast<std::size_t>(s.batch * s.dim * s.len));
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t d = 0; d < s.dim; ++d) {
      const auto row = [&](std::int64_t t) { return (b * s.dim + d) * s.len + t; };
      std::vector<double> dt(static_cast<std::size_t>(s.len));
      for (std::int64_t t = 0; t < s.len; ++t) {
        const double x = p.delta[row(t)] + (p.opt.use_bias ? p.bias[d] : 0.0);
        dt[t] = p.opt.softplus ? softplus(x) : x;
      }
      for (std::int64_t t = 0; t < s.len; ++t) {
        double y = 0;
        for (std::int64_t n = 0; n < s.nstate; ++n) {
          const double a = p.A[d * s.nstate + n];
          double h = 0;
          for (std::int64_t j = 0; j <= t; ++j) {
            double later = 0;  // sum of dt over (j, t]
            for (std::int64_t r = j + 1; r <= t; ++r) later += dt[r];
            h += std::exp(a * later) * dt[j] * p.B[(b * s.nstate + n) * s.len + j] * p.u[row(j)];
          }
          y += p.C[(b * s.nstate + n) * s.len + t] * h;
        }
        double o = y + (p.opt.use_D ? p.D[d] * p.u[row(t)] : 0.0);
        if (p.opt.use_z) {
          const double z = p.z[row(t)];
          o *= z / (1 + std::exp(-z));
        }
        out[row(t)] = o;
      }
    }
  return out;
}

double loss(const Problem& p) {
  const auto out = ref::scan_forward(p.view());
  double l = 0;
  for (std::size_t i = 0; i < out.size(); ++i) l += p.dout[i] * out[i];
  return l;
}

// Central difference of the loss with respect to every element of `field`, against `analytic`.
void expect_matches_fd(Problem p, std::vector<double> Problem::*field,
                       const std::vector<double>& analytic, const char* name) {
  std::vector<double>& v = p.*field;
  ASSERT_EQ(v.size(), analytic.size()) << name;
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double x = v[i];
    const double h = 1e-6 * std::max(1.0, std::abs(x));
    v[i] = x + h;
    const double lp = loss(p);
    v[i] = x - h;
    const double lm = loss(p);
    v[i] = x;
    const double fd = (lp - lm) / (2 * h);
    worst = std::max(worst, std::abs(fd - analytic[i]));
    scale = std::max(scale, std::abs(fd));
  }
  EXPECT_LE(worst, 1e-6 * std::max(1.0, scale)) << name << ": finite differences disagree";
}

TEST(Cuda_ScanRef, forward_matches_closed_form) {
  const std::vector<ScanShape> shapes = {{1, 1, 1, 1}, {2, 3, 17, 4}, {1, 2, 40, 16}};
  for (const auto& s : shapes)
    for (int variant = 0; variant < 3; ++variant) {
      ProblemOptions o;
      if (variant == 1) o = {false, false, false, true};
      if (variant == 2) o = {true, true, true, false};
      const Problem p = make_problem(s, ScanDtype::F32, 11 + variant, o);
      const auto got = ref::scan_forward(p.view());
      const auto want = closed_form_forward(p);
      EXPECT_LE(max_rel_error(got, want), 1e-12)
          << "shape " << s.batch << "x" << s.dim << "x" << s.len << "x" << s.nstate << " variant "
          << variant;
    }
}

TEST(Cuda_ScanRef, backward_matches_finite_differences) {
  for (int variant = 0; variant < 3; ++variant) {
    ProblemOptions o;
    if (variant == 1) o = {false, false, false, true};
    if (variant == 2) o = {true, true, true, false};
    const Problem p = make_problem({2, 3, 9, 4}, ScanDtype::F32, 21 + variant, o);
    const auto g = ref::scan_backward(p.view(), p.dout.data());
    SCOPED_TRACE("variant " + std::to_string(variant));
    expect_matches_fd(p, &Problem::u, g.du, "du");
    expect_matches_fd(p, &Problem::delta, g.ddelta, "ddelta");
    expect_matches_fd(p, &Problem::A, g.dA, "dA");
    expect_matches_fd(p, &Problem::B, g.dB, "dB");
    expect_matches_fd(p, &Problem::C, g.dC, "dC");
    if (o.use_D) expect_matches_fd(p, &Problem::D, g.dD, "dD");
    if (o.use_z) expect_matches_fd(p, &Problem::z, g.dz, "dz");
    if (o.use_bias) expect_matches_fd(p, &Problem::bias, g.ddelta_bias, "ddelta_bias");
    if (!o.use_D) {
      EXPECT_TRUE(g.dD.empty());
    }
    if (!o.use_z) {
      EXPECT_TRUE(g.dz.empty());
    }
  }
}

TEST(Cuda_ScanRef, float_matches_double) {
  const Problem p = make_problem({2, 4, 300, 16}, ScanDtype::F32, 5);
  const auto pd = p.view();
  std::vector<std::vector<float>> f;
  for (const auto* v : {&p.u, &p.delta, &p.A, &p.B, &p.C, &p.D, &p.z, &p.bias, &p.dout})
    f.emplace_back(v->begin(), v->end());
  ref::ScanProblem<float> pf;
  pf.batch = pd.batch;
  pf.dim = pd.dim;
  pf.len = pd.len;
  pf.nstate = pd.nstate;
  pf.u = f[0].data();
  pf.delta = f[1].data();
  pf.A = f[2].data();
  pf.B = f[3].data();
  pf.C = f[4].data();
  pf.D = f[5].data();
  pf.z = f[6].data();
  pf.delta_bias = f[7].data();
  const auto of = ref::scan_forward(pf);
  const auto od = ref::scan_forward(pd);
  EXPECT_LE(max_rel_error(std::vector<double>(of.begin(), of.end()), od), 1e-5);
  const auto gf = ref::scan_backward(pf, f[8].data());
  const auto gd = ref::scan_backward(pd, p.dout.data());
  auto cmp = [](const std::vector<float>& a, const std::vector<double>& b) {
    return max_rel_error(std::vector<double>(a.begin(), a.end()), b);
  };
  EXPECT_LE(cmp(gf.du, gd.du), 1e-4);
  EXPECT_LE(cmp(gf.ddelta, gd.ddelta), 1e-4);
  EXPECT_LE(cmp(gf.dA, gd.dA), 1e-4);
  EXPECT_LE(cmp(gf.dB, gd.dB), 1e-4);
  EXPECT_LE(cmp(gf.dC, gd.dC), 1e-4);
  EXPECT_LE(cmp(gf.dz, gd.dz), 1e-4);
}

TEST(Cuda_ScanPlan, segments_cover_every_row) {
  const std::vector<ScanShape> shapes = {
      {1, 1, 1, 16},        {12, 1024, 16, 16},   {2, 640, 210, 16}, {2, 3, 257, 16},
      {12, 128, 65536, 16}, {2, 64, 1720320, 16}, {1, 2, 20000, 64}};
  for (const auto& s : shapes)
    for (int forced = 0; forced < 2; ++forced) {
      umamba::cuda::ScanTuning t;
      if (forced) {
        t.fwd_segments = 5;
        t.bwd_segments = 7;
        t.bwd_rows_per_warp = 2;
      }
      const auto plan = umamba::cuda::plan_scan(s, t, 132);
      SCOPED_TRACE(plan.describe() + " len " + std::to_string(s.len));
      EXPECT_GE(plan.fwd_segments * plan.fwd_segment_len, s.len);
      EXPECT_LT((plan.fwd_segments - 1) * plan.fwd_segment_len, s.len);
      EXPECT_GE(plan.bwd_segments * plan.bwd_segment_len, s.len);
      EXPECT_LT((plan.bwd_segments - 1) * plan.bwd_segment_len, s.len);
      if (s.len > 32 * 16) {
        EXPECT_EQ(plan.fwd_lanes, 32);  // the long-row kernel
      }
      EXPECT_GE(plan.fwd_lanes * plan.fwd_items, std::min<std::int64_t>(s.len, 256));
      if (s.len > umamba::cuda::kStateChunk) {
        if (plan.fwd_segments > 1) {  // (the one-tile kernel has one segment of len steps)
          EXPECT_EQ(plan.fwd_segment_len % umamba::cuda::kStateChunk, 0);
        }
        EXPECT_EQ(plan.bwd_segment_len % umamba::cuda::kStateChunk, 0);
        EXPECT_EQ(plan.states_floats,
                  static_cast<std::size_t>(s.batch * s.dim * s.nstate * ((s.len + 255) / 256)));
      } else {
        EXPECT_EQ(plan.states_floats, 0u);
        EXPECT_EQ(plan.fwd_segments, 1);
        EXPECT_GE(plan.fwd_lanes * plan.fwd_items, s.len);
      }
      EXPECT_EQ(plan.fwd_scratch_bytes > 0, plan.fwd_segments > 1);
      EXPECT_EQ(plan.bwd_scratch_bytes > 0, plan.bwd_segments > 1);
      // Summary pieces divide a segment's tiles, and the scratch holds one summary per piece.
      EXPECT_GE(plan.fwd_summary_pieces, 1);
      if (plan.fwd_segments > 1) {
        EXPECT_EQ(plan.fwd_segment_len % (umamba::cuda::kStateChunk * plan.fwd_summary_pieces), 0);
        EXPECT_EQ(plan.fwd_scratch_bytes,
                  static_cast<std::size_t>(s.batch * s.dim * plan.fwd_segments *
                                           plan.fwd_summary_pieces * (s.nstate + 1) * 4));
      } else {
        EXPECT_EQ(plan.fwd_summary_pieces, 1);
      }
    }
  // Rows too few for the GPU are split; many rows are not.
  EXPECT_GT(umamba::cuda::plan_scan({2, 64, 1720320, 16}, {}, 132).fwd_segments, 1);
  EXPECT_GT(umamba::cuda::plan_scan({2, 64, 1720320, 16}, {}, 132).bwd_segments, 1);
  EXPECT_EQ(umamba::cuda::plan_scan({12, 512, 4096, 16}, {}, 132).fwd_segments, 1);
}

TEST(Cuda_ScanPlan, one_tile_forward_and_short_backward_rows) {
  using umamba::cuda::plan_scan;
  // Forced up to 512 steps: 16 steps per lane beyond 256, never segmented, and the backward still
  // gets its state at 256.
  umamba::cuda::ScanTuning t512;
  t512.fwd_short_len = 512;
  const auto p512 = plan_scan({2, 3, 300, 16}, t512, 132);
  EXPECT_EQ(p512.fwd_items, 16);
  EXPECT_EQ(p512.fwd_lanes, 32);
  EXPECT_EQ(p512.fwd_segments, 1);
  EXPECT_EQ(p512.states_floats, 2u * 3u * 16u * 2u);
  // Up to 256 steps: 32 lanes x 8 steps, unless 16 steps per lane are asked for.
  EXPECT_EQ(plan_scan({2, 3, 210, 16}, t512, 132).fwd_items, 8);
  EXPECT_EQ(plan_scan({2, 3, 210, 16}, t512, 132).fwd_lanes, 32);
  umamba::cuda::ScanTuning k16 = t512;
  k16.fwd_short_items = 16;
  EXPECT_EQ(plan_scan({2, 3, 210, 16}, k16, 132).fwd_lanes, 16);
  // Few rows: the states are split over up to 4 warps, as many as fit the GPU in one wave (16 warps
  // per SM at 16 steps per lane, 24 at 8) and never more warps than states; many rows: not split.
  EXPECT_EQ(plan_scan({2, 640, 210, 16}, k16, 132).fwd_state_split, 2);
  EXPECT_EQ(plan_scan({1, 1, 40, 2}, t512, 132).fwd_state_split, 2);
  EXPECT_EQ(plan_scan({1, 1, 40, 1}, {}, 132).fwd_state_split, 1);
  EXPECT_EQ(plan_scan({1, 1, 40, 3}, {}, 132).fwd_state_split, 2);
  EXPECT_EQ(plan_scan({64, 4096, 16, 16}, {}, 132).fwd_state_split, 1);
  // By default rows of 65 to 512 steps take the one-tile kernel only where the states can be split.
  EXPECT_EQ(plan_scan({12, 32, 512, 16}, {}, 132).fwd_items, 16);
  EXPECT_EQ(plan_scan({12, 32, 512, 16}, {}, 132).fwd_state_split, 4);
  EXPECT_EQ(plan_scan({2, 420, 320, 16}, {}, 132).fwd_state_split, 2);
  EXPECT_EQ(plan_scan({12, 512, 512, 16}, {}, 132).fwd_items, 8);  // the long-row kernel
  // ... and rows of 257 to 512 steps that fit one wave of the one-tile kernel unsplit (16 warps per
  // SM): (2, 640, 512), 1280 rows of 2112; (12, 256, 512), 3072 rows, does not fit.
  EXPECT_TRUE(plan_scan({2, 640, 512, 16}, {}, 132).fwd_one_tile);
  EXPECT_EQ(plan_scan({2, 640, 512, 16}, {}, 132).fwd_state_split, 1);
  EXPECT_FALSE(plan_scan({12, 256, 512, 16}, {}, 132).fwd_one_tile);
  EXPECT_EQ(plan_scan({12, 1024, 16, 16}, {}, 132).fwd_state_split, 4);
  EXPECT_EQ(plan_scan({2, 640, 210, 16}, {}, 132).fwd_items, 8);
  EXPECT_EQ(plan_scan({2, 640, 210, 16}, {}, 132).fwd_state_split, 2);
  // Backward rows of at most 4 tiles: segments only where the summary pass is paid back.
  EXPECT_EQ(plan_scan({12, 32, 512, 16}, {}, 132).bwd_segments, 1);  // split 4 instead (below)
  EXPECT_EQ(plan_scan({2, 420, 320, 16}, {}, 132).bwd_segments, 1);
  EXPECT_EQ(plan_scan({2, 640, 840, 16}, {}, 132).bwd_segments, 1);
  EXPECT_GT(plan_scan({2, 512, 6720, 16}, {}, 132).bwd_segments, 1);
}

TEST(Cuda_ScanPlan, segments_follow_the_wave_model) {
  using umamba::cuda::plan_scan;
  // (12, 128, 65536) backward: 384 blocks of one segment fill one wave of 396 (3 per SM on 132);
  // 2 segments would take 2 waves of half the length plus a summary pass.
  EXPECT_EQ(plan_scan({12, 128, 65536, 16}, {}, 132).bwd_segments, 1);
  // On 100 SMs (300 resident) they would take 2 waves, the second a quarter full: segments pay.
  EXPECT_GT(plan_scan({12, 128, 65536, 16}, {}, 100).bwd_segments, 1);
  // Few rows of very long sequences: many short segments, so that the main pass ends in a nearly
  // full last wave and the summary pass walks short segments (H200 sweep: more segments were faster
  // up to the 24 measured on (2, 64, 1720320), 2.5x faster than 13).
  const auto longest = plan_scan({2, 64, 1720320, 16}, {}, 132);
  EXPECT_GE(longest.bwd_segments, 32);
  EXPECT_GE(longest.fwd_segments, 32);
  // The main pass's blocks fill their last wave at least half way on these shapes (3 blocks per
  // SM backward, 6 forward).
  for (const ScanShape s : {ScanShape{2, 64, 1720320, 16}, ScanShape{2, 128, 430080, 16},
                            ScanShape{12, 64, 262144, 16}, ScanShape{2, 256, 53760, 16}}) {
    const auto plan = plan_scan(s, {}, 132);
    SCOPED_TRACE(plan.describe());
    const std::int64_t blocks = s.batch * ((s.dim + 3) / 4);
    const std::int64_t last_bwd = (blocks * plan.bwd_segments) % 396;
    const std::int64_t last_fwd = (blocks * plan.fwd_segments) % 792;
    EXPECT_TRUE(last_bwd == 0 || 2 * last_bwd >= 396) << last_bwd;
    EXPECT_TRUE(last_fwd == 0 || 2 * last_fwd >= 792) << last_fwd;
  }
}

TEST(Cuda_ScanPlan, forward_summaries_in_pieces_when_segments_are_few_and_long) {
  using umamba::cuda::plan_scan;
  // (12, 128, 65536): 2 segments of 32768 steps; one summary block per row group would be 384
  // blocks, 0.58 of the summary pass's wave (5 per SM on 132) walking 32768 steps. In pieces the
  // pass gets at least a wave of shorter blocks.
  const auto plan = plan_scan({12, 128, 65536, 16}, {}, 132);
  SCOPED_TRACE(plan.describe());
  ASSERT_EQ(plan.fwd_segments, 2);
  EXPECT_GT(plan.fwd_summary_pieces, 1);
  EXPECT_GE(384 * plan.fwd_summary_pieces, 5 * 132);
  // Forced: a divisor of the segment's tiles is taken as given, anything else is refused.
  umamba::cuda::ScanTuning t;
  t.fwd_summary_pieces = 4;
  EXPECT_EQ(plan_scan({12, 128, 65536, 16}, t, 132).fwd_summary_pieces, 4);
  t.fwd_summary_pieces = 3;
  EXPECT_THROW(plan_scan({12, 128, 65536, 16}, t, 132), umamba::Error);
  // Where pieces would add waves of short blocks, each paying a block's fixed cost (about a tile),
  // none: (2, 512, 6720), 3 segments of 9 tiles, 512 summary blocks (H200: 9 pieces 189 us, none
  // 181 us).
  EXPECT_EQ(plan_scan({2, 512, 6720, 16}, {}, 132).fwd_summary_pieces, 1);
  // The block's fixed cost in the model: (2, 640, 4096) takes 2 segments, not 16 of one tile
  // (H200 sweep: 130 against 152 us).
  EXPECT_EQ(plan_scan({2, 640, 4096, 16}, {}, 132).fwd_segments, 2);
}

TEST(Cuda_ScanPlan, rejects_unsupported_shapes) {
  EXPECT_THROW(umamba::cuda::plan_scan({1, 1, 10, 65}, {}, 132), umamba::Error);
  EXPECT_THROW(umamba::cuda::plan_scan({1, 1, 0, 16}, {}, 132), umamba::Error);
  EXPECT_THROW(umamba::cuda::plan_scan({0, 1, 10, 16}, {}, 132), umamba::Error);
  umamba::cuda::ScanTuning bad;
  bad.bwd_rows_per_warp = 3;
  EXPECT_THROW(umamba::cuda::plan_scan({1, 1, 1000, 16}, bad, 132), umamba::Error);
  umamba::cuda::ScanTuning bad_reduce;
  bad_reduce.bwd_reduce = 4;
  EXPECT_THROW(umamba::cuda::plan_scan({1, 1, 1000, 16}, bad_reduce, 132), umamba::Error);
  umamba::cuda::ScanTuning bad_blocks;
  bad_blocks.bwd_blocks_per_sm = 5;
  EXPECT_THROW(umamba::cuda::plan_scan({1, 1, 1000, 16}, bad_blocks, 132), umamba::Error);
  umamba::cuda::ScanTuning bad_split;
  bad_split.fwd_state_split = 3;
  EXPECT_THROW(umamba::cuda::plan_scan({2, 3, 30, 16}, bad_split, 132), umamba::Error);
  umamba::cuda::ScanTuning too_long;
  too_long.fwd_short_len = 513;
  EXPECT_THROW(umamba::cuda::plan_scan({2, 3, 300, 16}, too_long, 132), umamba::Error);
}

TEST(Cuda_ScanPlan, block_reduction_only_where_it_fits) {
  // The block reduction holds at most 16 states in shared memory and fits 2-3 blocks per SM:
  // asked for more states it falls back to warp atomics, asked for 4 blocks it takes 3.
  umamba::cuda::ScanTuning block;
  block.bwd_reduce = 1;
  block.bwd_blocks_per_sm = 4;
  const auto p16 = umamba::cuda::plan_scan({2, 8, 5000, 16}, block, 132);
  EXPECT_EQ(p16.bwd_reduce, 1);
  EXPECT_EQ(p16.bwd_blocks_per_sm, 3);
  const auto p64 = umamba::cuda::plan_scan({2, 8, 5000, 64}, block, 132);
  EXPECT_EQ(p64.bwd_reduce, 2);
  EXPECT_EQ(p64.bwd_blocks_per_sm, 4);
  const auto dflt = umamba::cuda::plan_scan({12, 512, 4096, 16}, {}, 132);
  EXPECT_EQ(dflt.bwd_reduce, 2);
  EXPECT_EQ(dflt.bwd_blocks_per_sm, 3);
  // Direct atomics (3) stay asked for at any nstate: they use the warp kernel.
  umamba::cuda::ScanTuning direct;
  direct.bwd_reduce = 3;
  const auto d64 = umamba::cuda::plan_scan({2, 8, 5000, 64}, direct, 132);
  EXPECT_EQ(d64.bwd_reduce, 3);
  EXPECT_NE(d64.describe().find("direct"), std::string::npos) << d64.describe();
}

TEST(Cuda_ScanPlan, backward_state_split_on_few_short_rows_or_when_asked) {
  // By default only rows of at most 2 tiles whose blocks, split, still fit one wave: (12, 32, 512)
  // has 96 blocks, 4 x 96 = 384 <= 396 (3 per SM on 132 SMs); (2, 420, 320) has 210 (2 x 210 do
  // not fit); long rows take segments instead. Asked for, a split of S makes each block take 4/S
  // channels, so S times the blocks; it needs the warp atomics and is 1, 2 or 4.
  EXPECT_EQ(umamba::cuda::plan_scan({12, 32, 512, 16}, {}, 132).bwd_state_split, 4);
  EXPECT_EQ(umamba::cuda::plan_scan({12, 32, 512, 16}, {}, 132).bwd_segments, 1);
  EXPECT_EQ(umamba::cuda::plan_scan({12, 64, 512, 16}, {}, 132).bwd_state_split, 2);
  EXPECT_EQ(umamba::cuda::plan_scan({2, 64, 1720320, 16}, {}, 132).bwd_state_split, 1);
  umamba::cuda::ScanTuning block_reduce;
  block_reduce.bwd_reduce = 1;
  EXPECT_EQ(umamba::cuda::plan_scan({12, 32, 512, 16}, block_reduce, 132).bwd_state_split, 1);
  const umamba::cuda::ScanShape s{2, 420, 320, 16};
  const auto dflt = umamba::cuda::plan_scan(s, {}, 132);
  EXPECT_EQ(dflt.bwd_state_split, 1);
  umamba::cuda::ScanTuning two;
  two.bwd_state_split = 2;
  two.bwd_segments = 1;
  const auto p2 = umamba::cuda::plan_scan(s, two, 132);
  EXPECT_EQ(p2.bwd_state_split, 2);
  EXPECT_NE(p2.describe().find("split 2"), std::string::npos) << p2.describe();
  const auto short_rows = umamba::cuda::plan_scan({2, 420, 100, 16}, two, 132);
  EXPECT_EQ(short_rows.bwd_state_split, 1);  // one-tile rows: the short kernel, no split
  umamba::cuda::ScanTuning three;
  three.bwd_state_split = 3;
  EXPECT_THROW(umamba::cuda::plan_scan(s, three, 132), umamba::Error);
  umamba::cuda::ScanTuning with_block = two;
  with_block.bwd_reduce = 1;
  EXPECT_THROW(umamba::cuda::plan_scan(s, with_block, 132), umamba::Error);
}

}  // namespace
