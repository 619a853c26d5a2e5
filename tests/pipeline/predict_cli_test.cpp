// End-to-end tests of `umamba predict` through the built binary (and, for streaming, through
// run_predict in this process), with a tiny random-initialised model folder written here through
// the model library:
//   - a folder of good, corrupt, truncated and empty files: the good ones segmented exactly as the
//     in-process engine + post-processing computes them, the bad ones reported, exit status = the
//     number of failures, no partial outputs;
//   - SIGKILL mid-run, then the same command again: it finishes, and every output is byte for
//     byte the output of an uninterrupted run; SIGTERM stops after the current file with status 75;
//   - --shard over 3 parts, and a SLURM array environment, cover every file exactly once;
//   - two workers on the CPU split a folder with no file done twice;
//   - streamed (band-merged) labels equal whole-image labels.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "io/image_io.h"
#include "metrics/instance_f1.h"
#include "pipeline/predict.h"
#include "pipeline_test_util.h"
#include "predict_model_util.h"

namespace umamba::pipeline {
namespace {

using namespace test;

// The tiny model is written once per test binary.
const fs::path& tiny_model() {
  static const fs::path dir = [] {
    const fs::path d = fs::path(UMAMBA_BINARY_DIR) / "test_output" / "pipeline" /
                       ("tiny-model-" + std::to_string(::getpid()));
    remove_tree(d);
    make_tiny_model(d);
    return d;
  }();
  return dir;
}

void write_cells(const fs::path& dir, int count, int64_t h, int64_t w, uint32_t seed = 1) {
  fs::create_directories(dir);
  for (int i = 0; i < count; ++i) {
    io::write_image(dir / ("img" + std::to_string(i) + ".tif"),
                    cell_image(h + 8 * (i % 3), w + 4 * (i % 2), seed + static_cast<uint32_t>(i)));
  }
}

std::vector<std::string> predict_args(const fs::path& in, const fs::path& out,
                                      std::vector<std::string> extra = {}) {
  std::vector<std::string> a = {"predict", in.string(),           "-o",         out.string(),
                                "-m",      tiny_model().string(), "--progress", "lines"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

std::vector<std::string> labels_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& f : list_files(dir)) {
    if (f.size() > 11 && f.compare(f.size() - 11, 11, "_label.tiff") == 0) out.push_back(f);
  }
  return out;
}

std::vector<std::string> hidden_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& f : list_files(dir)) {
    if (fs::path(f).filename().string()[0] == '.') out.push_back(f);
  }
  return out;
}

TEST(Pipeline_PredictCli, good_files_segmented_bad_files_reported) {
  TempDir t;
  const fs::path in = t / "in", out = t / "out";
  write_cells(in, 3, 72, 60);
  io::write_image(in / "sub/deep.tif", cell_image(40, 50, 77));
  write_text(in / "corrupt.tif", std::string(4096, '\x5a'));
  write_text(in / "empty.tif", "");
  {
    const std::string good = read_text(in / "img0.tif");
    write_text(in / "truncated.tif", good.substr(0, good.size() / 3));
  }
  write_text(in / "readme.txt", "not an image");  // not an image: not an input of a folder

  const RunResult r =
      run_umamba(predict_args(in, out, {"--recursive", "--measurements", "--geojson"}), t / "log");
  EXPECT_EQ(r.status, 3) << r.log;  // three inputs failed
  for (const char* bad : {"corrupt.tif", "empty.tif", "truncated.tif"}) {
    EXPECT_NE(r.log.find(std::string("FAILED ") + bad), std::string::npos) << bad << "\n" << r.log;
  }
  EXPECT_EQ(labels_in(out), (std::vector<std::string>{"img0_label.tiff", "img1_label.tiff",
                                                      "img2_label.tiff", "sub/deep_label.tiff"}));
  EXPECT_TRUE(hidden_in(out).empty());
  for (const char* stem : {"corrupt", "empty", "truncated"}) {
    for (const auto& f : list_files(out)) EXPECT_EQ(f.find(stem), std::string::npos) << f;
  }
  // Each label image equals the in-process prediction: both folds ensembled, mirroring on,
  // reclaim instances.
  for (const char* name : {"img0", "img1", "img2", "sub/deep"}) {
    const Image image = io::read_image(in / (std::string(name) + ".tif"));
    const Image got = io::read_image(out / (std::string(name) + "_label.tiff"));
    const Image want =
        reference_labels(tiny_model(), image, /*mirror=*/true, postprocess::InstanceMode::Reclaim);
    EXPECT_EQ(got.shape(), (Shape{1, 1, image.height(), image.width()})) << name;
    EXPECT_EQ(got.dtype(), DType::U16) << name;
    EXPECT_TRUE(got.same_pixels(want.cast(DType::U16))) << name;
    EXPECT_TRUE(fs::exists(out / (std::string(name) + "_objects.csv"))) << name;
    EXPECT_TRUE(fs::exists(out / (std::string(name) + ".geojson"))) << name;
  }
  // The manifest says what happened to each input.
  const auto m = read_json(out / "umamba_predict.json");
  ASSERT_EQ(m["runs"].size(), 1u);
  EXPECT_EQ(m["runs"][0]["status"], "complete");
  EXPECT_EQ(m["runs"][0]["counts"]["done"], 4);
  EXPECT_EQ(m["runs"][0]["counts"]["failed"], 3);
  EXPECT_EQ(m["runs"][0]["model"]["folds"], (nlohmann::json{"0", "1"}));
  EXPECT_EQ(m["runs"][0]["model"]["metadata_sha256"].get<std::string>().size(), 64u);
  EXPECT_EQ(m["runs"][0]["parameters"]["postprocess"], "reclaim");
  EXPECT_EQ(m["files"]["sub/deep.tif"]["status"], "done");
  EXPECT_GE(m["files"]["img0.tif"]["instances"].get<int64_t>(), 1);
  EXPECT_GT(m["files"]["img0.tif"]["seconds"].get<double>(), 0.0);
  for (const char* bad : {"corrupt.tif", "empty.tif", "truncated.tif"}) {
    EXPECT_EQ(m["files"][bad]["status"], "failed") << bad;
    EXPECT_NE(m["files"][bad]["error"].get<std::string>().find(bad), std::string::npos) << bad;
  }
  // Running again skips what is done and retries the failures only.
  const RunResult again =
      run_umamba(predict_args(in, out, {"--recursive", "--measurements", "--geojson"}), t / "log2");
  EXPECT_EQ(again.status, 3) << again.log;
  EXPECT_NE(again.log.find("4 input(s) already done"), std::string::npos) << again.log;
  EXPECT_EQ(count_of(again.log, "done img"), 0) << again.log;
}

TEST(Pipeline_PredictCli, setup_errors_have_their_own_status) {
  TempDir t;
  write_cells(t / "in", 1, 40, 40);
  // No images at all.
  fs::create_directories(t / "nothing");
  EXPECT_EQ(run_umamba(predict_args(t / "nothing", t / "out"), t / "log1").status,
            kPredictSetupErrorStatus);
  // A bad shard, a fold the model does not have, a post-processing the model cannot do.
  EXPECT_EQ(run_umamba(predict_args(t / "in", t / "out", {"--shard", "3/3"}), t / "log2").status,
            kPredictSetupErrorStatus);
  EXPECT_EQ(run_umamba(predict_args(t / "in", t / "out", {"--folds", "4"}), t / "log3").status,
            kPredictSetupErrorStatus);
  const RunResult r =
      run_umamba(predict_args(t / "in", t / "out", {"--device", "cuda:7"}), t / "log4");
  EXPECT_EQ(r.status, kPredictSetupErrorStatus) << r.log;
  EXPECT_NE(r.log.find("cuda:7"), std::string::npos) << r.log;
}

TEST(Pipeline_PredictCli, help_shows_defaults_and_environment) {
  TempDir t;
  const RunResult r = run_umamba({"predict", "--help"}, t / "log");
  EXPECT_EQ(r.status, 0);
  for (const char* s :
       {"UMAMBA_PREDICT_MODEL", "UMAMBA_PREDICT_DEVICE", "UMAMBA_PREDICT_SHARD",
        "UMAMBA_PREDICT_BATCH_SIZE", "UMAMBA_PREDICT_TILE_STEP", "UMAMBA_PREDICT_MIRROR",
        "UMAMBA_PREDICT_PRECISION", "UMAMBA_PREDICT_POSTPROCESS", "UMAMBA_PREDICT_MIN_SIZE",
        "UMAMBA_PREDICT_WORKERS", "UMAMBA_PREDICT_FOLDS", "_label", "0.5", "fp32"}) {
    EXPECT_NE(r.log.find(s), std::string::npos) << s;
  }
}

// Kills the run with SIGKILL once `min_labels` label files exist; returns how many existed.
size_t kill_after_labels(const Child& c, const fs::path& out, size_t min_labels, int sig) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (child_ended(c, status)) return SIZE_MAX;  // ended on its own
    const size_t n = labels_in(out).size();
    if (n >= min_labels) {
      ::kill(c.pid, sig);
      return n;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::kill(c.pid, SIGKILL);
  return 0;
}

TEST(Pipeline_PredictCli, sigkill_then_restart_matches_an_uninterrupted_run) {
  TempDir t;
  const fs::path in = t / "in", ref = t / "ref", out = t / "out";
  const int files = 8;
  write_cells(in, files, 120, 112, 40);
  const RunResult full = run_umamba(predict_args(in, ref, {"--probabilities"}), t / "log_ref");
  ASSERT_EQ(full.status, 0) << full.log;
  ASSERT_EQ(labels_in(ref).size(), static_cast<size_t>(files));

  const Child c = spawn_umamba(predict_args(in, out, {"--probabilities"}), t / "log_killed");
  const size_t at_kill = kill_after_labels(c, out, 2, SIGKILL);
  const int killed_status = wait_child(c);
  ASSERT_NE(at_kill, SIZE_MAX) << "the run ended before it could be killed";
  EXPECT_EQ(killed_status, 128 + SIGKILL);
  const auto after_kill = labels_in(out);
  EXPECT_LT(after_kill.size(), static_cast<size_t>(files)) << "killed after the last file";
  // Whatever carries a final name is complete: equal, byte for byte, to the uninterrupted run.
  for (const auto& f : list_files(out)) {
    if (fs::path(f).filename().string()[0] == '.' || f.find("umamba_predict") == 0) continue;
    EXPECT_EQ(read_text(out / f), read_text(ref / f)) << f;
  }
  std::cerr << "killed with " << after_kill.size() << " of " << files << " labels written, "
            << hidden_in(out).size() << " temporaries left\n";

  const RunResult resumed =
      run_umamba(predict_args(in, out, {"--probabilities"}), t / "log_resumed");
  ASSERT_EQ(resumed.status, 0) << resumed.log;
  EXPECT_NE(resumed.log.find(std::to_string(after_kill.size()) + " input(s) already done"),
            std::string::npos)
      << resumed.log;
  // Same outputs as the uninterrupted run, byte for byte; no temporaries left.
  std::vector<std::string> want, got;
  for (const auto& f : list_files(ref)) {
    if (f.find("umamba_predict") != 0) want.push_back(f);
  }
  for (const auto& f : list_files(out)) {
    if (f.find("umamba_predict") != 0) got.push_back(f);
  }
  EXPECT_EQ(got, want);
  for (const auto& f : want) EXPECT_EQ(read_text(out / f), read_text(ref / f)) << f;
  // The manifest keeps both runs: the killed one still says "running".
  const auto m = read_json(out / "umamba_predict.json");
  ASSERT_EQ(m["runs"].size(), 2u);
  EXPECT_EQ(m["runs"][0]["status"], "running");
  EXPECT_EQ(m["runs"][1]["status"], "complete");
  EXPECT_EQ(m["runs"][1]["inputs"]["already_done"], after_kill.size());
  int done = 0;
  for (const auto& [k, v] : m["files"].items())
    done += v["status"] == "done" || v["status"] == "skipped";
  EXPECT_EQ(done, files);
}

TEST(Pipeline_PredictCli, sigterm_stops_after_the_current_file) {
  TempDir t;
  const fs::path in = t / "in", out = t / "out";
  const int files = 8;
  write_cells(in, files, 120, 112, 60);
  const Child c = spawn_umamba(predict_args(in, out), t / "log_term");
  const size_t at_signal = kill_after_labels(c, out, 1, SIGTERM);
  const int status = wait_child(c);
  const std::string log = read_text(t / "log_term");
  ASSERT_NE(at_signal, SIZE_MAX) << "the run ended before the signal";
  EXPECT_EQ(status, kPredictInterruptedStatus) << log;
  EXPECT_NE(log.find("signal 15"), std::string::npos) << log;
  const auto labels = labels_in(out);
  EXPECT_LT(labels.size(), static_cast<size_t>(files));
  EXPECT_TRUE(hidden_in(out).empty());  // the current file was finished, not abandoned
  auto m = read_json(out / "umamba_predict.json");
  EXPECT_EQ(m["runs"][0]["status"], "interrupted");
  EXPECT_EQ(m["runs"][0]["counts"]["done"], labels.size());
  const RunResult rest = run_umamba(predict_args(in, out), t / "log_rest");
  EXPECT_EQ(rest.status, 0) << rest.log;
  EXPECT_EQ(labels_in(out).size(), static_cast<size_t>(files));
}

// Files each part's manifest says it segmented.
std::multiset<std::string> done_files(const fs::path& manifest) {
  std::multiset<std::string> out;
  const auto m = read_json(manifest);
  for (const auto& [k, v] : m["files"].items()) {
    if (v["status"] == "done") out.insert(k);
  }
  return out;
}

TEST(Pipeline_PredictCli, shards_and_slurm_arrays_cover_every_file_once) {
  TempDir t;
  const fs::path in = t / "in";
  const int files = 7;
  write_cells(in, files, 40, 36, 80);
  std::vector<std::string> names;
  for (int i = 0; i < files; ++i) names.push_back("img" + std::to_string(i) + ".tif");
  std::sort(names.begin(), names.end());
  const std::map<std::string, std::string> no_slurm = {{"SLURM_ARRAY_TASK_ID", ""},
                                                       {"SLURM_ARRAY_TASK_COUNT", ""},
                                                       {"SLURM_ARRAY_TASK_MIN", ""},
                                                       {"SLURM_ARRAY_TASK_STEP", ""}};
  for (const bool slurm : {false, true}) {
    const fs::path out = t / (slurm ? "out_slurm" : "out_flag");
    std::multiset<std::string> all;
    for (int part = 0; part < 3; ++part) {
      std::map<std::string, std::string> env = no_slurm;
      std::vector<std::string> extra = {"--no-mirror"};
      if (slurm) {  // sbatch --array=4-6
        env["SLURM_ARRAY_TASK_ID"] = std::to_string(4 + part);
        env["SLURM_ARRAY_TASK_MIN"] = "4";
        env["SLURM_ARRAY_TASK_COUNT"] = "3";
      } else {
        extra.insert(extra.end(), {"--shard", std::to_string(part) + "/3"});
      }
      const RunResult r = run_umamba(predict_args(in, out, extra),
                                     t / ("log" + std::to_string(part) + (slurm ? "s" : "f")), env);
      ASSERT_EQ(r.status, 0) << r.log;
      const fs::path manifest =
          out / ("umamba_predict.shard-" + std::to_string(part) + "-of-3.json");
      const auto mine = done_files(manifest);
      // Part p takes the sorted names p, p + 3, ...
      std::multiset<std::string> expected;
      for (size_t i = static_cast<size_t>(part); i < names.size(); i += 3)
        expected.insert(names[i]);
      EXPECT_EQ(mine, expected) << "part " << part << (slurm ? " (SLURM)" : " (--shard)");
      EXPECT_EQ(read_json(manifest)["runs"][0]["shard"]["source"], slurm ? "slurm" : "flag");
      all.insert(mine.begin(), mine.end());
    }
    EXPECT_EQ(all, std::multiset<std::string>(names.begin(), names.end()));
    EXPECT_EQ(labels_in(out).size(), static_cast<size_t>(files));
    EXPECT_FALSE(fs::exists(out / "umamba_predict.json"));
  }
  // An explicit --shard wins over the SLURM environment.
  std::map<std::string, std::string> env = no_slurm;
  env["SLURM_ARRAY_TASK_ID"] = "1";
  env["SLURM_ARRAY_TASK_COUNT"] = "2";
  const RunResult r = run_umamba(predict_args(in, t / "out_all", {"--no-mirror", "--shard", "0/1"}),
                                 t / "log_all", env);
  ASSERT_EQ(r.status, 0) << r.log;
  EXPECT_EQ(labels_in(t / "out_all").size(), static_cast<size_t>(files));
}

TEST(Pipeline_PredictCli, two_cpu_workers_share_one_queue) {
  TempDir t;
  const fs::path in = t / "in", out = t / "out";
  const int files = 10;
  write_cells(in, files, 64, 64, 100);
  const RunResult r =
      run_umamba(predict_args(in, out, {"--workers", "2", "--device", "cpu"}), t / "log");
  ASSERT_EQ(r.status, 0) << r.log;
  EXPECT_EQ(labels_in(out).size(), static_cast<size_t>(files));
  const auto m = read_json(out / "umamba_predict.json");
  std::map<int, int> per_worker;
  for (int i = 0; i < files; ++i) {
    const std::string key = "img" + std::to_string(i) + ".tif";
    // Segmented exactly once: one "done" line in the log, one record.
    EXPECT_EQ(count_of(r.log, "done " + key + " "), 1) << key;
    ASSERT_EQ(m["files"][key]["status"], "done") << key;
    const int w = m["files"][key]["worker"].get<int>();
    EXPECT_TRUE(w == 0 || w == 1) << w;
    ++per_worker[w];
  }
  EXPECT_EQ(m["runs"][0]["parameters"]["workers_per_device"], 2);
  std::cerr << "files per worker:";
  for (const auto& [w, n] : per_worker) std::cerr << " worker " << w << ": " << n;
  std::cerr << "\n";
  // Outputs equal those of a one-worker run.
  const RunResult one = run_umamba(predict_args(in, t / "one", {"--device", "cpu"}), t / "log1");
  ASSERT_EQ(one.status, 0) << one.log;
  for (const auto& f : labels_in(out)) EXPECT_EQ(read_text(out / f), read_text(t / "one" / f)) << f;
}

// Streaming in process: band-merged plain instances and the streamed class map equal the
// whole-image results; the engine's window stays smaller than the image.
TEST(Pipeline_Predict, streamed_labels_equal_whole_image_labels) {
  TempDir t;
  const fs::path in = t / "in";
  io::write_image(in / "wide.tif", cell_image(300, 260, 5));
  for (const std::string post : {"plain", "none"}) {
    for (const int64_t min_size : {int64_t{0}, int64_t{20}}) {
      if (post == "none" && min_size > 0) continue;
      std::map<std::string, Image> labels;
      std::map<std::string, Image> probs;
      for (const std::string stream : {"never", "always"}) {
        PredictJob job;
        job.inputs = {in.string()};
        job.output = t / (post + std::to_string(min_size) + stream);
        job.model = tiny_model();
        job.mirror = false;
        job.postprocess = post;
        job.min_size = min_size;
        job.stream = stream;
        job.probabilities = true;
        job.progress = "off";
        job.handle_signals = false;
        const PredictSummary s = run_predict(job);
        ASSERT_EQ(s.exit_code(), 0);
        labels[stream] = io::read_image(job.output / "wide_label.tiff");
        probs[stream] = io::read_image(job.output / "wide_prob.tiff");
        const auto m = read_json(job.output / "umamba_predict.json");
        const auto& rec = m["files"]["wide.tif"];
        EXPECT_EQ(rec["mode"], stream == "always" ? "streamed" : "whole");
        EXPECT_LT(rec["engine"]["peak_input_lines"].get<int64_t>(), 300);
        EXPECT_LT(rec["engine"]["peak_accumulator_lines"].get<int64_t>(), 300);
      }
      EXPECT_TRUE(labels["always"].same_pixels(labels["never"])) << post << " " << min_size;
      EXPECT_TRUE(probs["always"].same_pixels(probs["never"])) << post;
      if (post == "plain") {
        // Against the in-process reference (plain instances, then the size filter).
        Image want = reference_labels(tiny_model(), io::read_image(in / "wide.tif"), false,
                                      postprocess::InstanceMode::Plain);
        if (min_size > 0) {
          const Image cls = reference_labels(tiny_model(), io::read_image(in / "wide.tif"), false,
                                             postprocess::InstanceMode::Plain, false);
          postprocess::InstanceOptions opt;
          opt.mode = postprocess::InstanceMode::Plain;
          opt.min_size = min_size;
          want = postprocess::classes_to_instances(cls, opt);
        }
        EXPECT_TRUE(labels["always"].same_pixels(want.cast(labels["always"].dtype()))) << min_size;
      }
    }
  }
}

// The same for a volume under a 3D model: bands are slabs of whole slices, joined in 3D (26-
// connectivity) across their faces; the volume is not a multiple of the patch (padding).
TEST(Pipeline_Predict, streamed_volume_labels_equal_whole_volume_labels) {
  TempDir t;
  make_tiny_model(t / "model3d", 1, 11, 3, 1, 0.06);
  const fs::path in = t / "in";
  io::write_image(in / "stack.tif", cell_volume(37, 40, 44, 9));
  for (const int64_t min_size : {int64_t{0}, int64_t{6}}) {
    std::map<std::string, Image> labels, probs;
    std::map<std::string, nlohmann::json> recs;
    for (const std::string stream : {"never", "always"}) {
      PredictJob job;
      job.inputs = {in.string()};
      job.output = t / (stream + std::to_string(min_size));
      job.model = t / "model3d";
      job.mirror = false;
      job.postprocess = "plain";
      job.min_size = min_size;
      job.stream = stream;
      job.probabilities = true;
      job.progress = "off";
      job.handle_signals = false;
      ASSERT_EQ(run_predict(job).exit_code(), 0);
      labels[stream] = io::read_image(job.output / "stack_label.tiff");
      probs[stream] = io::read_image(job.output / "stack_prob.tiff");
      recs[stream] = read_json(job.output / "umamba_predict.json")["files"]["stack.tif"];
    }
    EXPECT_EQ(labels["always"].shape(), (Shape{1, 37, 40, 44}));
    EXPECT_EQ(recs["always"]["mode"], "streamed");
    EXPECT_GT(recs["always"]["engine"]["bands"].get<int64_t>(), 1);
    EXPECT_LT(recs["always"]["engine"]["peak_accumulator_lines"].get<int64_t>(), 37);
    EXPECT_GT(recs["always"]["instances"].get<int64_t>(), 1);
    EXPECT_EQ(recs["always"]["instances"], recs["never"]["instances"]);
    EXPECT_TRUE(labels["always"].same_pixels(labels["never"])) << min_size;
    EXPECT_TRUE(probs["always"].same_pixels(probs["never"]));
  }
}

// The NeurIPS 2022 CellSeg layout (images/<name>.png, RGB): outputs <name>_label.tiff, uint16, the
// image's size; a grey TIFF is repeated over the three channels of an RGB model, a two-channel
// image is refused for that file only.
TEST(Pipeline_PredictCli, neurips_images_give_label_tiffs) {
  const fs::path images = fs::path(UMAMBA_SHARED_DATA) / "cells2d/neurips-cellseg/images";
  if (!fs::exists(images / "cell_00225.png")) GTEST_SKIP() << "no " << images;
  TempDir t;
  make_tiny_model(t / "rgb_model", 1, 3, 2, 3);
  const fs::path in = t / "in";
  fs::create_directories(in);
  fs::copy_file(images / "cell_00225.png", in / "cell_00225.png");
  io::write_image(in / "grey.tif", cell_image(70, 90, 3));
  Image two = Image::zeros(DType::U8, {2, 1, 20, 20});
  io::write_image(in / "two.tif", two);
  const RunResult r = run_umamba(
      {"predict", in.string(), "-o", (t / "out").string(), "-m", (t / "rgb_model").string(),
       "--no-mirror", "--tile-step", "1", "--progress", "lines"},
      t / "log");
  EXPECT_EQ(r.status, 1) << r.log;
  EXPECT_NE(r.log.find("has 2 channel(s) but the model expects 3"), std::string::npos) << r.log;
  const Image label = io::read_image(t / "out/cell_00225_label.tiff");
  EXPECT_EQ(label.shape(), (Shape{1, 1, 1024, 1024}));
  EXPECT_EQ(label.dtype(), DType::U16);
  // The grey image through the RGB model equals the same image given as three equal channels.
  const Image grey = io::read_image(in / "grey.tif");
  Image rgb = Image::zeros(DType::U16, {3, 1, 70, 90});
  for (int c = 0; c < 3; ++c) rgb.channel(c).copy_from(grey);
  io::write_image(t / "in_rgb/grey.tif", rgb);
  ASSERT_EQ(run_umamba({"predict", (t / "in_rgb").string(), "-o", (t / "out_rgb").string(), "-m",
                        (t / "rgb_model").string(), "--no-mirror", "--tile-step", "1"},
                       t / "log_rgb")
                .status,
            0);
  EXPECT_EQ(read_text(t / "out/grey_label.tiff"), read_text(t / "out_rgb/grey_label.tiff"));
}

// --scale (StarDist's scale): cells of 7 px diameter, smaller than the 16 px the bundled demo model
// was trained on, are found far better with the image enlarged twice; the labels stay on the
// input's grid, the manifest records the scaled shape. Misuse is reported: a 3D model (setup
// error) and --stream always (a file error: scaled images are predicted whole).
TEST(Pipeline_PredictCli, scale_finds_cells_smaller_than_the_training_data) {
  const fs::path demo = fs::path(UMAMBA_SOURCE_DIR) / "examples/models/cells-bot2d";
  if (!fs::exists(demo / "network.json")) GTEST_SKIP() << "no " << demo;
  TempDir t;
  const RunResult synth =
      run_umamba({"--log-level", "warn", "synth", "-o", (t / "synth").string(), "--count", "1",
                  "--size", "160x160", "--seed", "77", "--cell-diameter", "7", "--prefix", "small"},
                 t / "log_synth");
  ASSERT_EQ(synth.status, 0) << synth.log;
  const Image truth = io::read_image(t / "synth/labels/small_0000_label.tiff");
  double f1[2] = {0, 0};
  const char* scales[2] = {"1", "2"};
  for (int i = 0; i < 2; ++i) {
    const fs::path out = t / (std::string("out") + scales[i]);
    const RunResult r =
        run_umamba({"predict", (t / "synth/images").string(), "-o", out.string(), "-m",
                    demo.string(), "--device", "cpu", "--scale", scales[i], "--progress", "off"},
                   t / (std::string("log") + scales[i]));
    ASSERT_EQ(r.status, 0) << r.log;
    const Image label = io::read_image(out / "small_0000_label.tiff");
    ASSERT_EQ(label.shape(), truth.shape());
    f1[i] = metrics::instance_f1(truth, label).f1;
    const auto manifest = nlohmann::json::parse(read_text(out / "umamba_predict.json"));
    const auto& file = manifest["files"]["small_0000.tif"];
    if (i == 1) {
      ASSERT_TRUE(file.contains("scaling")) << file.dump();
      EXPECT_EQ(file["scaling"]["shape_scaled"], nlohmann::json({1, 320, 320}));
    } else {
      EXPECT_FALSE(file.contains("scaling")) << file.dump();
    }
  }
  EXPECT_GT(f1[1], f1[0] + 0.05) << "F1 at scale 1: " << f1[0] << ", at scale 2: " << f1[1];
  EXPECT_GT(f1[1], 0.85);
  // A 3D model takes no --scale; streaming a scaled image is refused per file.
  make_tiny_model(t / "model3d", 1, 7, 3);
  const Image volume = cell_volume(8, 24, 24, 5);
  io::write_image(t / "vol/v.tif", volume);
  const RunResult r3 = run_umamba({"predict", (t / "vol").string(), "-o", (t / "o3").string(), "-m",
                                   (t / "model3d").string(), "--scale", "2", "--progress", "off"},
                                  t / "log3d");
  EXPECT_EQ(r3.status, kPredictSetupErrorStatus) << r3.log;
  EXPECT_NE(r3.log.find("scaling applies to 2D models"), std::string::npos) << r3.log;
  const RunResult rs =
      run_umamba(predict_args(t / "synth/images", t / "os", {"--scale", "2", "--stream", "always"}),
                 t / "log_stream");
  EXPECT_EQ(rs.status, 1) << rs.log;
  EXPECT_NE(rs.log.find("is predicted whole"), std::string::npos) << rs.log;
}

}  // namespace
}  // namespace umamba::pipeline
