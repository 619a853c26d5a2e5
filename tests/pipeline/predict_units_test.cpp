// Unit tests of the batch machinery behind `umamba predict`: input discovery, sharding (flag and
// SLURM environment), run manifests (merging, corruption, atomic writes), progress text, output
// naming and exit statuses. No model is involved here (predict_cli_test.cpp runs the binary).
#include <gtest/gtest.h>

#include <cstdio>
#include <set>

#include "core/error.h"
#include "pipeline/discovery.h"
#include "pipeline/manifest.h"
#include "pipeline/predict.h"
#include "pipeline/progress.h"
#include "pipeline/shard.h"
#include "pipeline_test_util.h"

namespace umamba::pipeline {
namespace {

namespace fs = std::filesystem;
using test::TempDir;
using test::write_text;

std::vector<std::string> relatives(const std::vector<InputFile>& files) {
  std::vector<std::string> out;
  for (const auto& f : files) out.push_back(f.relative.generic_string());
  return out;
}

// A small tree: images at two depths, non-images, hidden entries, an output-like name.
void make_tree(const fs::path& root) {
  for (const char* name :
       {"b.tif", "a.tiff", "c.nii.gz", "notes.txt", ".hidden.tif", "a_label.tiff", "sub/d.tif",
        "sub/deeper/e.TIF", ".git/f.tif", "out/g.tif"}) {
    write_text(root / name, "x");
  }
}

TEST(Pipeline_Discovery, folder_lists_sorted_images_only) {
  TempDir t;
  make_tree(t.path());
  DiscoveryOptions o;
  o.skip_stem_suffixes = {"_label"};
  const auto files = discover_inputs({(t / "").string()}, o);
  EXPECT_EQ(relatives(files), (std::vector<std::string>{"a.tiff", "b.tif", "c.nii.gz"}));
  for (const auto& f : files) EXPECT_TRUE(fs::exists(f.path)) << f.path;
}

TEST(Pipeline_Discovery, recursive_skips_hidden_and_output_folder) {
  TempDir t;
  make_tree(t.path());
  DiscoveryOptions o;
  o.recursive = true;
  o.skip_stem_suffixes = {"_label"};
  o.skip_dir = t / "out";
  const auto files = discover_inputs({t.path().string()}, o);
  EXPECT_EQ(relatives(files), (std::vector<std::string>{"a.tiff", "b.tif", "c.nii.gz", "sub/d.tif",
                                                        "sub/deeper/e.TIF"}));
  o.skip_dir.clear();
  EXPECT_EQ(discover_inputs({t.path().string()}, o).size(), 6u);  // out/g.tif too
}

TEST(Pipeline_Discovery, globs_match_per_component_and_double_star) {
  TempDir t;
  make_tree(t.path());
  const std::string root = t.path().string();
  EXPECT_EQ(relatives(discover_inputs({root + "/*.tif"})), (std::vector<std::string>{"b.tif"}));
  EXPECT_EQ(relatives(discover_inputs({root + "/*.tif*"})),
            (std::vector<std::string>{"a.tiff", "a_label.tiff", "b.tif"}));
  EXPECT_EQ(relatives(discover_inputs({root + "/s?b/*.tif"})),
            (std::vector<std::string>{"sub/d.tif"}));
  // '**' matches zero or more folders; hidden folders only when named.
  EXPECT_EQ(relatives(discover_inputs({root + "/**/*.[tT][iI][fF]"})),
            (std::vector<std::string>{"b.tif", "out/g.tif", "sub/d.tif", "sub/deeper/e.TIF"}));
  EXPECT_EQ(relatives(discover_inputs({root + "/.*/*.tif"})),
            (std::vector<std::string>{".git/f.tif"}));
  EXPECT_TRUE(discover_inputs({root + "/*.png"}).empty());
  EXPECT_THROW(discover_inputs({root + "/missing/*.tif"}), Error);
  EXPECT_TRUE(match_component("*.tif", "x.tif"));
  EXPECT_FALSE(match_component("*.tif", ".x.tif"));
  EXPECT_TRUE(match_component("[ab]?.t*", "b1.tiff"));
  EXPECT_TRUE(has_wildcard("a/*/b"));
  EXPECT_FALSE(has_wildcard("a/b.tif"));
}

TEST(Pipeline_Discovery, list_file_resolves_relative_to_itself) {
  TempDir t;
  make_tree(t / "data");
  write_text(t / "lists/inputs.txt", "# comment\n\n../data/b.tif\n  ../data/sub  \n" +
                                         (t / "data/c.nii.gz").string() + "\r\n../data/*.tiff\n");
  DiscoveryOptions o;
  o.list_file = t / "lists/inputs.txt";
  o.skip_stem_suffixes = {"_label"};
  EXPECT_EQ(relatives(discover_inputs({}, o)),
            (std::vector<std::string>{"a.tiff", "b.tif", "c.nii.gz", "d.tif"}));
  o.list_file = t / "lists/missing.txt";
  EXPECT_THROW(discover_inputs({}, o), FileError);
}

TEST(Pipeline_Discovery, explicit_files_kept_duplicates_merged_collisions_refused) {
  TempDir t;
  make_tree(t.path());
  write_text(t / "other/b.tif", "y");
  // A missing or non-image file given by name stays, so that it fails visibly later.
  auto files = discover_inputs({(t / "missing.tif").string(), (t / "notes.txt").string()});
  EXPECT_EQ(relatives(files), (std::vector<std::string>{"missing.tif", "notes.txt"}));
  // The same file through a folder and by name counts once.
  files = discover_inputs({t.path().string(), (t / "b.tif").string()});
  const auto names = relatives(files);
  EXPECT_EQ(std::count(names.begin(), names.end(), "b.tif"), 1);
  // Two different files that would write the same output.
  EXPECT_THROW(discover_inputs({(t / "b.tif").string(), (t / "other/b.tif").string()}), Error);
}

TEST(Pipeline_Discovery, splits_double_extensions) {
  EXPECT_EQ(split_image_name("a/b/case_0000.nii.gz"),
            (std::pair<std::string, std::string>{"case_0000", ".nii.gz"}));
  EXPECT_EQ(split_image_name("x.OME.TIFF"),
            (std::pair<std::string, std::string>{"x", ".OME.TIFF"}));
  EXPECT_EQ(split_image_name("cell.tif"), (std::pair<std::string, std::string>{"cell", ".tif"}));
  EXPECT_EQ(split_image_name("noext"), (std::pair<std::string, std::string>{"noext", ""}));
}

TEST(Pipeline_Shard, parses_and_refuses) {
  const Shard s = parse_shard("2/5");
  EXPECT_EQ(s.index, 2);
  EXPECT_EQ(s.count, 5);
  EXPECT_EQ(s.source, "flag");
  EXPECT_EQ(s.name(), "2/5");
  for (const char* bad : {"", "1", "5/5", "-1/3", "1/0", "a/b", "1/3/4", "1 /3"}) {
    EXPECT_THROW(parse_shard(bad), Error) << bad;
  }
}

TEST(Pipeline_Shard, strided_parts_cover_every_item_once) {
  for (int n_items = 0; n_items <= 23; ++n_items) {
    std::vector<int> items(static_cast<size_t>(n_items));
    for (int i = 0; i < n_items; ++i) items[static_cast<size_t>(i)] = i;
    for (int64_t parts = 1; parts <= 9; ++parts) {
      std::vector<int> seen(static_cast<size_t>(n_items), 0);
      for (int64_t p = 0; p < parts; ++p) {
        const auto mine = select_shard(items, Shard{p, parts, "flag"});
        // Reference: item i belongs to part i mod N.
        std::vector<int> expected;
        for (int i = 0; i < n_items; ++i) {
          if (i % parts == p) expected.push_back(i);
        }
        EXPECT_EQ(mine, expected);
        for (int v : mine) ++seen[static_cast<size_t>(v)];
      }
      for (int c : seen) EXPECT_EQ(c, 1);
    }
  }
}

GetEnv env_of(std::map<std::string, std::string> vars) {
  auto shared = std::make_shared<std::map<std::string, std::string>>(std::move(vars));
  return [shared](const char* name) -> const char* {
    auto it = shared->find(name);
    return it == shared->end() ? nullptr : it->second.c_str();
  };
}

TEST(Pipeline_Shard, slurm_array_environment) {
  EXPECT_FALSE(shard_from_slurm(env_of({})).active());
  EXPECT_EQ(shard_from_slurm(env_of({})).source, "none");
  // --array=5-7: tasks 5, 6, 7 are parts 0, 1, 2 of 3.
  for (int id = 5; id <= 7; ++id) {
    const Shard s = shard_from_slurm(env_of({{"SLURM_ARRAY_TASK_ID", std::to_string(id)},
                                             {"SLURM_ARRAY_TASK_MIN", "5"},
                                             {"SLURM_ARRAY_TASK_COUNT", "3"}}));
    EXPECT_EQ(s.index, id - 5);
    EXPECT_EQ(s.count, 3);
    EXPECT_EQ(s.source, "slurm");
  }
  // --array=0-8:4 (tasks 0, 4, 8).
  EXPECT_EQ(shard_from_slurm(env_of({{"SLURM_ARRAY_TASK_ID", "8"},
                                     {"SLURM_ARRAY_TASK_MIN", "0"},
                                     {"SLURM_ARRAY_TASK_STEP", "4"},
                                     {"SLURM_ARRAY_TASK_COUNT", "3"}}))
                .index,
            2);
  // MIN missing: 0.
  EXPECT_EQ(
      shard_from_slurm(env_of({{"SLURM_ARRAY_TASK_ID", "1"}, {"SLURM_ARRAY_TASK_COUNT", "2"}}))
          .index,
      1);
  // Irregular lists (--array=1,4,9) and broken values are refused.
  EXPECT_THROW(shard_from_slurm(env_of({{"SLURM_ARRAY_TASK_ID", "9"},
                                        {"SLURM_ARRAY_TASK_MIN", "1"},
                                        {"SLURM_ARRAY_TASK_COUNT", "3"}})),
               Error);
  EXPECT_THROW(shard_from_slurm(env_of({{"SLURM_ARRAY_TASK_ID", "3"},
                                        {"SLURM_ARRAY_TASK_MIN", "0"},
                                        {"SLURM_ARRAY_TASK_STEP", "2"},
                                        {"SLURM_ARRAY_TASK_COUNT", "3"}})),
               Error);
  EXPECT_THROW(shard_from_slurm(env_of({{"SLURM_ARRAY_TASK_ID", "1"}})), Error);
  EXPECT_THROW(
      shard_from_slurm(env_of({{"SLURM_ARRAY_TASK_ID", "x"}, {"SLURM_ARRAY_TASK_COUNT", "2"}})),
      Error);
  // An explicit --shard wins over the environment.
  const auto env = env_of({{"SLURM_ARRAY_TASK_ID", "1"}, {"SLURM_ARRAY_TASK_COUNT", "2"}});
  EXPECT_EQ(resolve_shard("0/1", env).count, 1);
  EXPECT_EQ(resolve_shard("0/1", env).source, "flag");
  EXPECT_EQ(resolve_shard("", env).index, 1);
}

TEST(Pipeline_Manifest, records_runs_and_merges_on_resume) {
  TempDir t;
  const fs::path path = t / "out/umamba_predict.json";
  {
    RunManifest m(path, "predict");
    EXPECT_EQ(m.begin_run({{"parameters", {{"batch_size", 4}}}}), 0u);
    m.record("a.tif", {{"status", "done"}, {"instances", 3}});
    m.record("b.tif", {{"status", "failed"}, {"error", "b.tif: corrupt"}});
    m.finish_run("interrupted");
  }
  auto j = test::read_json(path);
  EXPECT_EQ(j["format"], "umamba-run-manifest");
  EXPECT_EQ(j["command"], "predict");
  ASSERT_EQ(j["runs"].size(), 1u);
  EXPECT_EQ(j["runs"][0]["status"], "interrupted");
  EXPECT_EQ(j["runs"][0]["parameters"]["batch_size"], 4);
  EXPECT_EQ(j["runs"][0]["counts"]["done"], 1);
  EXPECT_EQ(j["runs"][0]["counts"]["failed"], 1);
  EXPECT_TRUE(j["runs"][0].contains("host"));
  EXPECT_TRUE(j["runs"][0].contains("umamba"));
  {
    RunManifest m(path, "predict");
    EXPECT_EQ(m.file("a.tif")["instances"], 3);
    EXPECT_TRUE(m.file("zzz").is_null());
    EXPECT_EQ(m.begin_run({}), 1u);
    m.record("b.tif", {{"status", "done"}, {"instances", 5}});
    m.record("c.tif", {{"status", "done"}, {"instances", 1}});
    m.finish_run("complete");
  }
  j = test::read_json(path);
  ASSERT_EQ(j["runs"].size(), 2u);
  EXPECT_EQ(j["files"].size(), 3u);
  EXPECT_EQ(j["files"]["a.tif"]["run"], 0);
  EXPECT_EQ(j["files"]["b.tif"]["run"], 1);
  EXPECT_EQ(j["files"]["b.tif"]["status"], "done");
  EXPECT_EQ(j["runs"][1]["counts"]["done"], 2);
  EXPECT_EQ(j["runs"][1]["counts"]["failed"], 0);
  // Only the manifest is in the folder: no temporaries left behind.
  EXPECT_EQ(test::list_files(t / "out"), (std::vector<std::string>{"umamba_predict.json"}));
}

TEST(Pipeline_Manifest, corrupt_manifest_is_moved_aside) {
  TempDir t;
  const fs::path path = t / "m.json";
  write_text(path, "{\"format\": \"umamba-run-manifest\", \"runs\": [");
  {
    RunManifest m(path, "predict");
    m.begin_run({});
    m.finish_run("complete");
  }
  EXPECT_EQ(test::read_json(path)["runs"].size(), 1u);
  const auto names = test::list_files(t.path());
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names[0], "m.json");
  EXPECT_EQ(names[1].rfind("m.json.corrupt-", 0), 0u);
}

TEST(Pipeline_Progress, text_bar_and_durations) {
  EXPECT_EQ(format_duration(0), "0s");
  EXPECT_EQ(format_duration(59.4), "59s");
  EXPECT_EQ(format_duration(200), "3m20s");
  EXPECT_EQ(format_duration(3725), "1h02m");
  EXPECT_EQ(format_duration(-1), "?");
  EXPECT_EQ(progress_bar(0.0, 7), "[>    ]");
  EXPECT_EQ(progress_bar(0.5, 12), "[=====>    ]");
  EXPECT_EQ(progress_bar(1.0, 7), "[=====]");
  ProgressCounts c;
  c.files_total = 10;
  c.files_finished = 4;
  c.files_failed = 1;
  c.files_skipped = 2;
  c.tiles_total = 1000;
  c.tiles_done = 250;
  // 250 tiles in 50 s: 5 tiles/s, 750 left: 150 s.
  const std::string text = progress_text(c, 60, 50);
  EXPECT_NE(text.find("6/10 files (1 failed, 2 skipped)"), std::string::npos) << text;
  EXPECT_NE(text.find("tiles 250/1000"), std::string::npos) << text;
  EXPECT_NE(text.find("5 tiles/s, ETA 2m30s"), std::string::npos) << text;
  EXPECT_NE(text.find("elapsed 1m00s"), std::string::npos) << text;
  EXPECT_EQ(progress_mode_from_name("lines"), ProgressMode::Lines);
  EXPECT_THROW(progress_mode_from_name("fancy"), Error);
}

TEST(Pipeline_Progress, plain_lines_at_intervals_when_not_a_terminal) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  double clock = 0;
  {
    Progress p(3, 30, ProgressMode::Auto, 10.0, f, [&] { return clock; });
    EXPECT_EQ(p.mode(), ProgressMode::Lines);  // a file is not a terminal
    p.file_started("a.tif");                   // first line
    clock = 5;
    p.tiles_done(10);  // within the interval: no line
    p.message("done a.tif");
    clock = 11;
    p.file_finished(true);  // interval passed: a line
    p.file_skipped(10);
    EXPECT_EQ(p.counts().tiles_total, 20);
    clock = 12;
    p.file_finished(false, 5);
    EXPECT_EQ(p.counts().tiles_done, 15);
  }  // finish(): a last line
  std::rewind(f);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, f)) out += buf;
  std::fclose(f);
  EXPECT_EQ(test::count_of(out, "progress: "), 3) << out;
  EXPECT_NE(out.find("done a.tif\n"), std::string::npos);
  EXPECT_NE(out.find("progress: 3/3 files (1 failed, 1 skipped), tiles 15/20"), std::string::npos)
      << out;
  EXPECT_EQ(out.find('\r'), std::string::npos);  // no bar in logs
}

TEST(Pipeline_Predict, output_names_mirror_the_tree) {
  PredictJob job;
  job.output = "out";
  InputFile in{"data/plate1/x.ome.tif", "plate1/x.ome.tif"};
  auto o = predict_outputs(job, in);
  EXPECT_EQ(o.labels, fs::path("out/plate1/x_label.tiff"));
  EXPECT_TRUE(o.probabilities.empty());
  EXPECT_TRUE(o.measurements.empty());
  job.probabilities = job.measurements = job.geojson = job.overlay = true;
  job.suffix = "_cp_masks";
  job.extension = ".tif";
  o = predict_outputs(job, in);
  EXPECT_EQ(o.labels, fs::path("out/plate1/x_cp_masks.tif"));
  EXPECT_EQ(o.probabilities, fs::path("out/plate1/x_prob.tiff"));
  EXPECT_EQ(o.measurements, fs::path("out/plate1/x_objects.csv"));
  EXPECT_EQ(o.geojson, fs::path("out/plate1/x.geojson"));
  EXPECT_EQ(o.overlay.parent_path(), fs::path("out/plate1"));
  EXPECT_EQ(o.overlay.stem(), "x_overlay");
  job.extension = "auto";
  job.suffix = "";
  EXPECT_EQ(predict_outputs(job, {"ct/case_0001_0000.nii.gz", "case_0001_0000.nii.gz"}).labels,
            fs::path("out/case_0001_0000.nii.gz"));
  EXPECT_EQ(manifest_name(Shard{}), "umamba_predict.json");
  EXPECT_EQ(manifest_name(Shard{1, 3, "flag"}), "umamba_predict.shard-1-of-3.json");
}

TEST(Pipeline_Predict, exit_status_counts_failures_and_interruptions) {
  PredictSummary s;
  EXPECT_EQ(s.exit_code(), 0);
  s.failed = 2;
  EXPECT_EQ(s.exit_code(), 2);
  s.failed = 1000;
  EXPECT_EQ(s.exit_code(), kPredictMaxFailedStatus);
  s.interrupted = true;
  EXPECT_EQ(s.exit_code(), kPredictInterruptedStatus);
  EXPECT_NE(kPredictSetupErrorStatus, kPredictInterruptedStatus);
  EXPECT_GT(kPredictSetupErrorStatus, kPredictMaxFailedStatus);
}

}  // namespace
}  // namespace umamba::pipeline
