// Checkpoint import never executes code: hostile torch.save files (tests/reliability/
// craft_checkpoints.py, run with the .venv's Python and PyTorch, which also confirms that PyTorch's
// own weights-only loader refuses each) are refused by model::read_torch_file in strict mode
// (the mode model folders are read in) and in lenient mode (`umamba import` of nnU-Net
// checkpoints) with an error naming the file and the global, and nothing they ask for runs (the
// marker file they would create never appears). Globals that are only named, never called, are
// refused too.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "model/torch_file.h"

namespace umamba::model {
namespace {

namespace fs = std::filesystem;

struct Crafted {
  fs::path dir, marker;
  std::string verdicts;  // the script's output: "<file> refused: <exception>"
};

const Crafted& crafted() {
  static const Crafted c = [] {
    Crafted r;
    r.dir = fs::path(UMAMBA_BINARY_DIR) / "test_output" / "reliability" /
            ("checkpoints-" + std::to_string(::getpid()));
    fs::remove_all(r.dir);
    fs::create_directories(r.dir);
    r.marker = r.dir / "MARKER";
    const fs::path log = r.dir / "craft.log";
    const std::string cmd = std::string(UMAMBA_PYTHON) + " " + UMAMBA_SOURCE_DIR +
                            "/tests/reliability/craft_checkpoints.py " + r.dir.string() + " " +
                            r.marker.string() + " > " + log.string() + " 2>&1";
    const int rc = std::system(cmd.c_str());
    std::ifstream f(log);
    r.verdicts.assign(std::istreambuf_iterator<char>(f), {});
    if (rc != 0) throw std::runtime_error("craft_checkpoints.py failed:\n" + r.verdicts);
    return r;
  }();
  return c;
}

// What the refusal must name for each file: the global, refused as soon as the pickle names it
// (for INST and OBJ, before the opcode that would call it).
const std::vector<std::pair<std::string, std::string>> kCases = {
    {"reduce_os_system.pth", "'posix.system'"},
    {"reduce_eval.pth", "'builtins.eval'"},
    {"newobj_popen.pth", "'subprocess.Popen'"},
    {"inst_os_system.pth", "'os.system'"},  // INST
    {"obj_os_system.pth", "'os.system'"},   // OBJ
    {"build_reconstructor.pth", "'copyreg._reconstructor'"},
    {"bare_global.pth", "'os.system'"},               // named only, GLOBAL
    {"bare_stack_global.pth", "'subprocess.Popen'"},  // named only, STACK_GLOBAL
};

TEST(Reliability_Checkpoint, pytorch_weights_only_refuses_every_payload_too) {
  const Crafted& c = crafted();
  for (const auto& [name, _] : kCases) {
    EXPECT_NE(c.verdicts.find(name + " refused"), std::string::npos) << name << "\n" << c.verdicts;
  }
  EXPECT_FALSE(fs::exists(c.marker));
}

void expect_every_case_refused(bool strict) {
  const Crafted& c = crafted();
  for (const auto& [name, must_name] : kCases) {
    const fs::path p = c.dir / name;
    ASSERT_TRUE(fs::exists(p)) << p;
    TorchFileOptions options;
    options.strict = strict;
    try {
      read_torch_file(p.string(), options);
      ADD_FAILURE() << name << " accepted " << (strict ? "(strict)" : "(lenient)");
    } catch (const FileError& e) {
      const std::string msg = e.what();
      EXPECT_EQ(e.path(), p.string());
      EXPECT_NE(msg.find(must_name), std::string::npos) << name << ": " << msg;
    }
    EXPECT_FALSE(fs::exists(c.marker)) << name;
  }
}

TEST(Reliability_Checkpoint, strict_reader_refuses_code_and_runs_nothing) {
  expect_every_case_refused(/*strict=*/true);
}

TEST(Reliability_Checkpoint, lenient_reader_refuses_code_and_runs_nothing) {
  // nnU-Net import reads checkpoints leniently (a second allow-list adds numpy arrays and sets,
  // which trainers of that family may log); every payload here is off that list too.
  expect_every_case_refused(/*strict=*/false);
}

}  // namespace
}  // namespace umamba::model
