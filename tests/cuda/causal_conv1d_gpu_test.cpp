// The fused causal conv1d + SiLU kernels (cuda/causal_conv1d.h) against the plain CPU reference
// (cuda/causal_conv1d_ref.h): forward output, dx, dweight, dbias over shapes at every tile edge
// (len 1, len < width, len and dim not multiples of the 64 x 32 tile, rows long enough that a
// block walks several tiles, also on a GPU of 132 SMs), widths 1-4, with and without bias and
// SiLU, contiguous and channel-contiguous ([B, L, D] viewed as [B, D, L]) layouts, fp32,
// bf16 and fp16. The same cases run on the GPU (Cuda_CausalConv1d, label gpu) and on the CPU under
// the SIMT emulator (Cuda_CausalConv1dEmulated).
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "cuda/causal_conv1d.h"
#include "cuda/causal_conv1d_ref.h"
#include "cuda/device.h"
#include "scan_test_util.h"

#ifndef UMAMBA_CONV_SUITE
#define UMAMBA_CONV_SUITE Cuda_CausalConv1d
#endif

namespace {

using namespace umamba::cuda;
using namespace umamba::cuda::testing;

struct ConvCase {
  ConvShape shape;
  ScanDtype dtype = ScanDtype::F32;
  bool bias = true;
  bool silu = true;
  bool channel_last_x = false;    // x (and dx) as a channel-contiguous [B, L, D] array
  bool channel_last_out = false;  // out and dout likewise
};

std::string describe(const ConvCase& c) {
  return "shape (" + std::to_string(c.shape.batch) + ", " + std::to_string(c.shape.dim) + ", " +
         std::to_string(c.shape.len) + "), width " + std::to_string(c.shape.width) + ", " +
         to_string(c.dtype) + (c.bias ? "" : ", no bias") + (c.silu ? "" : ", no silu") +
         (c.channel_last_x ? ", x channel-last" : "") +
         (c.channel_last_out ? ", out channel-last" : "");
}

ConvStrides strides_for(const ConvShape& s, bool channel_last) {
  return channel_last ? ConvStrides{s.len * s.dim, 1, s.dim} : conv_contiguous(s);
}

// [b][d][t] values laid out with `st` strides (a permutation of the same count of elements).
std::vector<double> to_layout(const std::vector<double>& v, const ConvShape& s,
                              const ConvStrides& st) {
  std::vector<double> out(v.size());
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t d = 0; d < s.dim; ++d)
      for (std::int64_t t = 0; t < s.len; ++t)
        out[b * st.batch + d * st.dim + t * st.time] = v[(b * s.dim + d) * s.len + t];
  return out;
}
std::vector<double> from_layout(const std::vector<double>& v, const ConvShape& s,
                                const ConvStrides& st) {
  std::vector<double> out(v.size());
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t d = 0; d < s.dim; ++d)
      for (std::int64_t t = 0; t < s.len; ++t)
        out[(b * s.dim + d) * s.len + t] = v[b * st.batch + d * st.dim + t * st.time];
  return out;
}

DeviceBuffer upload(ScanDtype dtype, const std::vector<double>& v) {
  const auto bytes = encode(dtype, v);
  DeviceBuffer buf(bytes.size());
  buf.upload(bytes.data(), bytes.size());
  return buf;
}
std::vector<double> download(ScanDtype dtype, const DeviceBuffer& buf, std::size_t count) {
  std::vector<unsigned char> bytes(count * element_size(dtype));
  buf.download(bytes.data(), bytes.size());
  return decode(dtype, bytes.data(), count);
}

void check_case(const ConvCase& c, unsigned seed) {
  SCOPED_TRACE(describe(c));
  const ConvShape& s = c.shape;
  const std::size_t n = static_cast<std::size_t>(s.batch * s.dim * s.len);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> U(-1.0, 1.0);
  // Inputs exactly representable in the dtype, so that the reference sees what the kernel reads.
  std::vector<double> x(n), dout(n), w(static_cast<std::size_t>(s.dim * s.width)),
      bias(static_cast<std::size_t>(s.dim));
  for (auto& v : x) v = round_to(c.dtype, 2.0 * U(rng));
  for (auto& v : dout) v = round_to(c.dtype, U(rng));
  for (auto& v : w) v = round_to(ScanDtype::F32, 0.6 * U(rng));
  for (auto& v : bias) v = round_to(ScanDtype::F32, 0.5 * U(rng));

  ref::ConvProblem rp;
  rp.batch = s.batch;
  rp.dim = s.dim;
  rp.len = s.len;
  rp.width = s.width;
  rp.x = x.data();
  rp.weight = w.data();
  rp.bias = c.bias ? bias.data() : nullptr;
  rp.silu = c.silu;
  const std::vector<double> want = ref::conv_forward(rp);
  const ref::ConvGradients want_g = ref::conv_backward(rp, dout.data());

  const ConvStrides xs = strides_for(s, c.channel_last_x), os = strides_for(s, c.channel_last_out);
  DeviceBuffer d_x = upload(c.dtype, to_layout(x, s, xs));
  DeviceBuffer d_dout = upload(c.dtype, to_layout(dout, s, os));
  DeviceBuffer d_w = upload(ScanDtype::F32, w), d_bias = upload(ScanDtype::F32, bias);
  DeviceBuffer d_out(n * element_size(c.dtype)), d_dx(n * element_size(c.dtype));
  DeviceBuffer d_dw(w.size() * sizeof(float)), d_db(bias.size() * sizeof(float));
  // Poison the outputs: every element must be written (and dweight/dbias overwritten).
  const std::vector<double> poison(n, 1e4), poison_w(w.size(), 1e4), poison_b(bias.size(), 1e4);
  const auto pb = encode(c.dtype, poison);
  d_out.upload(pb.data(), pb.size());
  d_dx.upload(pb.data(), pb.size());
  const auto pw = encode(ScanDtype::F32, poison_w), pbias = encode(ScanDtype::F32, poison_b);
  d_dw.upload(pw.data(), pw.size());
  d_db.upload(pbias.data(), pbias.size());

  ConvInput in;
  in.dtype = c.dtype;
  in.shape = s;
  in.x = d_x.get();
  in.x_strides = xs;
  in.weight = static_cast<const float*>(d_w.get());
  in.bias = c.bias ? static_cast<const float*>(d_bias.get()) : nullptr;
  in.silu = c.silu;
  ConvForwardArgs f;
  f.in = in;
  f.out = d_out.get();
  f.out_strides = os;
  conv_forward(f);
  ConvBackwardArgs g;
  g.in = in;
  g.dout = d_dout.get();
  g.dout_strides = os;
  g.dx = d_dx.get();
  g.dx_strides = xs;
  g.dweight = static_cast<float*>(d_dw.get());
  g.dbias = c.bias ? static_cast<float*>(d_db.get()) : nullptr;
  conv_backward(g);
  synchronize();

  const double tol = 1e-5 + 2 * rounding_unit(c.dtype);
  EXPECT_LE(max_rel_error(from_layout(download(c.dtype, d_out, n), s, os), want), tol) << "out";
  EXPECT_LE(max_rel_error(from_layout(download(c.dtype, d_dx, n), s, xs), want_g.dx), tol) << "dx";
  // fp32 sums over batch x len terms (float atomics across blocks).
  EXPECT_LE(max_rel_error(download(ScanDtype::F32, d_dw, w.size()), want_g.dweight), 1e-4)
      << "dweight";
  if (c.bias) {
    EXPECT_LE(max_rel_error(download(ScanDtype::F32, d_db, bias.size()), want_g.dbias), 1e-4)
        << "dbias";
  }
}

const std::vector<ConvShape>& shapes() {
  static const std::vector<ConvShape> list = {
      {1, 1, 1, 4},    {2, 3, 2, 4},     {2, 37, 130, 4}, {3, 64, 64, 3},
      {1, 33, 200, 1}, {2, 70, 1000, 2}, {1, 8, 9000, 4}, {4, 5, 65, 4},
  };
  return list;
}

TEST(UMAMBA_CONV_SUITE, fp32_matches_reference) {
  SKIP_WITHOUT_GPU();
  unsigned seed = 1;
  for (const auto& s : shapes()) {
    check_case({s}, seed++);
    check_case({s, ScanDtype::F32, false, true}, seed++);
    check_case({s, ScanDtype::F32, true, false}, seed++);
  }
  // 2344 tiles: blocks walk 3 tiles each even with the 1056-block target of a 132-SM GPU.
  check_case({{1, 8, 150000, 4}}, seed++);
  check_case({{1, 8, 150000, 4}, ScanDtype::F32, true, true, true, true}, seed++);
}

TEST(UMAMBA_CONV_SUITE, channel_last_layouts_match_reference) {
  SKIP_WITHOUT_GPU();
  unsigned seed = 100;
  for (const auto& s : shapes()) {
    check_case({s, ScanDtype::F32, true, true, true, false}, seed++);  // mamba_ssm's token layout
    check_case({s, ScanDtype::F32, true, true, true, true}, seed++);
    check_case({s, ScanDtype::F32, true, true, false, true}, seed++);
  }
}

TEST(UMAMBA_CONV_SUITE, half_precision_matches_reference) {
  SKIP_WITHOUT_GPU();
  unsigned seed = 200;
  for (const ScanDtype dt : {ScanDtype::BF16, ScanDtype::F16})
    for (const ConvShape s : {ConvShape{2, 37, 130, 4}, ConvShape{1, 8, 9000, 4}}) {
      check_case({s, dt}, seed++);
      check_case({s, dt, true, true, true, false}, seed++);
    }
}

TEST(UMAMBA_CONV_SUITE, rejects_bad_arguments) {
  SKIP_WITHOUT_GPU();
  ConvForwardArgs f;
  f.in.shape = {1, 4, 16, 5};  // width over 4
  EXPECT_THROW(conv_forward(f), umamba::Error);
  f.in.shape = {1, 4, 16, 4};  // no pointers
  EXPECT_THROW(conv_forward(f), umamba::Error);
  ConvBackwardArgs b;
  b.in.shape = {0, 4, 16, 4};
  EXPECT_THROW(conv_backward(b), umamba::Error);
}

}  // namespace
