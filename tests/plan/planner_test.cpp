// The planner against nnU-Net v2's own ExperimentPlanner: for every fixture in
// tests/fixtures/plan (dataset.json + dataset_fingerprint.json + the plans nnU-Net 2.2.1 and 2.8.1
// made from them, see the README there), our plans.json must equal nnU-Net's key for key.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "plan/dataset.h"
#include "plan/fingerprint.h"
#include "plan/planner.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace umamba::plan;

namespace {

const fs::path kFixtures = fs::path(UMAMBA_SOURCE_DIR) / "tests" / "fixtures" / "plan";

json read_json(const fs::path& p) {
  std::ifstream in(p);
  EXPECT_TRUE(in.good()) << p;
  return json::parse(in);
}

// Keys nnU-Net writes that say nothing about planning (or that the reference driver chose).
bool ignored(const std::string& key) {
  return key == "_made_by" || key == "image_reader_writer";
}

// Structural equality; numbers equal to 1e-12 relative (ints and floats compare by value).
void expect_same(const json& ours, const json& theirs, const std::string& path,
                 std::vector<std::string>& diffs) {
  if (theirs.is_number() && ours.is_number()) {
    const double a = ours.get<double>(), b = theirs.get<double>();
    if (std::fabs(a - b) > 1e-12 * std::max(1.0, std::fabs(b))) {
      diffs.push_back(path + ": ours " + ours.dump() + ", nnU-Net " + theirs.dump());
    }
    return;
  }
  if (theirs.is_object() && ours.is_object()) {
    for (const auto& [k, v] : theirs.items()) {
      if (ignored(k)) continue;
      if (!ours.contains(k)) {
        diffs.push_back(path + "/" + k + ": missing in ours");
        continue;
      }
      expect_same(ours[k], v, path + "/" + k, diffs);
    }
    for (const auto& [k, v] : ours.items()) {
      if (!theirs.contains(k) && !ignored(k))
        diffs.push_back(path + "/" + k + ": not in nnU-Net's");
    }
    return;
  }
  if (theirs.is_array() && ours.is_array()) {
    if (theirs.size() != ours.size()) {
      diffs.push_back(path + ": ours " + ours.dump() + ", nnU-Net " + theirs.dump());
      return;
    }
    for (size_t i = 0; i < theirs.size(); ++i) {
      expect_same(ours[i], theirs[i], path + "[" + std::to_string(i) + "]", diffs);
    }
    return;
  }
  if (ours != theirs)
    diffs.push_back(path + ": ours " + ours.dump() + ", nnU-Net " + theirs.dump());
}

struct Fixture {
  fs::path folder;
  PlannerInput input;
  Fingerprint fingerprint;
};

Fixture load(const fs::path& folder) {
  Fixture f;
  f.folder = folder;
  DatasetDescription d = parse_dataset_json(read_json(folder / "dataset.json"), folder.string());
  d.name = read_json(folder / "dataset.json").value("name", folder.filename().string());
  f.input = planner_input(d);
  f.fingerprint = fingerprint_from_json(read_json(folder / "dataset_fingerprint.json"),
                                        (folder / "dataset_fingerprint.json").string());
  return f;
}

std::vector<fs::path> fixture_folders() {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(kFixtures)) {
    if (e.is_directory() && fs::exists(e.path() / "dataset_fingerprint.json"))
      out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

int compare_all(PlannerRules rules, const std::string& reference_name) {
  int compared = 0;
  for (const auto& folder : fixture_folders()) {
    for (const auto& entry : fs::directory_iterator(folder)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind(reference_name, 0) != 0 || entry.path().extension() != ".json") continue;
      const json theirs = read_json(entry.path());
      Fixture f = load(folder);
      PlannerOptions o;
      o.rules = rules;
      o.gpu_memory_target_gb = theirs["_made_by"].value("gpu_memory_target_in_gb", 8.0);
      const Plans plans = plan_experiment(f.fingerprint, f.input, o);
      const json ours = json::parse(plans_to_json(plans).dump());
      std::vector<std::string> diffs;
      expect_same(ours, theirs, "", diffs);
      EXPECT_TRUE(diffs.empty()) << entry.path() << " differs:\n"
                                 << [&] {
                                      std::string s;
                                      for (const auto& d : diffs) s += "  " + d + "\n";
                                      return s;
                                    }();
      ++compared;
    }
  }
  return compared;
}

}  // namespace

TEST(Plan_Nnunet, plans_equal_nnunet_2_2_1_on_every_fixture) {
  const int n = compare_all(PlannerRules::V2_2, "nnunet_2.2.1_plans");
  EXPECT_GE(n, 8) << "fewer than 8 nnU-Net 2.2.1 reference plans in " << kFixtures;
}

TEST(Plan_Nnunet, plans_equal_nnunet_2_8_1_on_every_fixture) {
  const int n = compare_all(PlannerRules::V2_8, "nnunet_2.8.1_plans");
  EXPECT_GE(n, 8) << "fewer than 8 nnU-Net 2.8.1 reference plans in " << kFixtures;
}

// The U-Mamba paper's configurations, from fingerprints shaped like its datasets (sources in
// tests/fixtures/plan/README.md).
TEST(Plan_Paper, abdomen_ct_3d_fullres_is_40x224x192_batch2_6stages) {
  const Fixture f = load(kFixtures / "Dataset701_AbdomenCT");
  const Plans p = plan_experiment(f.fingerprint, f.input);
  const ConfigurationPlan* c = p.find("3d_fullres");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->patch_size, (IntVec{40, 224, 192}));
  EXPECT_EQ(c->batch_size, 2);
  EXPECT_EQ(c->n_stages(), 6);
  EXPECT_EQ(c->num_pool_per_axis, (IntVec{3, 5, 5}));
  EXPECT_EQ(c->normalization_schemes, std::vector<std::string>{"CTNormalization"});
}

TEST(Plan_Paper, microscopy_2d_is_512_batch12_8stages_pool77) {
  const Fixture f = load(kFixtures / "Dataset703_NeurIPSCell");
  const Plans p = plan_experiment(f.fingerprint, f.input);
  ASSERT_EQ(p.find("3d_fullres"), nullptr) << "a 2D dataset gets no 3D configuration";
  const ConfigurationPlan* c = p.find("2d");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->patch_size, (IntVec{512, 512}));
  EXPECT_EQ(c->batch_size, 12);
  EXPECT_EQ(c->n_stages(), 8);
  EXPECT_EQ(c->num_pool_per_axis, (IntVec{7, 7}));
  EXPECT_EQ(c->normalization_schemes.size(), 3u);
}

TEST(Plan_Options, more_gpu_memory_never_shrinks_the_patch) {
  const Fixture f = load(kFixtures / "Dataset003_LiverLike");
  int64_t previous = 0;
  for (double gb : {4.0, 8.0, 16.0, 40.0}) {
    PlannerOptions o;
    o.gpu_memory_target_gb = gb;
    o.configurations = {"3d_fullres"};
    const Plans p = plan_experiment(f.fingerprint, f.input, o);
    ASSERT_EQ(p.configurations.size(), 1u);
    const auto& c = p.configurations[0];
    int64_t voxels = 1;
    for (int64_t s : c.patch_size) voxels *= s;
    EXPECT_GE(voxels, previous) << gb << " GB";
    const double reference = 560e6 * gb / 8;
    EXPECT_LE(static_cast<double>(c.feature_map_estimate), reference) << gb << " GB";
    previous = voxels;
  }
}

TEST(Plan_Options, configuration_filter_keeps_only_the_named_ones) {
  const Fixture f = load(kFixtures / "Dataset003_LiverLike");
  PlannerOptions o;
  o.configurations = {"2d"};
  const Plans p = plan_experiment(f.fingerprint, f.input, o);
  ASSERT_EQ(p.configurations.size(), 1u);
  EXPECT_EQ(p.configurations[0].name, "2d");
  const json j = json::parse(plans_to_json(p).dump());
  EXPECT_FALSE(j["configurations"].contains("3d_cascade_fullres"));
  o.configurations = {"4d"};
  EXPECT_THROW(plan_experiment(f.fingerprint, f.input, o), umamba::Error);
}

TEST(Plan_Options, bad_inputs_are_errors_with_context) {
  Fixture f = load(kFixtures / "Dataset010_Small2D");
  PlannerOptions o;
  o.gpu_memory_target_gb = 0;
  EXPECT_THROW(plan_experiment(f.fingerprint, f.input, o), umamba::Error);
  f.input.channel_names = {"a", "b"};
  try {
    plan_experiment(f.fingerprint, f.input);
    FAIL() << "channel mismatch accepted";
  } catch (const umamba::Error& e) {
    EXPECT_NE(std::string(e.what()).find("channels"), std::string::npos) << e.what();
  }
  EXPECT_THROW(
      fingerprint_from_json(json::parse(R"({"spacings": [[1,1]], "shapes_after_crop": [[1,2,3]]})"),
                            "x.json"),
      umamba::FileError);
}

TEST(Plan_Normalization, names_map_like_nnunet) {
  EXPECT_EQ(normalization_scheme("CT", PlannerRules::V2_2), "CTNormalization");
  EXPECT_EQ(normalization_scheme("ct", PlannerRules::V2_2), "ZScoreNormalization");
  EXPECT_EQ(normalization_scheme("ct", PlannerRules::V2_8), "CTNormalization");
  EXPECT_EQ(normalization_scheme("MR", PlannerRules::V2_2), "ZScoreNormalization");
  EXPECT_EQ(normalization_scheme("rgb_to_0_1", PlannerRules::V2_2), "RGBTo01Normalization");
  EXPECT_EQ(normalization_scheme("noNorm", PlannerRules::V2_2), "NoNormalization");
}

TEST(Plan_Fingerprint, json_round_trip) {
  const Fixture f = load(kFixtures / "Dataset702_AbdomenMR");
  const Fingerprint back =
      fingerprint_from_json(json::parse(fingerprint_to_json(f.fingerprint).dump()), "x");
  EXPECT_EQ(back.spacings, f.fingerprint.spacings);
  EXPECT_EQ(back.shapes_after_crop, f.fingerprint.shapes_after_crop);
  EXPECT_EQ(back.median_relative_size_after_cropping,
            f.fingerprint.median_relative_size_after_cropping);
  ASSERT_EQ(back.foreground_intensity_properties_per_channel.size(), 1u);
  EXPECT_EQ(back.foreground_intensity_properties_per_channel[0].percentile_99_5,
            f.fingerprint.foreground_intensity_properties_per_channel[0].percentile_99_5);
}
