// Network configurations and networks: the official structural rules, the paper's parameter counts
// and state_dict key counts (computed with the official Python classes, see docs/model.md),
// forward and backward of tiny configurations.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.h"
#include "model/blocks.h"
#include "model/network_config.h"
#include "model/networks.h"
#include "model/state_dict.h"

namespace umamba::model {
namespace {

NetworkConfig microscopy(Architecture arch) {
  NetworkConfig c;
  c.architecture = arch;
  c.input_channels = 3;
  c.num_classes = 3;
  c.features_per_stage = {32, 64, 128, 256, 512, 512, 512, 512};
  c.kernel_sizes.assign(8, {3, 3});
  c.strides = {{1, 1}};
  for (int i = 1; i < 8; ++i) c.strides.push_back({2, 2});
  c.n_conv_per_stage_encoder.assign(8, 2);
  c.n_conv_per_stage_decoder.assign(7, 2);
  c.patch_size = {512, 512};
  return c;
}

NetworkConfig abdomen_ct(Architecture arch) {
  NetworkConfig c;
  c.architecture = arch;
  c.input_channels = 1;
  c.num_classes = 14;
  c.features_per_stage = {32, 64, 128, 256, 320, 320};
  c.kernel_sizes = {{1, 3, 3}, {3, 3, 3}, {3, 3, 3}, {3, 3, 3}, {3, 3, 3}, {3, 3, 3}};
  c.strides = {{1, 1, 1}, {1, 2, 2}, {2, 2, 2}, {2, 2, 2}, {2, 2, 2}, {1, 2, 2}};
  c.n_conv_per_stage_encoder.assign(6, 2);
  c.n_conv_per_stage_decoder.assign(5, 2);
  c.patch_size = {40, 224, 192};
  return c;
}

TEST(Model_NetworkConfig, block_count_rewrite_matches_official) {
  const ResolvedNetwork r8 = resolve(microscopy(Architecture::UMambaBot));
  std::vector<int> enc;
  for (const auto& s : r8.stages) enc.push_back(s.blocks);
  EXPECT_EQ(enc, (std::vector<int>{2, 2, 2, 2, 1, 1, 1, 1}));
  EXPECT_EQ(r8.decoder_blocks, (std::vector<int>{2, 2, 2, 2, 1, 1, 1}));
  const ResolvedNetwork r6 = resolve(abdomen_ct(Architecture::UMambaEnc));
  enc.clear();
  for (const auto& s : r6.stages) enc.push_back(s.blocks);
  EXPECT_EQ(enc, (std::vector<int>{2, 2, 2, 1, 1, 1}));  // as in U-Mamba issue #29's logs
  EXPECT_EQ(r6.decoder_blocks, (std::vector<int>{2, 2, 2, 1, 1}));
  // Odd stage counts: ceil(5/2) = 3 → encoder [2,2,2,1,1]; ceil(4/2 + 0.5) = 3 → decoder [2,2,2,1].
  NetworkConfig c5 = microscopy(Architecture::UMambaBot);
  c5.features_per_stage.resize(5);
  c5.kernel_sizes.resize(5);
  c5.strides.resize(5);
  c5.n_conv_per_stage_encoder.assign(5, 3);
  c5.n_conv_per_stage_decoder.assign(4, 3);
  const ResolvedNetwork r5 = resolve(c5);
  enc.clear();
  for (const auto& s : r5.stages) enc.push_back(s.blocks);
  EXPECT_EQ(enc, (std::vector<int>{3, 3, 3, 1, 1}));
  EXPECT_EQ(r5.decoder_blocks, (std::vector<int>{3, 3, 3, 1}));
  // PlainConvUNet keeps the plans' counts.
  const ResolvedNetwork plain = resolve(microscopy(Architecture::PlainConvUNet));
  for (const auto& s : plain.stages) EXPECT_EQ(s.blocks, 2);
  EXPECT_EQ(plain.decoder_blocks, std::vector<int>(7, 2));
}

TEST(Model_NetworkConfig, mamba_placement_and_channel_tokens) {
  // 2D Enc, 8 stages (even): Mamba after stages 1, 3, 5, 7; 5 and 7 use channel tokens
  // (16² = 256 ≤ 512, 4² = 16 ≤ 512), 1 and 3 spatial (256², 64²).
  const ResolvedNetwork e2 = resolve(microscopy(Architecture::UMambaEnc));
  for (int s = 0; s < 8; ++s) EXPECT_EQ(e2.stages[s].mamba, s % 2 == 1) << "stage " << s;
  EXPECT_FALSE(e2.stages[1].channel_token);
  EXPECT_EQ(e2.stages[1].mamba_d_model, 64);
  EXPECT_EQ(e2.stages[3].mamba_d_model, 256);
  EXPECT_TRUE(e2.stages[5].channel_token);
  EXPECT_EQ(e2.stages[5].mamba_d_model, 256);
  EXPECT_TRUE(e2.stages[7].channel_token);
  EXPECT_EQ(e2.stages[7].mamba_d_model, 16);
  EXPECT_FALSE(e2.decoder_skips_full_resolution);
  // 3D Enc: Mamba after every stage; the 5×7×6 bottleneck (210 ≤ 320) uses channel tokens.
  const ResolvedNetwork e3 = resolve(abdomen_ct(Architecture::UMambaEnc));
  for (const auto& s : e3.stages) EXPECT_TRUE(s.mamba);
  EXPECT_EQ(e3.stages[5].feature_map, (std::vector<int>{5, 7, 6}));
  EXPECT_TRUE(e3.stages[5].channel_token);
  EXPECT_EQ(e3.stages[5].mamba_d_model, 210);
  EXPECT_EQ(e3.stages[0].mamba_d_model, 32);
  EXPECT_TRUE(e3.decoder_skips_full_resolution);
  // Odd 2D stage count: stages 0, 2, 4.
  NetworkConfig c5 = microscopy(Architecture::UMambaEnc);
  c5.features_per_stage.resize(5);
  c5.kernel_sizes.resize(5);
  c5.strides.resize(5);
  c5.n_conv_per_stage_encoder.resize(5);
  c5.n_conv_per_stage_decoder.resize(4);
  const ResolvedNetwork r5 = resolve(c5);
  for (int s = 0; s < 5; ++s) EXPECT_EQ(r5.stages[s].mamba, s % 2 == 0) << "stage " << s;
  // Bot: one spatial Mamba layer on the bottleneck.
  const ResolvedNetwork b = resolve(microscopy(Architecture::UMambaBot));
  for (int s = 0; s < 7; ++s) EXPECT_FALSE(b.stages[s].mamba);
  EXPECT_TRUE(b.stages[7].mamba);
  EXPECT_EQ(b.stages[7].mamba_d_model, 512);
  const auto hp = b.hyperparams();
  EXPECT_EQ(hp["stages"][7]["mamba"]["tokens"], "spatial");
  EXPECT_EQ(hp["stages"][7]["mamba"]["d_inner"], 1024);
  EXPECT_EQ(hp["n_conv_per_stage_encoder"], nlohmann::json({2, 2, 2, 2, 1, 1, 1, 1}));
}

TEST(Model_NetworkConfig, json_round_trip_and_validation) {
  const NetworkConfig c = abdomen_ct(Architecture::UMambaEnc);
  const NetworkConfig back = NetworkConfig::from_json(c.to_json());
  EXPECT_EQ(back.to_json(), c.to_json());
  nlohmann::json bad = c.to_json();
  bad["n_conv_per_stage_decoder"] = {2, 2};
  EXPECT_THROW(NetworkConfig::from_json(bad), Error);
  bad = c.to_json();
  bad["conv_kernel_sizes"][2] = {3, 2, 3};
  EXPECT_THROW(NetworkConfig::from_json(bad), Error);
  bad = c.to_json();
  bad.erase("architecture");
  EXPECT_THROW(NetworkConfig::from_json(bad), Error);
  bad = c.to_json();
  bad["patch_size"] = nlohmann::json::array();
  EXPECT_THROW(NetworkConfig::from_json(bad), Error);  // Enc needs the patch size
  EXPECT_THROW(architecture_from_string("SwinUNETR"), Error);
}

TEST(Model_NetworkConfig, from_nnunet_plans_with_inheritance) {
  nlohmann::json plans = {
      {"configurations",
       {{"3d_fullres",
         {{"patch_size", {40, 224, 192}},
          {"UNet_base_num_features", 32},
          {"unet_max_num_features", 320},
          {"conv_kernel_sizes", {{1, 3, 3}, {3, 3, 3}, {3, 3, 3}, {3, 3, 3}, {3, 3, 3}, {3, 3, 3}}},
          {"pool_op_kernel_sizes",
           {{1, 1, 1}, {1, 2, 2}, {2, 2, 2}, {2, 2, 2}, {2, 2, 2}, {1, 2, 2}}},
          {"n_conv_per_stage_encoder", {2, 2, 2, 2, 2, 2}},
          {"n_conv_per_stage_decoder", {2, 2, 2, 2, 2}}}},
        {"3d_custom", {{"inherits_from", "3d_fullres"}, {"patch_size", {48, 224, 192}}}}}}};
  const NetworkConfig c =
      NetworkConfig::from_nnunet_plans(plans, "3d_fullres", Architecture::UMambaBot, 1, 14);
  EXPECT_EQ(c.to_json(), abdomen_ct(Architecture::UMambaBot).to_json());
  const NetworkConfig d =
      NetworkConfig::from_nnunet_plans(plans, "3d_custom", Architecture::UMambaBot, 1, 14);
  EXPECT_EQ(d.patch_size, (std::vector<int>{48, 224, 192}));
  EXPECT_EQ(d.features_per_stage, c.features_per_stage);
  EXPECT_THROW(NetworkConfig::from_nnunet_plans(plans, "2d", Architecture::UMambaBot, 1, 14),
               Error);
  // nnU-Net ≥ 2.4 describes the network under architecture.arch_kwargs.
  nlohmann::json v24 = {
      {"configurations",
       {{"3d_fullres",
         {{"patch_size", {40, 224, 192}},
          {"architecture",
           {{"network_class_name",
             "dynamic_network_architectures.architectures.unet.PlainConvUNet"},
            {"arch_kwargs",
             {{"n_stages", 6},
              {"features_per_stage", {32, 64, 128, 256, 320, 320}},
              {"kernel_sizes", {{1, 3, 3}, {3, 3, 3}, {3, 3, 3}, {3, 3, 3}, {3, 3, 3}, {3, 3, 3}}},
              {"strides", {{1, 1, 1}, {1, 2, 2}, {2, 2, 2}, {2, 2, 2}, {2, 2, 2}, {1, 2, 2}}},
              {"n_conv_per_stage", {2, 2, 2, 2, 2, 2}},
              {"n_conv_per_stage_decoder", {2, 2, 2, 2, 2}}}}}}}}}}};
  EXPECT_EQ(
      NetworkConfig::from_nnunet_plans(v24, "3d_fullres", Architecture::UMambaBot, 1, 14).to_json(),
      abdomen_ct(Architecture::UMambaBot).to_json());
}

// Official counts (official classes, random init; docs/model.md gives the recipe):
//   microscopy 2D: PlainConvUNet 46,327,157 · UMambaBot 64,797,301 · UMambaEnc 64,014,261
//   abdomen CT 3D: PlainConvUNet 30,713,158 · UMambaBot 41,945,158 · UMambaEnc 42,842,798
// and their state_dict() key counts (aliases included): 396/513/590 and 292/397/518.
TEST(Model_Networks, parameter_and_key_counts_match_official) {
  struct Expect {
    NetworkConfig config;
    int64_t parameters;
    size_t keys;
  };
  const std::vector<Expect> cases = {
      {microscopy(Architecture::PlainConvUNet), 46327157, 396},
      {microscopy(Architecture::UMambaBot), 64797301, 513},
      {microscopy(Architecture::UMambaEnc), 64014261, 590},
      {abdomen_ct(Architecture::PlainConvUNet), 30713158, 292},
      {abdomen_ct(Architecture::UMambaBot), 41945158, 397},
      {abdomen_ct(Architecture::UMambaEnc), 42842798, 518},
  };
  for (const auto& e : cases) {
    auto net = make_network(e.config);
    EXPECT_EQ(net->parameter_count(), e.parameters) << to_string(e.config.architecture);
    EXPECT_EQ(official_state_dict(*net).size(), e.keys) << to_string(e.config.architecture);
  }
}

TEST(Model_Networks, he_initialisation_on_convs) {
  torch::manual_seed(0);
  auto net = make_network(microscopy(Architecture::UMambaBot));
  for (const auto& p : net->named_parameters()) {
    const std::string& k = p.key();
    const auto& t = p.value();
    if (k.find("mamba") != std::string::npos) continue;
    // "<...>.<module>.<leaf>": module conv/conv1/conv2/conv3 or a seg_layers index is a conv.
    const size_t p2 = k.rfind('.'), p1 = k.rfind('.', p2 - 1);
    const std::string module = k.substr(p1 + 1, p2 - p1 - 1), leaf = k.substr(p2 + 1);
    const bool conv = module.rfind("conv", 0) == 0 || k.find("seg_layers.") != std::string::npos;
    if (conv && leaf == "weight") {  // std ≈ gain / sqrt(fan_in), gain = sqrt(2 / (1 + 0.01²))
      const double fan_in = static_cast<double>(t[0].numel());
      const double want = std::sqrt(2.0 / (1.0 + 1e-4)) / std::sqrt(fan_in);
      if (t.numel() > 20000) {
        EXPECT_NEAR(t.std().item<double>() / want, 1.0, 0.05) << k;
      }
    } else if (conv && leaf == "bias") {
      EXPECT_EQ(t.abs().max().item<double>(), 0.0) << k;
    } else if (module.rfind("norm", 0) == 0 && leaf == "weight") {
      EXPECT_TRUE(torch::equal(t, torch::ones_like(t))) << k;
    } else if (module.rfind("norm", 0) == 0 && leaf == "bias") {
      EXPECT_EQ(t.abs().max().item<double>(), 0.0) << k;
    } else {
      ADD_FAILURE() << "unexpected parameter " << k;
    }
  }
}

NetworkConfig tiny(Architecture arch, int dims) {
  NetworkConfig c;
  c.architecture = arch;
  c.input_channels = 2;
  c.num_classes = 3;
  c.features_per_stage = {4, 8, 8};
  if (dims == 2) {
    c.kernel_sizes = {{3, 3}, {3, 3}, {3, 3}};
    c.strides = {{1, 1}, {2, 2}, {2, 2}};
    c.patch_size = {16, 12};
  } else {
    c.kernel_sizes = {{1, 3, 3}, {3, 3, 3}, {3, 3, 3}};
    c.strides = {{1, 1, 1}, {1, 2, 2}, {2, 2, 2}};
    c.patch_size = {4, 8, 8};
  }
  c.n_conv_per_stage_encoder = {2, 2, 2};
  c.n_conv_per_stage_decoder = {2, 2};
  return c;
}

TEST(Model_Networks, tiny_forward_and_backward_cpu) {
  torch::manual_seed(1);
  for (Architecture arch :
       {Architecture::PlainConvUNet, Architecture::UMambaBot, Architecture::UMambaEnc}) {
    for (int dims : {2, 3}) {
      const NetworkConfig c = tiny(arch, dims);
      auto net = make_network(c);
      std::vector<int64_t> shape = {2, 2};
      shape.insert(shape.end(), c.patch_size.begin(), c.patch_size.end());
      const auto x = torch::randn(shape);
      const auto outs = net->forward(x);
      ASSERT_EQ(outs.size(), 2u) << to_string(arch) << " " << dims << "D";
      for (size_t i = 0; i < outs.size(); ++i) {
        std::vector<int64_t> want = {2, 3};
        for (int a = 0; a < dims; ++a) {
          int64_t s = c.patch_size[a];
          for (size_t k = 0; k <= i; ++k) s /= c.strides[k][a];
          want.push_back(s);
        }
        EXPECT_EQ(outs[i].sizes().vec(), want) << "output " << i;
        EXPECT_TRUE(torch::isfinite(outs[i]).all().item<bool>());
      }
      torch::Tensor loss = outs[0].square().mean() + 0.5 * outs[1].square().mean();
      loss.backward();
      int with_grad = 0, total = 0;
      for (const auto& p : net->named_parameters()) {
        ++total;
        ASSERT_TRUE(p.value().grad().defined()) << p.key();
        EXPECT_TRUE(torch::isfinite(p.value().grad()).all().item<bool>()) << p.key();
        if (p.value().grad().abs().max().item<double>() > 0) ++with_grad;
      }
      // Every parameter influences the loss (the 2D U-Mamba decoders skip the stage-0 skip, but
      // stage 0 feeds stage 1); conv biases right before an InstanceNorm get only rounding-level
      // gradients, which may be exactly zero.
      EXPECT_GT(with_grad, total * 7 / 10) << to_string(arch) << " " << dims << "D";
      // One SGD step lowers this loss.
      torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(1e-2));
      opt.step();
      torch::NoGradGuard no_grad;
      const auto after = net->forward(x);
      const double l1 = (after[0].square().mean() + 0.5 * after[1].square().mean()).item<double>();
      EXPECT_LT(l1, loss.item<double>()) << to_string(arch) << " " << dims << "D";
    }
  }
}

// Samples of a batch never mix: each sample's output (and its gradient on the weights, summed)
// equals what a batch of one gives. Data-parallel training relies on it (2 GPUs x 6 = 1 GPU x 12).
TEST(Model_Networks, samples_of_a_batch_are_independent) {
  torch::manual_seed(3);
  for (Architecture arch :
       {Architecture::PlainConvUNet, Architecture::UMambaBot, Architecture::UMambaEnc}) {
    for (int dims : {2, 3}) {
      const NetworkConfig c = tiny(arch, dims);
      auto net = make_network(c);
      std::vector<int64_t> shape = {3, 2};
      shape.insert(shape.end(), c.patch_size.begin(), c.patch_size.end());
      const auto x = torch::randn(shape, torch::kDouble);
      net->to(torch::kDouble);
      torch::NoGradGuard no_grad;
      const auto whole = net->forward(x);
      for (int64_t b = 0; b < 3; ++b) {
        const auto single = net->forward(x.slice(0, b, b + 1));
        for (size_t i = 0; i < whole.size(); ++i) {
          const double diff = (whole[i].slice(0, b, b + 1) - single[i]).abs().max().item<double>();
          EXPECT_LT(diff, 1e-10) << to_string(arch) << " " << dims << "D sample " << b << " output "
                                 << i;
        }
      }
    }
  }
}

TEST(Model_Networks, deep_supervision_off_returns_full_resolution_only) {
  NetworkConfig c = tiny(Architecture::UMambaBot, 2);
  c.deep_supervision = false;
  auto net = make_network(c);
  torch::NoGradGuard no_grad;
  const auto outs = net->forward(torch::randn({1, 2, 16, 12}));
  ASSERT_EQ(outs.size(), 1u);
  EXPECT_EQ(outs[0].sizes().vec(), (std::vector<int64_t>{1, 3, 16, 12}));
  net->set_deep_supervision(true);
  EXPECT_EQ(net->forward(torch::randn({1, 2, 16, 12})).size(), 2u);
  EXPECT_THROW(net->forward(torch::randn({1, 3, 16, 12})), Error);  // wrong channel count
}

// The zero input channels appended to a pointwise convolution (ConvImpl::forward, on GPUs) change
// neither its output nor the gradients of its input and weight (the plain convolution is the
// reference), in 1D, 2D and 3D, for channel counts below, at and above a multiple.
TEST(Model_Blocks, padded_input_channels_give_the_same_convolution) {
  torch::manual_seed(4);
  for (int64_t dims : {1, 2, 3}) {
    for (int64_t in : {3, 8, 13}) {
      std::vector<int64_t> xs = {2, in}, ws = {5, in};
      for (int64_t d = 0; d < dims; ++d) {
        xs.push_back(6 + d);
        ws.push_back(1);
      }
      const auto x0 = torch::randn(xs, torch::kDouble).requires_grad_();
      const auto w0 = torch::randn(ws, torch::kDouble).requires_grad_();
      auto conv = [dims](const torch::Tensor& x, const torch::Tensor& w) {
        return dims == 1   ? torch::conv1d(x, w)
               : dims == 2 ? torch::conv2d(x, w)
                           : torch::conv3d(x, w);
      };
      const auto ref = conv(x0, w0);
      const auto g = torch::randn_like(ref);
      const auto grads_ref = torch::autograd::grad({ref}, {x0, w0}, {g});
      const auto [xp, wp] = pad_input_channels(x0, w0, 8);
      EXPECT_EQ(xp.size(1) % 8, 0);
      EXPECT_EQ(xp.size(1) - in, (8 - in % 8) % 8);
      const auto out = conv(xp, wp);
      const auto grads = torch::autograd::grad({out}, {x0, w0}, {g});
      EXPECT_TRUE(torch::allclose(out, ref, 1e-12, 1e-12)) << dims << "D, " << in << " channels";
      EXPECT_TRUE(torch::allclose(grads[0], grads_ref[0], 1e-12, 1e-12)) << dims << "D " << in;
      EXPECT_TRUE(torch::allclose(grads[1], grads_ref[1], 1e-12, 1e-12)) << dims << "D " << in;
    }
  }
}

TEST(Model_Networks, official_key_aliases) {
  auto net = make_network(tiny(Architecture::PlainConvUNet, 2));
  std::set<std::string> keys;
  for (const auto& [k, t] : official_state_dict(*net)) keys.insert(k);
  EXPECT_TRUE(keys.count("encoder.stages.0.0.convs.0.conv.weight"));
  EXPECT_TRUE(keys.count("encoder.stages.0.0.convs.0.all_modules.0.weight"));
  EXPECT_TRUE(keys.count("encoder.stages.0.0.convs.0.all_modules.1.bias"));
  EXPECT_TRUE(keys.count("decoder.encoder.stages.1.0.convs.1.all_modules.1.weight"));
  EXPECT_TRUE(keys.count("decoder.transpconvs.0.weight"));
  EXPECT_EQ(canonical_key("decoder.encoder.stages.1.0.convs.1.all_modules.0.bias"),
            "encoder.stages.1.0.convs.1.conv.bias");
  EXPECT_EQ(canonical_key("decoder.seg_layers.0.weight"), "decoder.seg_layers.0.weight");
}

}  // namespace
}  // namespace umamba::model
