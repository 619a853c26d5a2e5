// `umamba predict` on medical volumes (run_predict in this process, tiny random-initialised models
// written here): a 3D model whose plans give a spacing other than the input's resamples the NIfTI
// CT to it and back (labels on the input's grid, the input's header kept), with and without a
// transposed axis order and the separate-Z rule; the result equals a reference assembled here
// from plain steps (CT normalisation written out, volumetric::resample_data, the engine at the
// target spacing, logits back, arg-max); --no-resample predicts at the input's own spacing; a TIFF
// stack without a voxel size fails with a message naming --spacing, and --spacing makes it work;
// a 2D model over a NIfTI volume predicts slice by slice (each slice equal to that slice predicted
// alone from the volume-normalised data); a plans configuration that inherits from another is
// resolved (a missing parent is an error).
#include <gtest/gtest.h>
#include <nifti1_io.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <string>

#include "engine/predictor.h"
#include "engine/tile_model.h"
#include "io/image_io.h"
#include "model/model_folder.h"
#include "model/model_io.h"
#include "pipeline/pipeline_test_util.h"
#include "pipeline/predict.h"
#include "pipeline/predict_model.h"
#include "pipeline/predict_model_util.h"
#include "pipeline/predict_volume_util.h"
#include "volumetric/resample.h"

namespace umamba::pipeline::test {
namespace {

std::shared_ptr<engine::TileModel> tile_model(const fs::path& dir) {
  const model::ModelFolder folder = model::read_model_folder(dir.string());
  auto net = model::load_network(folder, "0");
  net->set_deep_supervision(false);
  net->eval();
  const auto& c = folder.network;
  std::vector<int64_t> patch(c.patch_size.begin(), c.patch_size.end());
  return std::make_shared<engine::FunctionTileModel>(
      [net](const torch::Tensor& x) { return net->forward(x).front().to(torch::kFloat); },
      engine::TileModelSpec{c.input_channels, c.num_classes, patch});
}

// Plain spatial transpose of a float [C,Z,Y,X] image: out axis i = in axis perm[i].
Image transpose_plain(const Image& in, const std::array<int64_t, 3>& perm) {
  const Shape s = in.shape();
  const std::array<int64_t, 3> d{s.z, s.y, s.x};
  Image out = Image::zeros(DType::F32, {s.c, d[perm[0]], d[perm[1]], d[perm[2]]});
  for (int64_t c = 0; c < s.c; ++c)
    for (int64_t z = 0; z < s.z; ++z)
      for (int64_t y = 0; y < s.y; ++y)
        for (int64_t x = 0; x < s.x; ++x) {
          const std::array<int64_t, 3> p{z, y, x};
          out.at<float>(c, p[perm[0]], p[perm[1]], p[perm[2]]) = in.at<float>(c, z, y, x);
        }
  return out;
}

// CT normalisation written out.
Image normalise_ct(const Image& raw) {
  Image f = raw.cast(DType::F32);
  float* p = f.data_as<float>();
  for (int64_t i = 0; i < f.element_count(); ++i)
    p[i] = static_cast<float>((std::clamp<double>(p[i], kLo, kHi) - kMean) / kStd);
  return f;
}

struct Reference {
  Image classes;  // [1,Z,Y,X] on the input grid
  Image margin;   // top-1 minus top-2 logit, to skip near-ties
};

// nnU-Net's steps with the model's spacing and transpose, assembled plainly.
Reference reference_resampled(const fs::path& model_dir, const Image& raw,
                              const volumetric::Spacing3& spacing_in,
                              const volumetric::Spacing3& target,
                              const std::array<int64_t, 3>& fwd) {
  std::array<int64_t, 3> bwd{};
  for (int64_t i = 0; i < 3; ++i) bwd[fwd[i]] = i;
  const Image data = transpose_plain(normalise_ct(raw), fwd);
  const volumetric::Shape3 shape_t{data.depth(), data.height(), data.width()};
  const volumetric::Spacing3 sp{spacing_in[fwd[0]], spacing_in[fwd[1]], spacing_in[fwd[2]]};
  const volumetric::Shape3 there = volumetric::target_shape(shape_t, sp, target);
  volumetric::ResampleOptions o3;
  o3.order = 3;
  o3.separate_axis = volumetric::separate_z_axis(sp, target);
  const Image resampled = volumetric::resample_data(data, there, o3);
  auto tm = tile_model(model_dir);
  engine::EngineOptions eo;
  eo.outputs = engine::kLogits;
  engine::Normalization none;
  none.channels = {engine::ChannelNormalization{engine::NormScheme::NoNorm, false, {}}};
  const auto pred = engine::predict_image(resampled, *tm, none, eo);
  volumetric::ResampleOptions o1;
  o1.order = 1;
  o1.separate_axis = volumetric::separate_z_axis(target, sp);
  const Image back = transpose_plain(volumetric::resample_data(pred.logits, shape_t, o1), bwd);
  Reference r;
  r.classes = volumetric::argmax_channels(back, DType::U8);
  const Shape s = back.shape();
  r.margin = Image::zeros(DType::F32, {1, s.z, s.y, s.x});
  for (int64_t z = 0; z < s.z; ++z)
    for (int64_t y = 0; y < s.y; ++y)
      for (int64_t x = 0; x < s.x; ++x) {
        float a = -1e30f, b = -1e30f;
        for (int64_t c = 0; c < s.c; ++c) {
          const float v = back.at<float>(c, z, y, x);
          if (v > a) {
            b = a;
            a = v;
          } else if (v > b) {
            b = v;
          }
        }
        r.margin.at<float>(0, z, y, x) = a - b;
      }
  return r;
}

// Voxels whose class differs where the reference's top two logits are more than 1e-3 apart.
int64_t clear_differences(const Image& got, const Reference& want) {
  const Image g = got.cast(DType::U8);
  int64_t n = 0;
  for (int64_t i = 0; i < g.element_count(); ++i) {
    if (want.margin.data_as<float>()[i] > 1e-3f &&
        g.data_as<uint8_t>()[i] != want.classes.data_as<uint8_t>()[i])
      ++n;
  }
  return n;
}

// Header fields as nifticlib reads them (its own reader, not ours).
void expect_same_header(const fs::path& a, const fs::path& b) {
  nifti_image* x = nifti_image_read(a.c_str(), 0);
  nifti_image* y = nifti_image_read(b.c_str(), 0);
  ASSERT_NE(x, nullptr);
  ASSERT_NE(y, nullptr);
  EXPECT_EQ(x->nx, y->nx);
  EXPECT_EQ(x->ny, y->ny);
  EXPECT_EQ(x->nz, y->nz);
  EXPECT_EQ(x->qform_code, y->qform_code);
  EXPECT_EQ(x->sform_code, y->sform_code);
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) {
      EXPECT_EQ(x->qto_xyz.m[r][c], y->qto_xyz.m[r][c]);
      EXPECT_EQ(x->sto_xyz.m[r][c], y->sto_xyz.m[r][c]);
    }
  EXPECT_EQ(x->dx, y->dx);
  EXPECT_EQ(x->dy, y->dy);
  EXPECT_EQ(x->dz, y->dz);
  EXPECT_EQ(x->xyz_units, y->xyz_units);
  EXPECT_EQ(x->qfac, y->qfac);
  EXPECT_STREQ(x->descrip, y->descrip);
  nifti_image_free(x);
  nifti_image_free(y);
}

}  // namespace

TEST(Pipeline_PredictVolume, nifti_resampled_to_plans_spacing_and_back) {
  TempDir t;
  const Image raw = io::read_image(kCt);  // [1,30,101,122] i16, 3 mm
  ASSERT_EQ(raw.shape(), (Shape{1, 30, 101, 122}));
  struct Case {
    std::string name;
    std::vector<double> spacing;  // after transpose
    std::array<int64_t, 3> transpose;
    int separate_axis;  // expected, transposed axes
  };
  const std::vector<Case> cases = {
      {"iso", {4.5, 4.0, 4.0}, {0, 1, 2}, -1},
      // Transposed (Z, X, Y) and anisotropic: 7 / 2 = 3.5 > 3, separate Z.
      {"aniso_transposed", {7.0, 2.5, 2.0}, {0, 2, 1}, 0}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const fs::path model = t / ("model_" + c.name);
    make_volume_model(model, c.spacing, {c.transpose[0], c.transpose[1], c.transpose[2]});
    PredictJob job = volume_job(kCt, t / ("out_" + c.name), model);
    job.probabilities = true;
    const PredictSummary s = run_predict(job);
    ASSERT_EQ(s.exit_code(), 0);
    const fs::path out = job.output / "example_ct_sm_label.nii.gz";
    ASSERT_TRUE(fs::exists(out));
    const Image labels = io::read_image(out);
    EXPECT_EQ(labels.shape(), raw.shape());
    expect_same_header(kCt, out);
    const auto rec = read_json(job.output / "umamba_predict.json")["files"]["example_ct_sm.nii.gz"];
    ASSERT_EQ(rec["status"], "done") << rec.dump();
    ASSERT_TRUE(rec.contains("resampling")) << rec.dump();
    EXPECT_EQ(rec["resampling"]["separate_axis_to_target"].get<int>(), c.separate_axis);
    const auto there = rec["resampling"]["shape_at_target"].get<std::vector<int64_t>>();
    const std::array<int64_t, 3> d{30, 101, 122};
    for (int a = 0; a < 3; ++a) {
      EXPECT_EQ(there[a], std::llround(d[c.transpose[a]] * 3.0 / c.spacing[a])) << a;
    }
    const Reference want = reference_resampled(
        model, raw, {3, 3, 3}, {c.spacing[0], c.spacing[1], c.spacing[2]}, c.transpose);
    EXPECT_EQ(clear_differences(labels, want), 0);
    // Probabilities: softmax of the logits on the input grid; they sum to 1 and their arg-max is
    // the label map.
    const Image prob = io::read_image(job.output / "example_ct_sm_prob.tiff");
    ASSERT_EQ(prob.shape(), (Shape{3, 30, 101, 122}));
    const Image arg = volumetric::argmax_channels(prob, DType::U8);
    const Image lab8 = labels.cast(DType::U8);
    double worst_sum = 0;
    int64_t arg_differ = 0;
    for (int64_t i = 0; i < arg.element_count(); ++i) {
      double sum = 0;
      for (int64_t k = 0; k < 3; ++k) sum += prob.data_as<float>()[k * arg.element_count() + i];
      worst_sum = std::max(worst_sum, std::fabs(sum - 1.0));
      arg_differ += arg.data_as<uint8_t>()[i] != lab8.data_as<uint8_t>()[i];
    }
    EXPECT_LT(worst_sum, 1e-5);
    EXPECT_LE(arg_differ, arg.element_count() / 10000);  // exact float ties only
    // Every class occurs (the random network is balanced): not a constant map.
    int64_t counts[3] = {0, 0, 0};
    const Image l8 = labels.cast(DType::U8);
    for (int64_t i = 0; i < l8.element_count(); ++i)
      ++counts[std::min<int>(2, l8.data_as<uint8_t>()[i])];
    EXPECT_GT(counts[1] + counts[2], 0);
    EXPECT_GT(counts[0], 0);
  }
}

TEST(Pipeline_PredictVolume, no_resample_predicts_at_the_input_spacing) {
  TempDir t;
  const fs::path model = t / "model";
  make_volume_model(model, {4.5, 4.0, 4.0}, {0, 1, 2});
  PredictJob job = volume_job(kCt, t / "out", model);
  job.resample = false;
  ASSERT_EQ(run_predict(job).exit_code(), 0);
  const Image labels = io::read_image(job.output / "example_ct_sm_label.nii.gz");
  const auto rec = read_json(job.output / "umamba_predict.json")["files"]["example_ct_sm.nii.gz"];
  EXPECT_FALSE(rec.contains("resampling"));
  // The engine on the input itself, with the plans' normalisation.
  auto tm = tile_model(model);
  engine::Normalization ct;
  ct.channels = {engine::ChannelNormalization{engine::NormScheme::CT, false,
                                              engine::IntensityProperties{kMean, kStd, kLo, kHi}}};
  const Image want = engine::predict_image(io::read_image(kCt), *tm, ct, {}).classes;
  int64_t differ = 0;
  const Image l8 = labels.cast(DType::U8);
  for (int64_t i = 0; i < want.element_count(); ++i)
    differ += l8.data_as<uint8_t>()[i] != want.data_as<uint8_t>()[i];
  EXPECT_LE(differ, want.element_count() / 10000);  // float ties only
}

// A model whose plans configuration inherits from another (nnU-Net's "inherits_from", e.g. a
// custom 3d configuration over 3d_fullres) gets the parent's spacing and normalisation with its
// own keys on top, through the same resolution the network builder uses; a missing parent is an
// error naming it (it used to fall back silently to the child's keys alone).
TEST(Pipeline_PredictVolume, inherited_plans_configuration_is_resolved) {
  TempDir t;
  const model::NetworkConfig config = tiny_config(3);
  torch::manual_seed(21);
  auto net = model::make_network(config);
  nlohmann::json plans = {
      {"foreground_intensity_properties_per_channel",
       {{"0",
         {{"mean", kMean}, {"std", kStd}, {"percentile_00_5", kLo}, {"percentile_99_5", kHi}}}}},
      {"configurations",
       {{"3d_fullres",
         {{"spacing", {4.5, 4.0, 4.0}},
          {"patch_size", {32, 32, 32}},
          {"normalization_schemes", {"CTNormalization"}},
          {"use_mask_for_norm", {false}}}},
        {"3d_custom", {{"inherits_from", "3d_fullres"}, {"patch_size", {16, 16, 16}}}}}}};
  const nlohmann::json dataset = {{"channel_names", {{"0", "CT"}}},
                                  {"labels", {{"background", 0}, {"a", 1}, {"b", 2}}},
                                  {"file_ending", ".nii.gz"}};
  const nlohmann::json metadata = {{"configuration", "3d_custom"}, {"source", {{"kind", "test"}}}};
  model::write_model_folder((t / "model").string(), config, {{"0", net.get()}}, plans, dataset,
                            metadata);
  const ModelInfo info = inspect_model((t / "model").string(), "");
  EXPECT_EQ(info.spacing, (std::vector<double>{4.5, 4.0, 4.0}));
  ASSERT_EQ(info.normalization.channels.size(), 1u);
  EXPECT_EQ(info.normalization.channels[0].scheme, engine::NormScheme::CT);
  EXPECT_EQ(info.patch_size, (std::vector<int64_t>{16, 16, 16}));

  plans["configurations"]["3d_custom"]["inherits_from"] = "3d_gone";
  model::write_model_folder((t / "orphan").string(), config, {{"0", net.get()}}, plans, dataset,
                            metadata);
  try {
    (void)inspect_model((t / "orphan").string(), "");
    FAIL() << "a configuration inheriting from a missing one was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("3d_gone"), std::string::npos) << e.what();
  }
}

TEST(Pipeline_PredictVolume, tiff_stack_needs_a_spacing) {
  TempDir t;
  const fs::path model = t / "model";
  make_volume_model(model, {2.0, 2.0, 2.0}, {0, 1, 2});
  // A TIFF stack without resolution information: its voxel size is unknown.
  const Image raw = io::read_image(kCt);
  Image stack = raw.region(Box{0, 0, 0, 20, 40, 48}).clone();
  stack.geometry() = Geometry{};
  io::write_image(t / "in" / "stack.tif", stack);
  ASSERT_TRUE(io::open_image(t / "in" / "stack.tif")->info().geometry.unit.empty());
  PredictJob job = volume_job(t / "in" / "stack.tif", t / "out", model);
  const PredictSummary s = run_predict(job);
  EXPECT_EQ(s.failed, 1);
  const auto rec = read_json(job.output / "umamba_predict.json")["files"]["stack.tif"];
  EXPECT_EQ(rec["status"], "failed");
  EXPECT_NE(rec["error"].get<std::string>().find("--spacing"), std::string::npos) << rec.dump();
  EXPECT_FALSE(fs::exists(job.output / "stack_label.tiff"));
  // With --spacing it runs, on the input's grid.
  job.spacing = "3";
  job.overwrite = true;
  ASSERT_EQ(run_predict(job).exit_code(), 0);
  const Image labels = io::read_image(job.output / "stack_label.tiff");
  EXPECT_EQ(labels.shape(), (Shape{1, 20, 40, 48}));
  const auto rec2 = read_json(job.output / "umamba_predict.json")["files"]["stack.tif"];
  EXPECT_EQ(rec2["resampling"]["shape_at_target"], nlohmann::json({30, 60, 72}));
  // Malformed values are setup errors.
  job.spacing = "3,x,1";
  EXPECT_THROW(run_predict(job), Error);
  job.spacing = "1,2";
  EXPECT_THROW(run_predict(job), Error);
}

TEST(Pipeline_PredictVolume, model2d_over_nifti_volume_slice_by_slice) {
  TempDir t;
  make_tiny_model(t / "model2d", 1, 5, 2);  // no plans: z-score over the whole volume
  PredictJob job = volume_job(kCt, t / "out", t / "model2d");
  ASSERT_EQ(run_predict(job).exit_code(), 0);
  const fs::path out = job.output / "example_ct_sm_label.nii.gz";
  const Image labels = io::read_image(out);
  const Image raw = io::read_image(kCt);
  ASSERT_EQ(labels.shape(), raw.shape());
  expect_same_header(kCt, out);
  // Reference: the volume z-scored as a whole (population std), then each slice alone.
  Image f = raw.cast(DType::F32);
  double sum = 0, sq = 0;
  const int64_t n = f.element_count();
  for (int64_t i = 0; i < n; ++i) sum += f.data_as<float>()[i];
  const double mean = sum / n;
  for (int64_t i = 0; i < n; ++i)
    sq += (f.data_as<float>()[i] - mean) * (f.data_as<float>()[i] - mean);
  const double sd = std::max(std::sqrt(sq / n), 1e-8);
  for (int64_t i = 0; i < n; ++i)
    f.data_as<float>()[i] = static_cast<float>((f.data_as<float>()[i] - mean) / sd);
  const model::ModelFolder folder = model::read_model_folder((t / "model2d").string());
  auto net = model::load_network(folder, "0");
  net->set_deep_supervision(false);
  net->eval();
  engine::FunctionTileModel tm(
      [&](const torch::Tensor& x) { return net->forward(x).front().to(torch::kFloat); },
      {1, 3, {32, 32}});
  engine::Normalization none;
  none.channels = {engine::ChannelNormalization{engine::NormScheme::NoNorm, false, {}}};
  engine::EngineOptions eo;
  eo.outputs = engine::kLogits;
  int64_t differ = 0, clear = 0;
  const Image l8 = labels.cast(DType::U8);
  for (int64_t z = 0; z < raw.depth(); ++z) {
    const Image slice = f.slice(z).clone();  // [1,1,Y,X]: a 2D image
    const auto p = engine::predict_image(slice, tm, none, eo);
    for (int64_t y = 0; y < raw.height(); ++y)
      for (int64_t x = 0; x < raw.width(); ++x) {
        float a = -1e30f, b = -1e30f;
        int best = 0;
        for (int c = 0; c < 3; ++c) {
          const float v = p.logits.at<float>(c, 0, y, x);
          if (v > a) {
            b = a;
            a = v;
            best = c;
          } else if (v > b) {
            b = v;
          }
        }
        if (a - b > 1e-3f) {
          ++clear;
          differ += l8.at<uint8_t>(0, z, y, x) != best;
        }
      }
  }
  EXPECT_GT(clear, raw.element_count() / 2);
  EXPECT_EQ(differ, 0);
}

}  // namespace umamba::pipeline::test
