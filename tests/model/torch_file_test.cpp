// The restricted torch.save reader on real nnU-Net-style checkpoints (numpy scalars, torch.device,
// OrderedDict state_dicts, optimiser state), on a file whose pickle references os.system, and on
// damaged files.
#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "model/sha256.h"
#include "model/torch_file.h"
#include "model_test_util.h"

namespace umamba::model {
namespace {

const std::string kCheckpoint =
    test::fixture_dir("bot2d") +
    "/nnUNetTrainerUMambaBot__nnUNetPlans__2d/fold_0/checkpoint_final.pth";

TEST(Model_TorchFile, reads_nnunet_checkpoint_fields) {
  const TorchFile f = read_torch_file(kCheckpoint);
  ASSERT_EQ(f.root->kind, PyValue::Kind::Dict);
  EXPECT_EQ(f.root->get("trainer_name")->s, "nnUNetTrainerUMambaBot");
  EXPECT_EQ(f.root->get("current_epoch")->i, 2);
  // numpy.float64 scalars become floats.
  ASSERT_EQ(f.root->get("_best_ema")->kind, PyValue::Kind::Float);
  EXPECT_DOUBLE_EQ(f.root->get("_best_ema")->f, 0.51);
  const auto logging = f.root->get("logging");
  EXPECT_DOUBLE_EQ(logging->get("mean_fg_dice")->items[1]->f, 0.6);
  EXPECT_NEAR(logging->get("train_losses")->items[0]->f, -0.2, 1e-7);  // numpy.float32
  const auto init_args = f.root->get("init_args");
  EXPECT_EQ(init_args->get("configuration")->s, "2d");
  EXPECT_EQ(init_args->get("fold")->i, 0);
  EXPECT_EQ(init_args->get("device")->s, "cuda");
  EXPECT_EQ(init_args->get("plans")->get("plans_name")->s, "nnUNetPlans");
  // inference_allowed_mirroring_axes is a tuple (0, 1).
  const auto axes = f.root->get("inference_allowed_mirroring_axes");
  ASSERT_EQ(axes->kind, PyValue::Kind::Tuple);
  EXPECT_EQ(axes->items.size(), 2u);
  // The state_dict (an OrderedDict) and the optimiser's momentum buffers are tensors.
  const auto weights = tensor_dict(f.root->get("network_weights"), "network_weights");
  EXPECT_EQ(weights.at("encoder.stem.0.conv1.weight").sizes().vec(),
            (std::vector<int64_t>{4, 2, 3, 3}));
  // Aliases share the storage of their original, as in the file.
  EXPECT_EQ(weights.at("encoder.stem.0.conv1.weight").data_ptr(),
            weights.at("decoder.encoder.stem.0.conv1.weight").data_ptr());
  const auto state = f.root->get("optimizer_state")->get("state");
  ASSERT_TRUE(state);
  EXPECT_FALSE(state->dict.empty());
  EXPECT_EQ(state->dict[0].second->get("momentum_buffer")->kind, PyValue::Kind::Tensor);
  EXPECT_TRUE(f.opaque_globals.empty());
  const nlohmann::json j = to_json(f.root->get("init_args"));
  EXPECT_EQ(j["configuration"], "2d");
}

TEST(Model_TorchFile, never_runs_foreign_globals) {
  const std::string path = test::fixture_dir("untrusted_global.pt");
  // Lenient: the global becomes an inert placeholder; the tensors are still readable.
  const TorchFile f = read_torch_file(path);
  ASSERT_EQ(f.opaque_globals.size(), 1u);
  EXPECT_EQ(f.opaque_globals[0], "posix.system");
  EXPECT_EQ(f.root->get("payload")->kind, PyValue::Kind::Opaque);
  const auto w = tensor_dict(f.root->get("weights"), "weights");
  EXPECT_TRUE(torch::equal(w.at("w"), torch::arange(6, torch::kFloat32).reshape({2, 3})));
  // Strict: refused, naming the global.
  TorchFileOptions strict;
  strict.strict = true;
  try {
    read_torch_file(path, strict);
    FAIL() << "strict read accepted os.system";
  } catch (const FileError& e) {
    EXPECT_NE(std::string(e.what()).find("posix.system"), std::string::npos) << e.what();
  }
}

TEST(Model_TorchFile, damaged_files_are_errors_not_crashes) {
  test::TempDir tmp("torch_file_damage");
  std::ifstream in(kCheckpoint, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 1000u);
  // Truncated at several points, and with bytes flipped inside the pickle.
  for (size_t cut : {size_t(10), bytes.size() / 3, bytes.size() - 100}) {
    const std::string p = tmp.str("cut" + std::to_string(cut) + ".pth");
    std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(cut));
    EXPECT_THROW(read_torch_file(p), Error) << "cut at " << cut;
  }
  const std::string text = tmp.str("text.pth");
  std::ofstream(text) << "not a torch file";
  EXPECT_THROW(read_torch_file(text), FileError);
  EXPECT_THROW(read_torch_file(tmp.str("missing.pth")), Error);
  EXPECT_THROW(tensor_dict(read_torch_file(kCheckpoint).root, "root"), Error);  // not all tensors
}

TEST(Model_Sha256, known_vectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// Regressions of the checkpoint-reader fuzzer's findings (tests/fuzz/regressions, in the fuzz
// target's input format: a first byte that is even means "the rest is the file", odd means "the
// rest is data.pkl, to be wrapped in a valid torch.save zip"): each crafted file is refused with a
// FileError naming it, not another exception type or undefined behaviour.
void expect_clean_refusal(const std::string& seed, const std::string& problem) {
  const std::string source = std::string(UMAMBA_SOURCE_DIR) + "/tests/fuzz/regressions/" + seed;
  std::ifstream in(source, std::ios::binary);
  ASSERT_TRUE(in.good()) << source;
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 1u);
  test::TempDir tmp("torch_file_regression");
  const std::string path = tmp.str(seed + ".pth");
  if (static_cast<unsigned char>(bytes[0]) % 2 == 0) {
    std::ofstream(path, std::ios::binary)
        .write(bytes.data() + 1, static_cast<std::streamsize>(bytes.size() - 1));
  } else {
    caffe2::serialize::PyTorchStreamWriter w(path);
    w.writeRecord("data.pkl", bytes.data() + 1, bytes.size() - 1);
    w.writeRecord("byteorder", "little", 6);
    const std::vector<uint8_t> storage(256, 7);
    for (const char* key : {"data/0", "data/1", "data/2", "data/3"})
      w.writeRecord(key, storage.data(), storage.size());
    w.writeEndOfFile();
  }
  for (const bool strict : {false, true}) {
    TorchFileOptions o;
    o.strict = strict;
    try {
      (void)read_torch_file(path, o);
      ADD_FAILURE() << seed << " was accepted";
    } catch (const FileError& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(problem), std::string::npos) << e.what();
    }
  }
}

TEST(Model_TorchFile, regression_record_failing_its_crc_is_a_file_error) {
  expect_clean_refusal("torch-data-pkl-crc-c10-error.pth-seed", "");
}

TEST(Model_TorchFile, regression_str_that_is_not_utf8_is_refused) {
  expect_clean_refusal("torch-invalid-utf8-json-dump.pth-seed", "not UTF-8");
}

TEST(Model_TorchFile, regression_global_name_that_is_not_utf8_is_refused) {
  expect_clean_refusal("torch-global-name-not-utf8.pth-crash", "GLOBAL name that is not UTF-8");
}

TEST(Model_TorchFile, regression_mark_above_the_stack_is_refused) {
  // (The seed now stops earlier, at a str that is not UTF-8; pop_mark also checks its bound.)
  expect_clean_refusal("torch-pop-mark-below-stack.pth-seed", "");
}

TEST(Model_TorchFile, regression_numpy_scalar_with_a_bare_dtype_global_is_refused) {
  expect_clean_refusal("torch-numpy-scalar-global-dtype.pth-crash", "");
}

TEST(Model_TorchFile, regression_self_referential_containers_are_refused) {
  expect_clean_refusal("torch-self-referential-dict.pth-open", "contains itself");
  expect_clean_refusal("torch-reference-cycle-leak.pth-open", "");  // refused earlier now
}

TEST(Model_TorchFile, regression_cycle_dropped_from_the_stack_is_broken) {
  // Fuzz finding 7: a container made to hold itself, then popped from the stack and memo, was
  // alive only through its own cycle and leaked (LeakSanitizer in the fuzz build).
  expect_clean_refusal("torch-dropped-cycle-leak.pth-open", "");
}

}  // namespace
}  // namespace umamba::model
