// Parity with the official code: each fixture under tests/fixtures/model/<case>/ is an nnU-Net
// results folder written by the official U-Mamba / nnU-Net network classes (random init plus
// noise, one SGD step so the checkpoint carries optimiser state), with io.pt holding an input batch
// and every deep-supervision output of the official forward (fp32, CPU, Mamba on mamba_ssm's
// selective_scan_ref). docs/model.md has the recipe. We import the folder, load the network and
// reproduce every output within 1e-4 relative.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "model/model_io.h"
#include "model/sha256.h"
#include "model/state_dict.h"
#include "model/torch_file.h"
#include "model_test_util.h"

namespace umamba::model {
namespace {
namespace fs = std::filesystem;

struct ParityCase {
  std::string name, results, architecture, configuration;
};

const std::vector<ParityCase> kCases = {
    {"bot2d", "nnUNetTrainerUMambaBot__nnUNetPlans__2d", "UMambaBot", "2d"},
    {"bot3d", "nnUNetTrainerUMambaBot__nnUNetPlans__3d_fullres", "UMambaBot", "3d_fullres"},
    {"enc2d", "nnUNetTrainerUMambaEnc__nnUNetPlans__2d", "UMambaEnc", "2d"},
    {"enc2d_odd", "nnUNetTrainerUMambaEncNoAMP__nnUNetPlans__2d", "UMambaEnc", "2d"},
    {"enc3d", "nnUNetTrainerUMambaEnc__nnUNetPlans__3d_fullres", "UMambaEnc", "3d_fullres"},
    {"plain2d", "nnUNetTrainer__nnUNetPlans__2d", "PlainConvUNet", "2d"},
    {"plain3d", "nnUNetTrainer__nnUNetPlans__3d_fullres", "PlainConvUNet", "3d_fullres"},
};

void PrintTo(const ParityCase& c, std::ostream* os) {
  *os << c.name;
}

class Model_Parity : public ::testing::TestWithParam<ParityCase> {};

TEST_P(Model_Parity, import_and_forward_reproduce_official_outputs) {
  const ParityCase& c = GetParam();
  const std::string results = test::fixture_dir(c.name) + "/" + c.results;
  test::TempDir tmp("parity_" + c.name);
  const std::string out = tmp.str("model");
  const nlohmann::json meta = import_nnunet_results(results, out);
  EXPECT_EQ(meta["architecture"], c.architecture);
  EXPECT_EQ(meta["configuration"], c.configuration);

  const ModelFolder folder = read_model_folder(out);
  ASSERT_EQ(folder.folds, std::vector<std::string>{"0"});
  auto net = load_network(folder, "0");
  net->eval();

  TorchFileOptions strict;
  strict.strict = true;
  const TorchFile io = read_torch_file(test::fixture_dir(c.name) + "/io.pt", strict);
  const torch::Tensor input = io.root->get("input")->tensor;
  const auto& expected = io.root->get("outputs")->items;
  EXPECT_EQ(net->parameter_count(), io.root->get("num_parameters")->i);

  torch::NoGradGuard no_grad;
  const std::vector<torch::Tensor> outputs = net->forward(input);
  ASSERT_EQ(outputs.size(), expected.size());
  double worst = 0.0;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const torch::Tensor& want = expected[i]->tensor;
    ASSERT_EQ(outputs[i].sizes(), want.sizes()) << "output " << i;
    const double rel = test::relative_error(outputs[i], want);
    worst = std::max(worst, rel);
    EXPECT_LT(rel, 1e-4) << c.name << " output " << i;
    EXPECT_TRUE(torch::allclose(outputs[i], want, 1e-4, 1e-4 * want.abs().max().item<double>()))
        << c.name << " output " << i << " (max relative error " << rel << ")";
  }
  std::printf("%s: %zu outputs, max |ours - official| / max |official| = %.2e\n", c.name.c_str(),
              outputs.size(), worst);
  RecordProperty("max_relative_error", std::to_string(worst));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Model_Parity, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return info.param.name; });

TEST(Model_Import, metadata_records_versions_hashes_and_source) {
  const std::string results =
      test::fixture_dir("bot2d") + "/nnUNetTrainerUMambaBot__nnUNetPlans__2d";
  test::TempDir tmp("import_meta");
  const nlohmann::json meta = import_nnunet_results(results, tmp.str("m"));
  EXPECT_EQ(meta["format"], "umamba-model");
  EXPECT_EQ(meta["format_version"], 1);
  EXPECT_EQ(meta["trainer"], "nnUNetTrainerUMambaBot");
  EXPECT_EQ(meta["plans_name"], "nnUNetPlans");
  EXPECT_TRUE(meta["created_by"].contains("libtorch"));
  EXPECT_EQ(meta["folds"]["0"]["sha256"], sha256_file(tmp.str("m/fold_0/weights.pt")));
  EXPECT_EQ(meta["folds"]["0"]["parameters"], 53888);
  const auto& src = meta["source"]["folds"]["0"];
  EXPECT_EQ(src["sha256"], sha256_file(results + "/fold_0/checkpoint_final.pth"));
  EXPECT_EQ(src["current_epoch"], 2);
  EXPECT_GT(src["alias_keys_checked"].get<int>(), 0);
  EXPECT_EQ(meta["hyperparams"]["decoder_skips_full_resolution"], false);
  EXPECT_TRUE(fs::exists(tmp.str("m/plans.json")));
  EXPECT_TRUE(fs::exists(tmp.str("m/dataset.json")));
  // The weights file holds the official key set, readable by our strict reader.
  const auto weights = read_weights(tmp.str("m/fold_0/weights.pt"));
  TorchFile ckpt = read_torch_file(results + "/fold_0/checkpoint_final.pth");
  const auto official = tensor_dict(ckpt.root->get("network_weights"), "network_weights");
  ASSERT_EQ(weights.size(), official.size());
  for (const auto& [k, t] : official) {
    ASSERT_TRUE(weights.count(k)) << k;
    EXPECT_TRUE(torch::equal(weights.at(k), t)) << k;
  }
}

TEST(Model_Import, refuses_existing_output_and_wrong_architecture) {
  const std::string results =
      test::fixture_dir("enc2d") + "/nnUNetTrainerUMambaEnc__nnUNetPlans__2d";
  test::TempDir tmp("import_refuse");
  fs::create_directories(tmp.path() / "busy");
  std::ofstream(tmp.path() / "busy" / "x") << "x";
  EXPECT_THROW(import_nnunet_results(results, tmp.str("busy")), Error);
  ImportOptions bot;
  bot.architecture = "UMambaBot";  // Enc weights into a Bot network: keys do not match
  EXPECT_THROW(import_nnunet_results(results, tmp.str("bot"), bot), Error);
  ImportOptions missing_fold;
  missing_fold.folds = {"3"};
  EXPECT_THROW(import_nnunet_results(results, tmp.str("f3"), missing_fold), Error);
  EXPECT_THROW(import_nnunet_results(tmp.str("nowhere"), tmp.str("x")), Error);
}

// A state_dict whose alias key disagrees with its original, or that lacks a parameter, is refused.
TEST(Model_Import, load_state_dict_checks_aliases_and_completeness) {
  const std::string ckpt =
      test::fixture_dir("plain2d") + "/nnUNetTrainer__nnUNetPlans__2d/fold_0/checkpoint_final.pth";
  TorchFile file = read_torch_file(ckpt);
  auto weights = tensor_dict(file.root->get("network_weights"), "network_weights");
  test::TempDir tmp("import_alias");
  const auto folder_meta = import_nnunet_results(
      test::fixture_dir("plain2d") + "/nnUNetTrainer__nnUNetPlans__2d", tmp.str("m"));
  (void)folder_meta;
  auto net = load_network(read_model_folder(tmp.str("m")));
  const LoadReport ok = load_state_dict(*net, weights, "ckpt");
  EXPECT_EQ(ok.loaded, canonical_state_dict(*net).size());
  EXPECT_EQ(ok.loaded + ok.aliases, weights.size());

  auto bad_alias = weights;
  const std::string alias = "decoder.encoder.stages.0.0.convs.0.all_modules.0.weight";
  ASSERT_TRUE(bad_alias.count(alias));
  bad_alias[alias] = bad_alias[alias] + 1.0;
  EXPECT_THROW(load_state_dict(*net, bad_alias, "ckpt"), Error);

  auto missing = weights;
  for (const char* k : {"decoder.seg_layers.1.bias"}) missing.erase(k);
  EXPECT_THROW(load_state_dict(*net, missing, "ckpt"), Error);

  auto reshaped = weights;
  reshaped["decoder.seg_layers.1.bias"] = torch::zeros({7});
  EXPECT_THROW(load_state_dict(*net, reshaped, "ckpt"), Error);

  auto extra = weights;
  extra["decoder.something_else.weight"] = torch::zeros({1});
  EXPECT_THROW(load_state_dict(*net, extra, "ckpt"), Error);
  EXPECT_NO_THROW(load_state_dict(*net, extra, "ckpt", /*strict=*/false));
}

TEST(Model_Import, tampered_weights_fail_the_hash_check) {
  test::TempDir tmp("import_hash");
  import_nnunet_results(test::fixture_dir("plain2d") + "/nnUNetTrainer__nnUNetPlans__2d",
                        tmp.str("m"));
  const std::string w = tmp.str("m/fold_0/weights.pt");
  {
    std::fstream f(w, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-10, std::ios::end);
    f.put('\x7f');
  }
  EXPECT_THROW(load_network(read_model_folder(tmp.str("m"))), FileError);
}

}  // namespace
}  // namespace umamba::model
