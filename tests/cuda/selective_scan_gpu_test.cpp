// The CUDA selective-scan kernels against the CPU reference in double, on fresh random inputs over
// a grid of shapes (L = 1, L not a multiple of any tile, tile and segment boundaries, N = 16 and
// 64 and odd N, B = 1 and 12, long rows split into segments), forced launch plans (segments, rows
// per warp, 8 or 16 steps per thread), strided and unaligned layouts, optional inputs switched off,
// and fp32, bf16 and fp16 inputs. Every output buffer is poisoned with NaN first, so an element the
// kernels fail to write fails the test. Label `gpu`: skips without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "cuda/device.h"
#include "cuda/scan_test_util.h"
#include "cuda/selective_scan.h"
#include "cuda/selective_scan_ref.h"

// The same cases run on the GPU (Cuda_SelectiveScan, label gpu) and, built with the SIMT emulator
// (tests/cuda/simt), on the CPU in every build with the CUDA toolkit (Cuda_SelectiveScanEmulated).
#ifndef UMAMBA_SCAN_SUITE
#define UMAMBA_SCAN_SUITE Cuda_SelectiveScan
#endif

namespace {

using namespace umamba::cuda;
using namespace umamba::cuda::testing;

// Device copy of a [batch][rows][len] array with row stride len + pad (pad elements of garbage).
struct Strided {
  DeviceBuffer buf;
  std::int64_t rs = 0;  // row stride (elements)
  std::int64_t bs = 0;  // batch stride
};

Strided upload_strided(ScanDtype dtype, const std::vector<double>& v, std::int64_t batch,
                       std::int64_t rows, std::int64_t len, std::int64_t pad, std::int64_t offset) {
  Strided s;
  s.rs = len + pad;
  s.bs = rows * s.rs;
  std::vector<double> host(static_cast<std::size_t>(offset + batch * s.bs), 1e30);
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t t = 0; t < len; ++t)
        host[offset + b * s.bs + r * s.rs + t] = v[(b * rows + r) * len + t];
  const auto bytes = encode(dtype, host);
  s.buf = DeviceBuffer(bytes.size());
  s.buf.upload(bytes.data(), bytes.size());
  return s;
}

std::vector<double> download_strided(ScanDtype dtype, const Strided& s, std::int64_t batch,
                                     std::int64_t rows, std::int64_t len, std::int64_t offset) {
  std::vector<unsigned char> bytes(s.buf.size());
  s.buf.download(bytes.data(), bytes.size());
  const auto all = decode(dtype, bytes.data(), bytes.size() / element_size(dtype));
  std::vector<double> out(static_cast<std::size_t>(batch * rows * len));
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t t = 0; t < len; ++t)
        out[(b * rows + r) * len + t] = all[offset + b * s.bs + r * s.rs + t];
  return out;
}

std::vector<double> download_f32(const DeviceBuffer& b, std::size_t count) {
  std::vector<float> f(count);
  b.download(f.data(), count * 4);
  return {f.begin(), f.end()};
}

DeviceBuffer upload_f32(const std::vector<double>& v) {
  std::vector<float> f(v.begin(), v.end());
  DeviceBuffer b(std::max<std::size_t>(f.size(), 1) * 4);
  if (!f.empty()) b.upload(f.data(), f.size() * 4);
  return b;
}

struct Layout {
  std::int64_t pad = 0;     // extra elements after each row of every [., ., len] tensor
  std::int64_t offset = 0;  // elements before the first (offset 1 breaks 16-byte alignment)
};

struct GpuResult {
  std::vector<double> out, du, ddelta, dz, dA, dB, dC, dD, dbias;
};

GpuResult run_gpu(const Problem& p, ScanDtype dtype, const ScanTuning& tuning, Layout lay) {
  const ScanShape& s = p.shape;
  const ScanPlan plan = plan_scan(s, tuning);
  const auto B = s.batch, Dm = s.dim, L = s.len, N = s.nstate;
  const auto nan_rows = std::vector<double>(static_cast<std::size_t>(B * Dm * L),
                                            std::numeric_limits<double>::quiet_NaN());
  Strided u = upload_strided(dtype, p.u, B, Dm, L, lay.pad, lay.offset);
  Strided delta = upload_strided(dtype, p.delta, B, Dm, L, lay.pad, lay.offset);
  Strided z = upload_strided(dtype, p.z, B, Dm, L, lay.pad, lay.offset);
  Strided dout = upload_strided(dtype, p.dout, B, Dm, L, lay.pad, lay.offset);
  Strided Bm = upload_strided(dtype, p.B, B, N, L, lay.pad, lay.offset);
  Strided Cm = upload_strided(dtype, p.C, B, N, L, lay.pad, lay.offset);
  Strided out = upload_strided(dtype, nan_rows, B, Dm, L, lay.pad, lay.offset);
  Strided du = upload_strided(dtype, nan_rows, B, Dm, L, lay.pad, lay.offset);
  Strided ddelta = upload_strided(dtype, nan_rows, B, Dm, L, lay.pad, lay.offset);
  Strided dz = upload_strided(dtype, nan_rows, B, Dm, L, lay.pad, lay.offset);
  DeviceBuffer A = upload_f32(p.A), Dv = upload_f32(p.D), bias = upload_f32(p.bias);
  const auto planes = static_cast<std::size_t>(B * N * L);
  DeviceBuffer dA(static_cast<std::size_t>(Dm * N) * 4), dB(planes * 4), dC(planes * 4);
  DeviceBuffer dD(static_cast<std::size_t>(Dm) * 4), dbias(static_cast<std::size_t>(Dm) * 4);
  for (DeviceBuffer* b : {&dA, &dB, &dC, &dD, &dbias}) b->fill_bytes(0xff);  // NaN
  DeviceBuffer states(std::max<std::size_t>(plan.states_floats, 1) * 4);
  DeviceBuffer fs(std::max<std::size_t>(plan.fwd_scratch_bytes, 16));
  DeviceBuffer bs(std::max<std::size_t>(plan.bwd_scratch_bytes, 16));
  const std::size_t es = element_size(dtype);
  auto at = [&](const Strided& t) {
    return static_cast<void*>(t.buf.as<unsigned char>() + lay.offset * es);
  };
  auto rows = [](const Strided& t) { return RowStrides{t.bs, t.rs}; };
  auto states_of = [](const Strided& t) { return StateStrides{t.bs, t.rs}; };

  ScanForwardArgs f;
  f.dtype = dtype;
  f.shape = s;
  f.u = at(u);
  f.u_strides = rows(u);
  f.delta = at(delta);
  f.delta_strides = rows(delta);
  f.A = A.as<float>();
  f.B = at(Bm);
  f.B_strides = states_of(Bm);
  f.C = at(Cm);
  f.C_strides = states_of(Cm);
  f.D = p.opt.use_D ? Dv.as<float>() : nullptr;
  f.z = p.opt.use_z ? at(z) : nullptr;
  f.z_strides = rows(z);
  f.delta_bias = p.opt.use_bias ? bias.as<float>() : nullptr;
  f.delta_softplus = p.opt.softplus;
  f.out = at(out);
  f.out_strides = rows(out);
  f.states = plan.states_floats ? states.as<float>() : nullptr;
  f.scratch = plan.fwd_scratch_bytes ? fs.get() : nullptr;
  scan_forward(f, plan, nullptr);

  ScanBackwardArgs g;
  g.dtype = dtype;
  g.shape = s;
  g.u = f.u;
  g.u_strides = f.u_strides;
  g.delta = f.delta;
  g.delta_strides = f.delta_strides;
  g.A = f.A;
  g.B = f.B;
  g.B_strides = f.B_strides;
  g.C = f.C;
  g.C_strides = f.C_strides;
  g.D = f.D;
  g.z = f.z;
  g.z_strides = f.z_strides;
  g.delta_bias = f.delta_bias;
  g.delta_softplus = f.delta_softplus;
  g.states = f.states;
  g.dout = at(dout);
  g.dout_strides = rows(dout);
  g.du = at(du);
  g.du_strides = rows(du);
  g.ddelta = at(ddelta);
  g.ddelta_strides = rows(ddelta);
  g.dz = at(dz);
  g.dz_strides = rows(dz);
  g.dA = dA.as<float>();
  g.dB = dB.as<float>();
  g.dC = dC.as<float>();
  g.dD = dD.as<float>();
  g.ddelta_bias = dbias.as<float>();
  g.scratch = plan.bwd_scratch_bytes ? bs.get() : nullptr;
  scan_backward(g, plan, nullptr);
  synchronize();

  GpuResult r;
  r.out = download_strided(dtype, out, B, Dm, L, lay.offset);
  r.du = download_strided(dtype, du, B, Dm, L, lay.offset);
  r.ddelta = download_strided(dtype, ddelta, B, Dm, L, lay.offset);
  if (p.opt.use_z) r.dz = download_strided(dtype, dz, B, Dm, L, lay.offset);
  r.dA = download_f32(dA, static_cast<std::size_t>(Dm * N));
  r.dB = download_f32(dB, planes);
  r.dC = download_f32(dC, planes);
  if (p.opt.use_D) r.dD = download_f32(dD, static_cast<std::size_t>(Dm));
  if (p.opt.use_bias) r.dbias = download_f32(dbias, static_cast<std::size_t>(Dm));
  return r;
}

struct Case {
  ScanShape shape;
  ScanDtype dtype = ScanDtype::F32;
  ScanTuning tuning{};
  ProblemOptions opt{};
  Layout layout{};
  std::string note;
};

std::string describe(const Case& c) {
  const auto& s = c.shape;
  return "(" + std::to_string(s.batch) + "," + std::to_string(s.dim) + "," + std::to_string(s.len) +
         "," + std::to_string(s.nstate) + ") " + to_string(c.dtype) + " " + c.note;
}

void check_case(const Case& c, unsigned seed) {
  SCOPED_TRACE(describe(c));
  const Problem p = make_problem(c.shape, c.dtype, seed, c.opt);
  const auto want_out = ref::scan_forward(p.view());
  const auto want = ref::scan_backward(p.view(), p.dout.data());
  const GpuResult got = run_gpu(p, c.dtype, c.tuning, c.layout);
  const double ft = fwd_tolerance(c.dtype), gt = grad_tolerance(c.dtype),
               g32 = fp32_grad_tolerance();
  EXPECT_LE(max_rel_error(got.out, want_out), ft) << "out";
  EXPECT_LE(max_rel_error(got.du, want.du), gt) << "du";
  EXPECT_LE(max_rel_error(got.ddelta, want.ddelta), gt) << "ddelta";
  if (c.opt.use_z) {
    EXPECT_LE(max_rel_error(got.dz, want.dz), gt) << "dz";
  }
  EXPECT_LE(max_rel_error(got.dA, want.dA), g32) << "dA";
  EXPECT_LE(max_rel_error(got.dB, want.dB), g32) << "dB";
  EXPECT_LE(max_rel_error(got.dC, want.dC), g32) << "dC";
  if (c.opt.use_D) {
    EXPECT_LE(max_rel_error(got.dD, want.dD), g32) << "dD";
  }
  if (c.opt.use_bias) {
    EXPECT_LE(max_rel_error(got.dbias, want.ddelta_bias), g32) << "ddelta_bias";
  }
}

ScanTuning forced(int fwd_segments, int bwd_rows, int bwd_segments, int bwd_reduce = 0,
                  int bwd_blocks_per_sm = 0) {
  ScanTuning t;
  t.fwd_segments = fwd_segments;
  t.bwd_rows_per_warp = bwd_rows;
  t.bwd_segments = bwd_segments;
  t.bwd_reduce = bwd_reduce;
  t.bwd_blocks_per_sm = bwd_blocks_per_sm;
  return t;
}

ScanTuning state_split(int split, int bwd_rows = 0, int bwd_segments = 0) {
  ScanTuning t;
  t.bwd_state_split = split;
  t.bwd_rows_per_warp = bwd_rows;
  t.bwd_segments = bwd_segments;
  return t;
}

ScanTuning short_rows(int fwd_short_len, int fwd_state_split = 0, int fwd_short_items = 0) {
  ScanTuning t;
  t.fwd_short_len = fwd_short_len;
  t.fwd_state_split = fwd_state_split;
  t.fwd_short_items = fwd_short_items;
  return t;
}

const std::vector<ScanShape>& grid() {
  static const std::vector<ScanShape> shapes = {
      {1, 1, 1, 16},   {2, 3, 1, 16},    {2, 3, 7, 16},     {1, 2, 16, 16},    {3, 5, 33, 16},
      {2, 4, 128, 16}, {2, 4, 129, 16},  {2, 3, 256, 16},   {2, 3, 257, 16},   {1, 2, 511, 16},
      {2, 3, 513, 16}, {12, 4, 300, 16}, {12, 9, 1100, 16}, {2, 3, 1000, 64},  {1, 2, 777, 5},
      {1, 3, 600, 32}, {2, 2, 4097, 16}, {1, 2, 20000, 16}, {2, 17, 2000, 16}, {1, 40, 700, 16},
  };
  return shapes;
}

TEST(UMAMBA_SCAN_SUITE, fp32_grid_matches_reference) {
  SKIP_WITHOUT_GPU();
  unsigned seed = 100;
  for (const auto& s : grid()) check_case({s, ScanDtype::F32, {}, {}, {}, "default plan"}, seed++);
}

TEST(UMAMBA_SCAN_SUITE, fp32_forced_plans_match_reference) {
  SKIP_WITHOUT_GPU();
  unsigned seed = 200;
  const std::vector<std::pair<ScanTuning, std::string>> plans = {
      {forced(3, 2, 3), "fwd 3 segments, bwd R2 3 segments"},
      {forced(7, 8, 5), "fwd 7 segments, bwd R8 5 segments"},
      {forced(1, 4, 1), "no segments, bwd R4"},
      {forced(1000, 1, 1000), "one tile per segment"},
      {forced(0, 0, 0, 1, 2), "bwd block reduction, 2 blocks per SM"},
      {forced(0, 0, 0, 1, 3), "bwd block reduction, 3 blocks per SM"},
      {forced(3, 2, 3, 2, 2), "bwd warp atomics, R2 3 segments, 2 blocks per SM"},
      {forced(0, 0, 0, 2, 3), "bwd warp atomics, 3 blocks per SM"},
      {forced(0, 8, 5, 2, 4), "bwd warp atomics, R8 5 segments, 4 blocks per SM"},
      {short_rows(512), "fwd one-tile kernel up to 512 steps (saves the state at 256)"},
      {short_rows(256), "fwd one-tile kernel up to 256 steps"},
      {short_rows(512, 1), "fwd one-tile kernel, states not split"},
      {short_rows(512, 2), "fwd one-tile kernel, states split over 2 warps"},
      {short_rows(512, 4), "fwd one-tile kernel, states split over 4 warps"},
      {short_rows(256, 1, 8), "fwd one-tile kernel, 8 steps per lane"},
      {short_rows(256, 4, 8), "fwd one-tile kernel, 8 steps per lane, split over 4 warps"},
      {state_split(2), "bwd states split over 2 warps"},
      {forced(0, 0, 0, 3), "bwd direct 4-float atomics from registers"},
      {forced(3, 2, 3, 3, 2), "bwd direct atomics, R2 3 segments, 2 blocks per SM"},
      {state_split(4), "bwd states split over 4 warps"},
      {state_split(4, 2, 3), "bwd states split over 4 warps, R2, 3 segments"},
  };
  for (const auto& s : grid())
    for (const auto& [t, note] : plans) check_case({s, ScanDtype::F32, t, {}, {}, note}, seed++);
}

TEST(UMAMBA_SCAN_SUITE, fp32_optional_inputs_off) {
  SKIP_WITHOUT_GPU();
  unsigned seed = 300;
  const std::vector<std::pair<ProblemOptions, std::string>> variants = {
      {{false, true, true, true}, "no z"},          {{true, false, true, true}, "no D"},
      {{true, true, false, true}, "no delta_bias"}, {{false, false, false, true}, "only softplus"},
      {{true, true, true, false}, "no softplus"},
  };
  for (const ScanShape s :
       {ScanShape{2, 3, 7, 16}, ScanShape{2, 5, 300, 16}, ScanShape{1, 3, 2500, 16}})
    for (const auto& [o, note] : variants) {
      check_case({s, ScanDtype::F32, {}, o, {}, note}, seed++);
      check_case({s, ScanDtype::F32, forced(4, 2, 4), o, {}, note + ", forced segments"}, seed++);
      check_case({s, ScanDtype::F32, state_split(2), o, {}, note + ", bwd state split 2"}, seed++);
    }
}

TEST(UMAMBA_SCAN_SUITE, fp32_strided_and_unaligned_layouts) {
  SKIP_WITHOUT_GPU();
  unsigned seed = 400;
  for (const ScanShape s :
       {ScanShape{2, 3, 9, 16}, ScanShape{2, 4, 640, 16}, ScanShape{1, 3, 3000, 16}}) {
    check_case({s, ScanDtype::F32, {}, {}, {8, 0}, "row pad 8 (aligned)"}, seed++);
    check_case({s, ScanDtype::F32, {}, {}, {3, 0}, "row pad 3 (unaligned rows)"}, seed++);
    check_case({s, ScanDtype::F32, {}, {}, {0, 1}, "offset 1 (unaligned base)"}, seed++);
  }
}

TEST(UMAMBA_SCAN_SUITE, half_precision_inputs_match_reference) {
  SKIP_WITHOUT_GPU();
  unsigned seed = 500;
  for (const ScanDtype dt : {ScanDtype::BF16, ScanDtype::F16})
    // (2, 3, 200) and (12, 4, 320): 16-byte aligned rows that fill a warp, the forward's whole-row
    // path with B and C copied as they are (8 and 16 steps a lane, the last lanes' copies partly or
    // wholly out of the row); 300 is unaligned for 16-bit elements and reads directly.
    for (const ScanShape s :
         {ScanShape{2, 3, 7, 16}, ScanShape{12, 4, 300, 16}, ScanShape{2, 3, 200, 16},
          ScanShape{12, 4, 320, 16}, ScanShape{2, 3, 1000, 64}, ScanShape{1, 2, 6000, 16}}) {
      check_case({s, dt, {}, {}, {}, "default plan"}, seed++);
      check_case({s, dt, forced(3, 2, 3), {}, {}, "forced segments"}, seed++);
      check_case({s, dt, forced(0, 0, 0, 1), {}, {}, "bwd block reduction"}, seed++);
      check_case({s, dt, {}, {}, {3, 0}, "unaligned rows"}, seed++);
      check_case({s, dt, state_split(4), {}, {}, "bwd states split over 4 warps"}, seed++);
      check_case({s, dt, forced(0, 0, 0, 3), {}, {}, "bwd direct atomics"}, seed++);
    }
}

TEST(UMAMBA_SCAN_SUITE, rejects_missing_arguments) {
  SKIP_WITHOUT_GPU();
  const ScanShape s{1, 1, 600, 16};
  const ScanPlan plan = plan_scan(s);
  ScanForwardArgs f;
  f.shape = s;
  EXPECT_THROW(scan_forward(f, plan, nullptr), umamba::Error);
  ScanBackwardArgs b;
  b.shape = s;
  EXPECT_THROW(scan_backward(b, plan, nullptr), umamba::Error);
  ScanForwardArgs wrong;
  wrong.shape = {1, 2, 600, 16};
  EXPECT_THROW(scan_forward(wrong, plan, nullptr), umamba::Error);
}

}  // namespace
