// Tests of the `umamba synth` job: the files of both layouts, read back through src/io, hold
// exactly what the generator renders in memory (also when written band by band), and the
// manifests say how they were made.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/image_io.h"
#include "pipeline/synth.h"
#include "postprocess/targets.h"
#include "synth/synth.h"

namespace umamba::pipeline {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::path(UMAMBA_BINARY_DIR) / "test_output" / "synth" / name;
  fs::remove_all(dir);
  return dir;
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << path;
  return nlohmann::json::parse(f);
}

TEST(Pipeline_Synth, parses_sizes_and_layouts) {
  synth::SynthParams p;
  parse_synth_size("300x200", p);
  EXPECT_EQ(p.depth, 1);
  EXPECT_EQ(p.height, 300);
  EXPECT_EQ(p.width, 200);
  parse_synth_size("64x256x128", p);
  EXPECT_EQ(p.depth, 64);
  EXPECT_EQ(p.height, 256);
  EXPECT_EQ(p.width, 128);
  for (const char* bad : {"", "512", "512x", "x512", "0x10", "5x5x5x5", "12xab", "-3x4", "4x4 "})
    EXPECT_THROW(parse_synth_size(bad, p), Error) << bad;
  EXPECT_EQ(synth_layout_from_name("neurips"), SynthLayout::Neurips);
  EXPECT_EQ(synth_layout_from_name("nnunet"), SynthLayout::Nnunet);
  EXPECT_THROW(synth_layout_from_name("nnUNet"), Error);
  EXPECT_EQ(nnunet_labels_from_name("classes"), NnunetLabels::Classes);
  EXPECT_EQ(nnunet_labels_from_name("instances"), NnunetLabels::Instances);
  EXPECT_THROW(nnunet_labels_from_name("3class"), Error);
}

TEST(Pipeline_Synth, neurips_layout_holds_the_generated_pixels) {
  SynthJob job;
  job.output = fresh_dir("neurips");
  job.count = 3;
  job.params.height = 120;
  job.params.width = 90;
  job.params.seed = 40;
  job.prefix = "cells";
  const auto records = run_synth(job);
  ASSERT_EQ(records.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const auto& r = records[static_cast<size_t>(i)];
    EXPECT_EQ(r.name, "cells_000" + std::to_string(i));
    EXPECT_EQ(r.seed, 40u + static_cast<uint64_t>(i));
    ASSERT_EQ(r.images.size(), 1u);
    EXPECT_EQ(r.images[0], job.output / "images" / (r.name + ".tif"));
    EXPECT_EQ(r.labels, job.output / "labels" / (r.name + "_label.tiff"));
    synth::SynthParams p = job.params;
    p.seed = r.seed;
    const synth::SynthResult expected = synth::generate(p);
    const Image image = io::read_image(r.images[0]);
    const Image labels = io::read_image(r.labels);
    EXPECT_TRUE(image.same_pixels(expected.image)) << r.name;
    EXPECT_TRUE(labels.same_pixels(expected.labels)) << r.name;
    EXPECT_EQ(labels.dtype(), DType::U16);
    EXPECT_EQ(r.cells_placed, expected.cells_placed);
  }
  const auto manifest = read_json(job.output / "synth.json");
  EXPECT_EQ(manifest["layout"], "neurips");
  EXPECT_EQ(manifest["count"], 3);
  EXPECT_EQ(manifest["images"].size(), 3u);
  EXPECT_EQ(manifest["images"][2]["seed"], 42);
  EXPECT_EQ(manifest["parameters"]["size_zyx"], nlohmann::json::array({1, 120, 90}));
  EXPECT_DOUBLE_EQ(manifest["parameters"]["full_scale"].get<double>(), 4095.0);
  EXPECT_FALSE(fs::exists(job.output / "dataset.json"));
}

TEST(Pipeline_Synth, nnunet_layout_3d_rgb_with_spacing_sidecars) {
  SynthJob job;
  job.output = fresh_dir("nnunet");
  job.layout = SynthLayout::Nnunet;
  job.count = 2;
  job.params.depth = 12;
  job.params.height = 40;
  job.params.width = 48;
  job.params.channels = 3;
  job.params.dtype = DType::U8;
  job.params.spacing_xy = 0.2;
  job.params.spacing_z = 0.6;
  job.dataset_name = "Dataset999_Synth";
  const auto records = run_synth(job);
  ASSERT_EQ(records.size(), 2u);
  for (const auto& r : records) {
    ASSERT_EQ(r.images.size(), 3u);
    synth::SynthParams p = job.params;
    p.seed = r.seed;
    const synth::SynthResult expected = synth::generate(p);
    for (int c = 0; c < 3; ++c) {
      const fs::path f = job.output / "imagesTr" / (r.name + "_000" + std::to_string(c) + ".tif");
      EXPECT_EQ(r.images[static_cast<size_t>(c)], f);
      const Image image = io::read_image(f);
      EXPECT_TRUE(image.same_pixels(expected.image.channel(c))) << f;
      const auto side = read_json(fs::path(f).replace_extension(".json"));
      EXPECT_EQ(side["spacing"], nlohmann::json::array({0.6, 0.2, 0.2}));
    }
    EXPECT_EQ(r.labels, job.output / "labelsTr" / (r.name + ".tif"));
    EXPECT_TRUE(io::read_image(r.labels).same_pixels(expected.labels));
    EXPECT_TRUE(fs::exists(job.output / "labelsTr" / (r.name + ".json")));
  }
  const auto dataset = read_json(job.output / "dataset.json");
  EXPECT_EQ(dataset["name"], "Dataset999_Synth");
  EXPECT_EQ(dataset["numTraining"], 2);
  EXPECT_EQ(dataset["file_ending"], ".tif");
  EXPECT_EQ(dataset["channel_names"], (nlohmann::json{{"0", "R"}, {"1", "G"}, {"2", "B"}}));
  EXPECT_EQ(dataset["label_kind"], "instance");
  EXPECT_EQ(dataset["labels"]["background"], 0);
}

TEST(Pipeline_Synth, nnunet_three_class_labels_and_instances) {
  for (int64_t depth : {1, 10}) {
    SynthJob job;
    job.output = fresh_dir("classes_" + std::to_string(depth));
    job.layout = SynthLayout::Nnunet;
    job.nnunet_labels = NnunetLabels::Classes;
    job.params.depth = depth;
    job.params.height = 64;
    job.params.width = 80;
    job.params.diameter = 14;
    job.params.touching = 0.5;
    const auto records = run_synth(job);
    ASSERT_EQ(records.size(), 1u);
    const auto& r = records[0];
    const synth::SynthResult expected = synth::generate(job.params);
    EXPECT_EQ(r.instances, job.output / "instancesTr" / (r.name + ".tif"));
    EXPECT_TRUE(io::read_image(r.instances).same_pixels(expected.labels));
    const Image classes = io::read_image(r.labels);
    EXPECT_EQ(classes.dtype(), DType::U8);
    EXPECT_TRUE(classes.same_pixels(postprocess::instances_to_classes(expected.labels, {})));
    // All three classes occur.
    const Image c = classes.contiguous();
    int seen[3] = {0, 0, 0};
    for (int64_t i = 0; i < c.element_count(); ++i) ++seen[c.data_as<uint8_t>()[i] % 3];
    EXPECT_GT(seen[0], 0);
    EXPECT_GT(seen[1], 0);
    EXPECT_GT(seen[2], 0);
    const auto dataset = read_json(job.output / "dataset.json");
    EXPECT_EQ(dataset["labels"],
              (nlohmann::json{{"background", 0}, {"interior", 1}, {"boundary", 2}}));
    EXPECT_EQ(dataset["label_kind"], "three-class");
    EXPECT_EQ(dataset["instances_folder"], "instancesTr");
    EXPECT_EQ(fs::exists(job.output / "instancesTr" / (r.name + ".json")), depth > 1);
  }
}

TEST(Pipeline_Synth, band_streamed_files_equal_whole_images) {
  for (SynthLayout layout : {SynthLayout::Neurips, SynthLayout::Nnunet}) {
    SynthJob job;
    job.output = fresh_dir(layout == SynthLayout::Neurips ? "stream_neurips" : "stream_nnunet");
    job.layout = layout;
    job.params.height = 1500;  // two bands of 1024 rows
    job.params.width = 700;
    job.params.channels = 3;
    job.params.dtype = DType::U8;
    job.params.diameter = 20;
    job.stream_pixels = 1000;  // force the band writer
    const auto records = run_synth(job);
    ASSERT_EQ(records.size(), 1u);
    const synth::SynthResult expected = synth::generate(job.params);
    if (layout == SynthLayout::Neurips) {
      EXPECT_TRUE(io::read_image(records[0].images[0]).same_pixels(expected.image));
    } else {
      for (int64_t c = 0; c < 3; ++c)
        EXPECT_TRUE(io::read_image(records[0].images[static_cast<size_t>(c)])
                        .same_pixels(expected.image.channel(c)));
    }
    EXPECT_TRUE(io::read_image(records[0].labels).same_pixels(expected.labels));
  }
}

TEST(Pipeline_Synth, u32_labels_above_65535_cells) {
  SynthJob job;
  job.output = fresh_dir("u32");
  job.params.height = 2500;
  job.params.width = 2500;
  job.params.diameter = 3;
  job.params.diameter_spread = 0.1;
  job.params.cells = 66000;
  job.params.touching = 0.5;
  const auto records = run_synth(job);
  ASSERT_EQ(records[0].cells_placed, 66000);
  const Image labels = io::read_image(records[0].labels);
  EXPECT_EQ(labels.dtype(), DType::U32);
}

TEST(Pipeline_Synth, rejects_bad_jobs_with_context) {
  SynthJob job;
  job.output = fresh_dir("bad");
  job.count = 0;
  EXPECT_THROW(run_synth(job), Error);
  job.count = 1;
  job.prefix = "a/b";
  EXPECT_THROW(run_synth(job), Error);
  job.prefix = "ok";
  job.params.touching = 2.0;
  try {
    run_synth(job);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("touching = 2"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace umamba::pipeline
