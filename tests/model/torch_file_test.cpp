// The restricted torch.save reader on real nnU-Net-style checkpoints (numpy scalars, torch.device,
// OrderedDict state_dicts, optimiser state), on a file whose pickle references os.system, on
// pickles written here that name globals on and off its two allow-lists, and on damaged files.
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

// Reads `path` in the given mode and expects a FileError naming the file and `global` (quoted).
void expect_refused(const std::string& path, bool strict, const std::string& global) {
  TorchFileOptions o;
  o.strict = strict;
  try {
    (void)read_torch_file(path, o);
    ADD_FAILURE() << path << " accepted " << (strict ? "(strict)" : "(lenient)");
  } catch (const FileError& e) {
    EXPECT_EQ(e.path(), path);
    EXPECT_NE(std::string(e.what()).find("'" + global + "'"), std::string::npos) << e.what();
  }
}

TEST(Model_TorchFile, never_runs_foreign_globals) {
  // A weights dict beside a REDUCE of posix.system: refused in both modes, naming the global (the
  // lenient mode once kept it as an inert placeholder; now only its allow-list passes).
  const std::string path = test::fixture_dir("untrusted_global.pt");
  expect_refused(path, /*strict=*/true, "posix.system");
  expect_refused(path, /*strict=*/false, "posix.system");
}

// Pickle opcodes written by hand (protocol 2 unless a test says otherwise).
struct Pickle {
  std::string b;
  Pickle& raw(const std::string& s) {
    b += s;
    return *this;
  }
  Pickle& str(const std::string& s) {  // BINUNICODE
    b += 'X';
    u32(static_cast<uint32_t>(s.size()));
    b += s;
    return *this;
  }
  Pickle& small_int(int v) {  // BININT1
    b += 'K';
    b += static_cast<char>(v);
    return *this;
  }
  Pickle& global(const std::string& module, const std::string& name) {  // GLOBAL
    b += "c" + module + "\n" + name + "\n";
    return *this;
  }
  Pickle& stack_global(const std::string& module, const std::string& name) {  // STACK_GLOBAL
    for (const std::string& s : {module, name}) {
      b += '\x8c';
      b += static_cast<char>(s.size());
      b += s;
    }
    b += '\x93';
    return *this;
  }
  void u32(uint32_t v) {
    for (int k = 0; k < 4; ++k) b += static_cast<char>((v >> (8 * k)) & 0xff);
  }
};

// `{"f": module.name}`: the global only named, never called.
std::string named_only(const std::string& module, const std::string& name, bool stack = false) {
  Pickle p;
  if (stack) {
    p.raw("\x80\x04}").str("f").stack_global(module, name).raw("s.");
  } else {
    p.raw("\x80\x02}").str("f").global(module, name).raw("s.");
  }
  return p.b;
}

// A valid torch.save zip around `pkl`, with storage records "0".."3" of 256 bytes each: record "0"
// holds the floats 0..63, the others bytes of 7.
void write_wrapped_pickle(const std::string& path, const std::string& pkl) {
  caffe2::serialize::PyTorchStreamWriter w(path);
  w.writeRecord("data.pkl", pkl.data(), pkl.size());
  w.writeRecord("byteorder", "little", 6);
  std::vector<float> floats(64);
  for (size_t i = 0; i < floats.size(); ++i) floats[i] = static_cast<float>(i);
  w.writeRecord("data/0", floats.data(), floats.size() * sizeof(float));
  const std::vector<uint8_t> storage(256, 7);
  for (const char* key : {"data/1", "data/2", "data/3"})
    w.writeRecord(key, storage.data(), storage.size());
  w.writeEndOfFile();
}

TEST(Model_TorchFile, strict_refuses_named_only_global) {
  // Like torch.load(weights_only=True): a global off the list is refused when the pickle names
  // it, not only when it is called; GLOBAL, STACK_GLOBAL and INST alike, in both modes.
  test::TempDir tmp("torch_file_named_only");
  const std::string global = tmp.str("global.pth"), stack = tmp.str("stack_global.pth"),
                    inst = tmp.str("inst.pth");
  write_wrapped_pickle(global, named_only("os", "system"));
  write_wrapped_pickle(stack, named_only("posix", "system", /*stack=*/true));
  Pickle p;
  p.raw("\x80\x02(").str("touch MARKER").raw("ios\nsystem\n.");
  write_wrapped_pickle(inst, p.b);
  for (const bool strict : {true, false}) {
    expect_refused(global, strict, "os.system");
    expect_refused(stack, strict, "posix.system");
    expect_refused(inst, strict, "os.system");
  }
  // An allowed global may be named without being called: it stays an inert placeholder.
  const std::string allowed = tmp.str("allowed.pth");
  write_wrapped_pickle(allowed, named_only("collections", "OrderedDict"));
  TorchFileOptions strict;
  strict.strict = true;
  const TorchFile f = read_torch_file(allowed, strict);
  ASSERT_TRUE(f.root && f.root->get("f"));
  EXPECT_EQ(f.root->get("f")->kind, PyValue::Kind::Opaque);
  EXPECT_EQ(f.root->get("f")->s, "collections.OrderedDict");
}

TEST(Model_TorchFile, lenient_refuses_unlisted_global) {
  // The lenient mode of `umamba import` passes only its own list: an unknown global is refused,
  // named only or called, and the error names it.
  test::TempDir tmp("torch_file_lenient_refuses");
  const std::vector<std::pair<std::string, std::string>> named = {{"builtins", "eval"},
                                                                  {"argparse", "Namespace"},
                                                                  {"numpy", "load"},
                                                                  {"torch", "load"},
                                                                  {"copyreg", "_reconstructor"}};
  for (const auto& [module, name] : named) {
    for (const bool stack : {false, true}) {
      const std::string path = tmp.str(module + "." + name + (stack ? "-stack" : "") + ".pth");
      write_wrapped_pickle(path, named_only(module, name, stack));
      expect_refused(path, /*strict=*/false, module + "." + name);
    }
  }
  // Called (REDUCE), beside real weights: still refused, naming the global.
  Pickle p;
  p.raw("\x80\x02}").str("evil").global("subprocess", "Popen").str("touch MARKER");
  p.raw("\x85R").raw("s.");
  const std::string called = tmp.str("called.pth");
  write_wrapped_pickle(called, p.b);
  expect_refused(called, /*strict=*/false, "subprocess.Popen");
}

TEST(Model_TorchFile, lenient_accepts_nnunet_checkpoint_globals) {
  test::TempDir tmp("torch_file_lenient_accepts");
  // Each lenient-only name, named only: a placeholder when lenient, refused when strict.
  const std::vector<std::pair<std::string, std::string>> lenient_only = {
      {"numpy.core.multiarray", "_reconstruct"},
      {"numpy._core.multiarray", "_reconstruct"},
      {"numpy", "ndarray"},
      {"builtins", "set"},
      {"builtins", "frozenset"},
      {"__builtin__", "set"},
      {"__builtin__", "frozenset"}};
  for (const auto& [module, name] : lenient_only) {
    const std::string path = tmp.str(module + "." + name + ".pth");
    write_wrapped_pickle(path, named_only(module, name));
    const TorchFile f = read_torch_file(path);
    ASSERT_TRUE(f.root && f.root->get("f")) << path;
    EXPECT_EQ(f.root->get("f")->kind, PyValue::Kind::Opaque);
    EXPECT_EQ(f.root->get("f")->s, module + "." + name);
    expect_refused(path, /*strict=*/true, module + "." + name);
  }

  // A checkpoint-like dict as torch.save writes one (protocol 2): a tensor, a numpy array
  // (_reconstruct + BUILD with a dtype and raw bytes), sets in both spellings, a numpy scalar.
  Pickle p;
  p.raw("\x80\x02}(");
  p.str("w").global("torch._utils", "_rebuild_tensor_v2").raw("((");  // tensor [2, 3] from "0"
  p.str("storage").global("torch", "FloatStorage").str("0").str("cpu").small_int(6).raw("tQ");
  p.small_int(0).small_int(2).small_int(3).raw("\x86").small_int(3).small_int(1).raw("\x86");
  p.raw("\x89").global("collections", "OrderedDict").raw(")RtR");
  for (const std::string numpy : {"numpy.core.multiarray", "numpy._core.multiarray"}) {
    p.str(numpy == "numpy.core.multiarray" ? "tp" : "fp");
    p.global(numpy, "_reconstruct").global("numpy", "ndarray").small_int(0).raw("\x85");
    p.global("_codecs", "encode").str("b").str("latin1").raw("\x86R\x87R");
    p.raw("(").small_int(1).small_int(3).raw("\x85");           // state: version, shape,
    p.global("numpy", "dtype").str("i8").raw("\x89\x88\x87R");  // dtype('i8'),
    p.raw("(").small_int(3).str("<").raw("NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff").small_int(0);
    p.raw("tb\x89").raw("C\x18").raw(std::string(24, '\x01')).raw("tb");  // not Fortran, 24 bytes
  }
  p.str("classes").global("__builtin__", "set").raw("](").small_int(1).small_int(2);
  p.raw("e\x85R");                                           // set([1, 2])
  p.str("empty").global("builtins", "frozenset").raw(")R");  // frozenset()
  p.str("_best_ema").global("numpy._core.multiarray", "scalar").global("numpy", "dtype");
  p.str("f8").raw("\x89\x88\x87R(").small_int(3).str("<");
  p.raw("NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff").small_int(0).raw("tbC\x08");
  double ema = 0.75;
  p.raw(std::string(reinterpret_cast<const char*>(&ema), 8)).raw("\x86R");
  p.raw("u.");
  const std::string path = tmp.str("checkpoint_like.pth");
  write_wrapped_pickle(path, p.b);

  const TorchFile f = read_torch_file(path);
  ASSERT_TRUE(f.root && f.root->kind == PyValue::Kind::Dict);
  ASSERT_EQ(f.root->get("w")->kind, PyValue::Kind::Tensor);
  EXPECT_TRUE(
      torch::equal(f.root->get("w")->tensor, torch::arange(6, torch::kFloat32).reshape({2, 3})));
  EXPECT_EQ(f.root->get("tp")->kind, PyValue::Kind::Opaque);
  EXPECT_EQ(f.root->get("tp")->s, "numpy.core.multiarray._reconstruct");
  EXPECT_EQ(f.root->get("fp")->s, "numpy._core.multiarray._reconstruct");
  EXPECT_EQ(f.opaque_globals, (std::vector<std::string>{"numpy._core.multiarray._reconstruct",
                                                        "numpy.core.multiarray._reconstruct"}));
  const auto classes = f.root->get("classes");
  ASSERT_EQ(classes->kind, PyValue::Kind::List);
  ASSERT_EQ(classes->items.size(), 2u);
  EXPECT_EQ(classes->items[1]->i, 2);
  EXPECT_EQ(f.root->get("empty")->kind, PyValue::Kind::List);
  EXPECT_TRUE(f.root->get("empty")->items.empty());
  EXPECT_DOUBLE_EQ(f.root->get("_best_ema")->f, 0.75);
  EXPECT_EQ(to_json(f.root)["tp"]["opaque"], "numpy.core.multiarray._reconstruct");
  // Strict: the first lenient-only name is refused.
  expect_refused(path, /*strict=*/true, "numpy.core.multiarray._reconstruct");
}

TEST(Model_TorchFile, real_nnunet_checkpoints_need_only_the_strict_list) {
  // The fixtures' checkpoints carry the fields of nnUNetTrainer.save_checkpoint (nnU-Net's trainer
  // and U-Mamba's) and name the same globals as a checkpoint written by nnU-Net 2.2.1's own
  // trainer: every one is on the strict list.
  TorchFileOptions strict;
  strict.strict = true;
  const std::vector<std::string> cases = {"bot2d/nnUNetTrainerUMambaBot__nnUNetPlans__2d",
                                          "enc3d/nnUNetTrainerUMambaEnc__nnUNetPlans__3d_fullres",
                                          "enc2d_odd/nnUNetTrainerUMambaEncNoAMP__nnUNetPlans__2d",
                                          "plain2d/nnUNetTrainer__nnUNetPlans__2d"};
  for (const std::string& c : cases) {
    const std::string path = (std::filesystem::path(UMAMBA_SOURCE_DIR) / "tests" / "fixtures" /
                              "model" / c / "fold_0" / "checkpoint_final.pth")
                                 .string();
    const TorchFile f = read_torch_file(path, strict);
    EXPECT_TRUE(f.opaque_globals.empty()) << path;
    EXPECT_TRUE(f.root && f.root->get("network_weights")) << path;
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
// Writes the regression input `seed` as the fuzz target sees it into `tmp` and returns the path:
// an even first byte means the rest is the file itself, an odd one that it is data.pkl of a zip
// with four 256-byte storages. Fails the test (empty path) when the input is missing.
std::string materialize_regression(const std::string& seed, const test::TempDir& tmp) {
  const std::string source = std::string(UMAMBA_SOURCE_DIR) + "/tests/fuzz/regressions/" + seed;
  std::ifstream in(source, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() <= 1) {
    ADD_FAILURE() << "regression input " << source << " is missing or has no content";
    return {};
  }
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
  return path;
}

void expect_clean_refusal(const std::string& seed, const std::string& problem) {
  test::TempDir tmp("torch_file_regression");
  const std::string path = materialize_regression(seed, tmp);
  ASSERT_FALSE(path.empty());
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

TEST(Model_TorchFile, regression_shared_containers_do_not_expand_without_bound) {
  // Fuzz finding 8: 1,960 bytes whose nested containers each hold the one below several times
  // (MEMO_GET) are a legal pickle, but their JSON view copied every shared container per reference
  // and ran past libFuzzer's 10 s timeout. The view now stops at a fixed number of values.
  test::TempDir tmp("torch_file_expansion");
  const std::string seed = "torch-shared-container-expansion.pth-timeout";
  const std::string path = materialize_regression(seed, tmp);
  ASSERT_FALSE(path.empty());
  std::ifstream first(std::string(UMAMBA_SOURCE_DIR) + "/tests/fuzz/regressions/" + seed,
                      std::ios::binary);
  ASSERT_EQ(first.get() % 2, 1) << "the fuzz target's zip form";
  const TorchFile f = read_torch_file(path);  // a legal pickle: read as before
  try {
    (void)to_json(f.root).dump();
    ADD_FAILURE() << "the JSON view of the expanding value was built";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("JSON view"), std::string::npos) << what;
    EXPECT_NE(what.find("250000"), std::string::npos) << what;
  }
}

TEST(Model_TorchFile, regression_cycle_dropped_from_the_stack_is_broken) {
  // Fuzz finding 7: a container made to hold itself, then popped from the stack and memo, was
  // alive only through its own cycle and leaked (LeakSanitizer in the fuzz build).
  expect_clean_refusal("torch-dropped-cycle-leak.pth-open", "");
}

}  // namespace
}  // namespace umamba::model
