// The Mamba block and MambaLayer: parameter shapes and counts (mamba_ssm formulas), mamba's
// initialisation, the forward against a step-by-step composition of the same weights, token modes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "core/error.h"
#include "model/causal_conv1d.h"
#include "model/mamba.h"
#include "model_test_util.h"

namespace umamba::model {
namespace {

int64_t count(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

// Parameter counts per Mamba block from mamba_simple.py's layer sizes
// (reference/umamba-mamba-nnunet.md §1.1: 9,920 / 32,640 / 675,200 / 1,694,720).
TEST(Model_Mamba, parameter_counts_match_mamba_ssm) {
  const std::vector<std::pair<int64_t, int64_t>> expected = {
      {32, 9920}, {64, 32640}, {320, 675200}, {512, 1694720}};
  for (const auto& [d_model, n] : expected) {
    Mamba m(MambaOptions{d_model});
    EXPECT_EQ(count(*m), n) << "d_model " << d_model;
    MambaLayer layer(d_model, false);
    EXPECT_EQ(count(*layer), n + 2 * d_model) << "with LayerNorm, d_model " << d_model;
  }
}

TEST(Model_Mamba, parameter_names_and_shapes) {
  Mamba m(MambaOptions{40});  // d_inner 80, dt_rank 3, N 16
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& p : m->named_parameters()) shapes[p.key()] = p.value().sizes().vec();
  const std::map<std::string, std::vector<int64_t>> want = {
      {"A_log", {80, 16}},           {"D", {80}},
      {"in_proj.weight", {160, 40}}, {"conv1d.weight", {80, 1, 4}},
      {"conv1d.bias", {80}},         {"x_proj.weight", {35, 80}},
      {"dt_proj.weight", {80, 3}},   {"dt_proj.bias", {80}},
      {"out_proj.weight", {40, 80}}};
  EXPECT_EQ(shapes, want);
}

TEST(Model_Mamba, initialisation_follows_mamba_ssm) {
  torch::manual_seed(0);
  Mamba m(MambaOptions{64});
  const auto A = m->A_log.exp();
  for (int64_t n = 0; n < 16; ++n) {
    EXPECT_TRUE(torch::allclose(A.select(1, n), torch::full({128}, double(n + 1)), 1e-6, 1e-6));
  }
  EXPECT_TRUE(torch::equal(m->D, torch::ones({128})));
  const auto dt = torch::nn::functional::softplus(m->dt_proj->bias);
  EXPECT_GE(dt.min().item<double>(), 1e-3 * (1 - 1e-4));
  EXPECT_LE(dt.max().item<double>(), 1e-1 * (1 + 1e-4));
  // log-uniform: the median of log10(dt) is near −2.
  EXPECT_NEAR(dt.log10().median().item<double>(), -2.0, 0.35);
  const double bound = 1.0 / std::sqrt(4.0);  // dt_rank = ceil(64/16) = 4
  EXPECT_LE(m->dt_proj->weight.abs().max().item<double>(), bound);
  EXPECT_GT(m->dt_proj->weight.abs().max().item<double>(), 0.8 * bound);
  // PyTorch's default Linear init: |w| ≤ 1/sqrt(fan_in).
  EXPECT_LE(m->in_proj->weight.abs().max().item<double>(), 1.0 / std::sqrt(64.0) + 1e-7);
  EXPECT_LE(m->conv1d->weight.abs().max().item<double>(), 1.0 / std::sqrt(4.0) + 1e-7);
}

// The block's forward equals its definition composed by hand from the same weights, with the
// naive scan: in_proj → split → causal depthwise conv + SiLU → x_proj → dt_proj → scan → out_proj.
TEST(Model_Mamba, forward_matches_composition_with_naive_scan) {
  torch::manual_seed(1);
  Mamba m(MambaOptions{24, 8, 4, 2});
  torch::NoGradGuard no_grad;
  for (auto& p : m->parameters()) p.add_(0.05 * torch::randn_like(p));
  const auto x = torch::randn({2, 37, 24});
  const auto y = m->forward(x);
  ASSERT_EQ(y.sizes(), x.sizes());

  const int64_t di = 48, R = 2, N = 8, L = 37;
  auto xz = torch::matmul(x, m->in_proj->weight.t());  // [B, L, 2di]
  auto xi = xz.narrow(2, 0, di).transpose(1, 2);       // [B, di, L]
  auto z = xz.narrow(2, di, di).transpose(1, 2);
  // Causal depthwise conv, written out: out[t] = bias + Σ_k w[k] · x[t − 3 + k].
  auto w = m->conv1d->weight.squeeze(1);  // [di, 4]
  auto padded = torch::constant_pad_nd(xi, {3, 0});
  auto conv = m->conv1d->bias.view({1, di, 1}).expand({2, di, L}).clone();
  for (int64_t k = 0; k < 4; ++k) conv += w.select(1, k).view({1, di, 1}) * padded.narrow(2, k, L);
  xi = torch::silu(conv);
  auto dbl = torch::matmul(xi.transpose(1, 2), m->x_proj->weight.t());  // [B, L, R+2N]
  auto dt = torch::matmul(dbl.narrow(2, 0, R), m->dt_proj->weight.t()).transpose(1, 2);
  auto Bm = dbl.narrow(2, R, N).transpose(1, 2);
  auto Cm = dbl.narrow(2, R + N, N).transpose(1, 2);
  auto scan = test::naive_scan(xi.to(torch::kDouble), dt, -m->A_log.exp(), Bm, Cm, m->D, z,
                               m->dt_proj->bias, true);
  auto ref = torch::matmul(scan.transpose(1, 2), m->out_proj->weight.t().to(torch::kDouble));
  EXPECT_LT(test::relative_error(y, ref), 1e-5);
}

TEST(Model_MambaLayer, spatial_tokens_are_raster_order_channel_last) {
  torch::manual_seed(2);
  MambaLayer layer(6, false, MambaOptions{0, 4, 4, 2});
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 6, 3, 5});
  const auto y = layer->forward(x);
  ASSERT_EQ(y.sizes(), x.sizes());
  // Same as running Mamba(LN) on tokens x.reshape(B, C, 15).transpose → (B, 15, C).
  const auto tokens = x.reshape({2, 6, 15}).transpose(1, 2);
  const auto ref =
      layer->mamba->forward(layer->norm->forward(tokens)).transpose(1, 2).reshape(x.sizes());
  EXPECT_TRUE(torch::allclose(y, ref, 1e-6, 1e-6));
  // Causality along the raster order: changing the last pixel changes only the last token.
  auto x2 = x.clone();
  x2.index_put_({torch::indexing::Slice(), torch::indexing::Slice(), 2, 4}, 0.0);
  const auto y2 = layer->forward(x2);
  EXPECT_TRUE(torch::allclose(y.reshape({2, 6, 15}).narrow(2, 0, 14),
                              y2.reshape({2, 6, 15}).narrow(2, 0, 14), 1e-6, 1e-6));
}

TEST(Model_MambaLayer, channel_tokens_use_the_feature_map_as_d_model) {
  torch::manual_seed(3);
  MambaLayer layer(12, true);  // feature map 3×4 = 12 pixels; tokens = channels
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 7, 3, 4});
  const auto y = layer->forward(x);
  ASSERT_EQ(y.sizes(), x.sizes());
  const auto ref = layer->mamba->forward(layer->norm->forward(x.flatten(2))).reshape(x.sizes());
  EXPECT_TRUE(torch::allclose(y, ref, 1e-6, 1e-6));
  // Another patch size does not fit the layer.
  EXPECT_THROW(layer->forward(torch::randn({2, 7, 4, 4})), Error);
}

TEST(Model_MambaLayer, half_input_runs_in_float32) {
  MambaLayer layer(8, false);
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({1, 8, 4, 4});
  const auto y32 = layer->forward(x);
  const auto y16 = layer->forward(x.to(torch::kHalf));
  EXPECT_EQ(y16.scalar_type(), torch::kFloat);
  EXPECT_LT(test::relative_error(y16, y32), 1e-2);
  EXPECT_THROW(layer->forward(torch::randn({1, 9, 4, 4})), Error);
}

// The Mamba block's conv step: silu(causal depthwise conv1d) as written by hand, on the CPU (the
// LibTorch path; the fused CUDA kernel is compared with it in gpu_smoke_test.cpp), for a
// channel-contiguous view as the block passes it; bad shapes are refused with the sizes named.
TEST(Model_Mamba, causal_conv1d_silu_matches_hand_written_loop) {
  torch::manual_seed(5);
  const int64_t B = 2, D = 3, L = 7, W = 4;
  const auto x = torch::randn({B, L, 2 * D}).narrow(2, 0, D).transpose(1, 2);  // [B, D, L] view
  const auto w = torch::randn({D, 1, W}), b = torch::randn({D});
  const auto y = causal_conv1d_silu(x, w, b);
  ASSERT_EQ(y.sizes(), torch::IntArrayRef({B, D, L}));
  for (int64_t bi = 0; bi < B; ++bi)
    for (int64_t d = 0; d < D; ++d)
      for (int64_t t = 0; t < L; ++t) {
        double pre = b[d].item<double>();
        for (int64_t k = 0; k < W; ++k) {
          const int64_t s = t - (W - 1) + k;
          if (s >= 0) pre += w[d][0][k].item<double>() * x[bi][d][s].item<double>();
        }
        EXPECT_NEAR(y[bi][d][t].item<double>(), pre / (1 + std::exp(-pre)), 1e-5);
      }
  EXPECT_THROW(causal_conv1d_silu(x, torch::randn({D, 2, W}), b), Error);
  EXPECT_THROW(causal_conv1d_silu(x, w, torch::randn({D + 1})), Error);
}

}  // namespace
}  // namespace umamba::model
