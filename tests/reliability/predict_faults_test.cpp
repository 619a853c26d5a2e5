// `umamba predict` under faults and hostile paths, through the built binary with a tiny
// random-initialised model folder (tests/pipeline/predict_model_util.h). Each case asserts the
// message, the exit status (the number of failed inputs), that the other inputs are done, and
// that no partial output or temporary remains:
//   - a failed write or rename of one output (UMAMBA_FAULT_INJECT write/rename) fails that input
//     only, and its other outputs are removed;
//   - an unreadable input (read) fails that input only;
//   - out of memory in a batch (alloc) is retried with fewer tiles, and the labels equal an
//     unfaulted run's; at one tile on the CPU the input fails with the reason;
//   - a model whose weights are NaN fails every input with an error naming model and input;
//   - output names that would leave the output folder (glob with "..", a symbolic link in the
//     output tree) fail without writing or removing anything outside; list files with "..",
//     absolute entries stay inside;
//   - whole-image memory above UMAMBA_MAX_ALLOC_BYTES fails that input before allocating, and
//     --stream always then fits;
//   - existing outputs are kept without --overwrite and replaced with it.
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include <cmath>

#include "io/image_io.h"
#include "pipeline/pipeline_test_util.h"
#include "pipeline/predict.h"
#include "pipeline/predict_model_util.h"

namespace umamba::pipeline {
namespace {

using namespace test;

const fs::path& tiny_model() {
  static const fs::path dir = [] {
    const fs::path d = fs::path(UMAMBA_BINARY_DIR) / "test_output" / "reliability" /
                       ("tiny-model-" + std::to_string(::getpid()));
    remove_tree(d);
    make_tiny_model(d, /*folds=*/1);
    return d;
  }();
  return dir;
}

// The tiny model with the weights of its segmentation head set to NaN (a layer registered once:
// the encoder's weights are registered twice, and the model folder reader checks the copies
// agree, which NaN never does).
const fs::path& nan_model() {
  static const fs::path dir = [] {
    const fs::path d = fs::path(UMAMBA_BINARY_DIR) / "test_output" / "reliability" /
                       ("nan-model-" + std::to_string(::getpid()));
    remove_tree(d);
    const model::NetworkConfig config = tiny_config();
    torch::manual_seed(3);
    auto net = model::make_network(config);
    {
      torch::NoGradGuard g;
      bool poisoned = false;
      for (auto& p : net->named_parameters()) {
        if (!poisoned && p.key().find("seg_layers") != std::string::npos && p.value().dim() >= 4) {
          p.value().fill_(std::nan(""));
          poisoned = true;
        }
      }
      if (!poisoned) throw std::runtime_error("nan_model: no convolution weight found");
    }
    const nlohmann::json dataset = {
        {"channel_names", {{"0", "cells"}}},
        {"labels", {{"background", 0}, {"interior", 1}, {"boundary", 2}}},
        {"file_ending", ".tif"}};
    model::write_model_folder(d.string(), config, {{"0", net.get()}}, nullptr, dataset,
                              {{"configuration", "2d"}, {"source", {{"kind", "test: NaN"}}}});
    return d;
  }();
  return dir;
}

void write_cells(const fs::path& dir, int count) {
  fs::create_directories(dir);
  for (int i = 0; i < count; ++i) {
    io::write_image(dir / ("img" + std::to_string(i) + ".tif"),
                    cell_image(72 + 8 * i, 60, 10 + static_cast<uint32_t>(i)));
  }
}

std::vector<std::string> args(const std::vector<std::string>& inputs, const fs::path& out,
                              std::vector<std::string> extra = {},
                              const fs::path& model = tiny_model()) {
  std::vector<std::string> a = {"predict"};
  a.insert(a.end(), inputs.begin(), inputs.end());
  for (const std::string& s : std::vector<std::string>{"-o", out.string(), "-m", model.string(),
                                                       "--progress", "lines", "--no-mirror"}) {
    a.push_back(s);
  }
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

std::map<std::string, std::string> faults(const std::string& spec) {
  return {{"UMAMBA_FAULT_INJECT", spec}};
}

// Every file under `dir` whose name starts with '.' (temporaries).
std::vector<std::string> hidden_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& f : list_files(dir)) {
    if (fs::path(f).filename().string()[0] == '.') out.push_back(f);
  }
  return out;
}

// Outputs other than the manifest.
std::vector<std::string> outputs_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& f : list_files(dir)) {
    if (f.rfind("umamba_predict", 0) != 0) out.push_back(f);
  }
  return out;
}

bool same_labels(const fs::path& a, const fs::path& b) {
  return io::read_image(a).same_pixels(io::read_image(b));
}

class Reliability_PredictCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { ::unsetenv("UMAMBA_FAULT_INJECT"); }
};

TEST_F(Reliability_PredictCli, failed_write_or_rename_fails_that_input_only) {
  TempDir t;
  const fs::path in = t / "in", clean = t / "clean", out = t / "out";
  write_cells(in, 3);
  ASSERT_EQ(run_umamba(args({in.string()}, clean, {"--measurements"}), t / "clean.log").status, 0);
  // img1: its label's rename fails after its CSV was committed; img2: its CSV's data never
  // reaches the disk. img0 is untouched.
  const RunResult r = run_umamba(args({in.string()}, out, {"--measurements"}), t / "log",
                                 faults("rename:1@img1_label,write:1@img2_objects"));
  EXPECT_EQ(r.status, 2) << r.log;
  EXPECT_NE(r.log.find("FAILED img1.tif"), std::string::npos) << r.log;
  EXPECT_NE(r.log.find("FAILED img2.tif"), std::string::npos) << r.log;
  EXPECT_NE(r.log.find("UMAMBA_FAULT_INJECT rename"), std::string::npos) << r.log;
  EXPECT_NE(r.log.find("UMAMBA_FAULT_INJECT write"), std::string::npos) << r.log;
  EXPECT_EQ(outputs_in(out), (std::vector<std::string>{"img0_label.tiff", "img0_objects.csv"}));
  EXPECT_TRUE(hidden_in(out).empty());
  EXPECT_TRUE(same_labels(out / "img0_label.tiff", clean / "img0_label.tiff"));
  EXPECT_EQ(read_text(out / "img0_objects.csv"), read_text(clean / "img0_objects.csv"));
  const auto m = read_json(out / "umamba_predict.json");
  EXPECT_EQ(m["files"]["img1.tif"]["status"], "failed");
  EXPECT_NE(m["files"]["img1.tif"]["error"].get<std::string>().find("img1_label.tiff"),
            std::string::npos);
  EXPECT_EQ(m["runs"][0]["counts"]["failed"], 2);

  // The same command without faults finishes the two failed inputs only.
  const RunResult again = run_umamba(args({in.string()}, out, {"--measurements"}), t / "log2");
  EXPECT_EQ(again.status, 0) << again.log;
  EXPECT_NE(again.log.find("1 input(s) already done"), std::string::npos) << again.log;
  for (const char* n : {"img1", "img2"}) {
    EXPECT_TRUE(same_labels(out / (std::string(n) + "_label.tiff"),
                            clean / (std::string(n) + "_label.tiff")))
        << n;
  }
}

TEST_F(Reliability_PredictCli, unreadable_input_fails_that_input_only) {
  TempDir t;
  const fs::path in = t / "in", out = t / "out";
  write_cells(in, 3);
  // The run opens each input twice: once for its tile estimate (errors there are ignored),
  // once to segment it; the second open of img1 fails.
  const RunResult r = run_umamba(args({in.string()}, out), t / "log", faults("read:2@img1.tif"));
  EXPECT_EQ(r.status, 1) << r.log;
  EXPECT_NE(r.log.find("FAILED img1.tif"), std::string::npos) << r.log;
  EXPECT_NE(r.log.find("UMAMBA_FAULT_INJECT read"), std::string::npos) << r.log;
  EXPECT_EQ(outputs_in(out), (std::vector<std::string>{"img0_label.tiff", "img2_label.tiff"}));
  EXPECT_TRUE(hidden_in(out).empty());
}

TEST_F(Reliability_PredictCli, malformed_fault_plan_is_a_setup_error) {
  TempDir t;
  write_cells(t / "in", 1);
  const RunResult r =
      run_umamba(args({(t / "in").string()}, t / "out"), t / "log", faults("write:zero"));
  EXPECT_EQ(r.status, kPredictSetupErrorStatus) << r.log;
  EXPECT_NE(r.log.find("UMAMBA_FAULT_INJECT: bad entry 'write:zero'"), std::string::npos) << r.log;
}

TEST_F(Reliability_PredictCli, out_of_memory_retries_with_fewer_tiles_same_labels) {
  TempDir t;
  const fs::path in = t / "in", clean = t / "clean";
  write_cells(in, 3);
  ASSERT_EQ(run_umamba(args({in.string()}, clean, {"--batch-size", "4"}), t / "clean.log").status,
            0);
  {
    // The first call (4 tiles) and its retry with 2 fail; the file finishes with one tile per
    // call; later files start again at 4.
    const fs::path out = t / "retry";
    const RunResult r =
        run_umamba(args({in.string()}, out, {"--batch-size", "4"}), t / "log", faults("alloc:1-2"));
    EXPECT_EQ(r.status, 0) << r.log;
    EXPECT_NE(r.log.find("out of memory on cpu with 4 tile(s) per model call; retrying with 2"),
              std::string::npos)
        << r.log;
    EXPECT_NE(r.log.find("with 2 tile(s) per model call; retrying with 1"), std::string::npos)
        << r.log;
    for (int i = 0; i < 3; ++i) {
      const std::string n = "img" + std::to_string(i) + "_label.tiff";
      EXPECT_TRUE(same_labels(out / n, clean / n)) << n;
    }
    const auto m = read_json(out / "umamba_predict.json");
    EXPECT_EQ(m["files"]["img0.tif"]["status"], "done");
  }
  {
    // Out of memory down to one tile on the CPU: nowhere to fall back to; that input fails.
    const fs::path out = t / "fail";
    const RunResult r = run_umamba(args({in.string()}, out, {"--batch-size", "4"}), t / "log2",
                                   faults("alloc:1-3"));
    EXPECT_EQ(r.status, 1) << r.log;
    EXPECT_NE(r.log.find("FAILED img0.tif: engine: out of memory on cpu even with one tile"),
              std::string::npos)
        << r.log;
    EXPECT_EQ(outputs_in(out), (std::vector<std::string>{"img1_label.tiff", "img2_label.tiff"}));
    EXPECT_TRUE(hidden_in(out).empty());
    for (const char* n : {"img1_label.tiff", "img2_label.tiff"}) {
      EXPECT_TRUE(same_labels(out / n, clean / n)) << n;
    }
  }
}

TEST_F(Reliability_PredictCli, nan_logits_fail_the_input_naming_model_and_input) {
  TempDir t;
  const fs::path in = t / "in", out = t / "out";
  write_cells(in, 2);
  const RunResult r = run_umamba(
      args({in.string()}, out, {"--probabilities", "--measurements"}, nan_model()), t / "log");
  EXPECT_EQ(r.status, 2) << r.log;
  for (const char* n : {"img0.tif", "img1.tif"}) {
    const std::string line =
        "FAILED " + std::string(n) + ": " + (in / n).string() + ": model " + nan_model().string();
    EXPECT_NE(r.log.find(line), std::string::npos) << line << "\n" << r.log;
  }
  EXPECT_NE(r.log.find("NaN or infinite logits; no labels written"), std::string::npos) << r.log;
  EXPECT_TRUE(outputs_in(out).empty()) << fmt::format("{}", fmt::join(outputs_in(out), " "));
  EXPECT_TRUE(hidden_in(out).empty());
}

TEST_F(Reliability_PredictCli, outputs_never_leave_the_output_folder) {
  TempDir t;
  const fs::path in = t / "in", out = t / "out", outside = t / "outside";
  write_cells(in, 1);
  io::write_image(in / "sub/a.tif", cell_image(40, 44, 5));
  io::write_image(outside / "x.tif", cell_image(40, 44, 6));
  {
    // A glob that climbs out of its root: x.tif's relative name would be "../outside/x.tif".
    const std::string pattern = (in / "*" / ".." / ".." / "outside" / "*.tif").string();
    const RunResult r = run_umamba(args({pattern}, out), t / "glob.log");
    EXPECT_EQ(r.status, 1) << r.log;
    EXPECT_NE(r.log.find("climbs out of the output folder"), std::string::npos) << r.log;
    EXPECT_FALSE(fs::exists(outside / "x_label.tiff"));
    EXPECT_FALSE(fs::exists(t / "x_label.tiff"));
    EXPECT_TRUE(outputs_in(out).empty());
  }
  {
    // A symbolic link in the output tree pointing outside, with a file there that must survive
    // even --overwrite and a failure.
    remove_tree(out);
    fs::create_directories(out);
    fs::create_directories(t / "elsewhere");
    write_text(t / "elsewhere" / "a_label.tiff", "precious");
    fs::create_directory_symlink(t / "elsewhere", out / "sub");
    const RunResult r =
        run_umamba(args({in.string()}, out, {"--recursive", "--overwrite"}), t / "link.log");
    EXPECT_EQ(r.status, 1) << r.log;
    EXPECT_NE(r.log.find("FAILED sub/a.tif"), std::string::npos) << r.log;
    EXPECT_NE(r.log.find("outside the output folder"), std::string::npos) << r.log;
    EXPECT_EQ(read_text(t / "elsewhere" / "a_label.tiff"), "precious");
    EXPECT_EQ(list_files(t / "elsewhere"), (std::vector<std::string>{"a_label.tiff"}));
    EXPECT_TRUE(fs::exists(out / "img0_label.tiff"));  // the other input is done
  }
  {
    // A list file with "..", an absolute path and a folder: outputs by file name, inside.
    remove_tree(out);
    write_text(t / "lists" / "inputs.txt",
               "../outside/x.tif\n" + (in / "img0.tif").string() + "\n../in/sub\n");
    const RunResult r =
        run_umamba(args({}, out, {"--list", (t / "lists" / "inputs.txt").string()}), t / "l.log");
    EXPECT_EQ(r.status, 0) << r.log;
    EXPECT_EQ(outputs_in(out),
              (std::vector<std::string>{"a_label.tiff", "img0_label.tiff", "x_label.tiff"}));
  }
  {
    // A suffix with a folder separator is refused before anything runs.
    const RunResult r =
        run_umamba(args({in.string()}, out, {"--suffix", "/../../escaped"}), t / "s.log");
    EXPECT_EQ(r.status, kPredictSetupErrorStatus) << r.log;
    EXPECT_NE(r.log.find("must not contain '/'"), std::string::npos) << r.log;
  }
}

TEST_F(Reliability_PredictCli, whole_image_memory_is_checked_before_allocation) {
  TempDir t;
  const fs::path in = t / "in";
  fs::create_directories(in);
  io::write_image(in / "big.tif", cell_image(400, 400, 9));
  // 160,000 pixels: whole-image mode needs 1.44 MB (class map + instance labels and their
  // labelling buffer); streaming with one tile per batch needs about 0.6 MB.
  const std::map<std::string, std::string> env = {{"UMAMBA_MAX_ALLOC_BYTES", "1000000"}};
  const RunResult whole =
      run_umamba(args({in.string()}, t / "whole", {"--batch-size", "1"}), t / "w.log", env);
  EXPECT_EQ(whole.status, 1) << whole.log;
  EXPECT_NE(whole.log.find("FAILED big.tif"), std::string::npos) << whole.log;
  EXPECT_NE(whole.log.find("above the allocation limit of 0.001 GB (UMAMBA_MAX_ALLOC_BYTES); use "
                           "--stream always"),
            std::string::npos)
      << whole.log;
  EXPECT_TRUE(outputs_in(t / "whole").empty());
  const RunResult streamed =
      run_umamba(args({in.string()}, t / "streamed", {"--batch-size", "1", "--stream", "always"}),
                 t / "s.log", env);
  EXPECT_EQ(streamed.status, 0) << streamed.log;
  EXPECT_EQ(outputs_in(t / "streamed"), (std::vector<std::string>{"big_label.tiff"}));
}

TEST_F(Reliability_PredictCli, existing_outputs_replaced_only_with_overwrite) {
  TempDir t;
  const fs::path in = t / "in", out = t / "out", clean = t / "clean";
  write_cells(in, 1);
  ASSERT_EQ(run_umamba(args({in.string()}, clean), t / "clean.log").status, 0);
  // An older label image (another size, so it cannot pass for the new one).
  const Image old = Image::zeros(DType::U16, {1, 1, 5, 5});
  io::write_image(out / "img0_label.tiff", old);
  const std::string old_bytes = read_text(out / "img0_label.tiff");
  {
    const RunResult r = run_umamba(args({in.string()}, out), t / "keep.log");
    EXPECT_EQ(r.status, 0) << r.log;
    EXPECT_NE(r.log.find("already done"), std::string::npos) << r.log;
    EXPECT_EQ(read_text(out / "img0_label.tiff"), old_bytes);
  }
  {
    // --overwrite whose rename fails: no partial file under the final name (the failed input
    // leaves no outputs, so a later run redoes it), no temporary.
    const RunResult r = run_umamba(args({in.string()}, out, {"--overwrite"}), t / "fail.log",
                                   faults("rename:1@img0_label"));
    EXPECT_EQ(r.status, 1) << r.log;
    EXPECT_FALSE(fs::exists(out / "img0_label.tiff"));
    EXPECT_TRUE(hidden_in(out).empty());
  }
  io::write_image(out / "img0_label.tiff", old);
  {
    const RunResult r = run_umamba(args({in.string()}, out, {"--overwrite"}), t / "ok.log");
    EXPECT_EQ(r.status, 0) << r.log;
    EXPECT_TRUE(same_labels(out / "img0_label.tiff", clean / "img0_label.tiff"));
    EXPECT_TRUE(hidden_in(out).empty());
  }
}

}  // namespace
}  // namespace umamba::pipeline
