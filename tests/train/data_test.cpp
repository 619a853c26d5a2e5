// Patch sampling, cropping, the batch loader, preprocessing, the cache and splits.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <set>

#include "io/image_io.h"
#include "plan/dataset.h"
#include "postprocess/targets.h"
#include "train/dataset.h"
#include "train/sampler.h"
#include "train_test_util.h"

namespace umamba::train {
namespace {

namespace fs = std::filesystem;

using testing::TempDir;

TEST(Train_Sampler, oversampling_rule_matches_nnunet) {
  // not (j < round(B · (1 − 0.33))): B = 2 → sample 1 forced; B = 12 → round(8.04) = 8 → 4 forced.
  EXPECT_FALSE(force_foreground(0, 2, 0.33));
  EXPECT_TRUE(force_foreground(1, 2, 0.33));
  int forced = 0;
  for (int j = 0; j < 12; ++j) forced += force_foreground(j, 12, 0.33);
  EXPECT_EQ(forced, 4);
  EXPECT_FALSE(force_foreground(7, 12, 0.33));
  EXPECT_TRUE(force_foreground(8, 12, 0.33));
  for (int j = 0; j < 5; ++j) EXPECT_FALSE(force_foreground(j, 5, 0.0));
}

TrainCase make_case(int64_t Z, int64_t Y, int64_t X, uint64_t seed) {
  TrainCase c;
  c.id = "c" + std::to_string(seed);
  torch::manual_seed(static_cast<int64_t>(seed));
  const auto d = torch::randn({2, Z, Y, X}).contiguous();
  c.data = Image::zeros(DType::F32, Shape{2, Z, Y, X});
  std::memcpy(c.data.data(), d.data_ptr<float>(), static_cast<size_t>(d.numel()) * 4);
  c.labels = Image::zeros(DType::U8, Shape{1, Z, Y, X});
  // One small blob of class 1 near a corner, one voxel of class 2.
  for (int64_t z = 0; z < Z; ++z)
    for (int64_t y = 1; y < 4 && y < Y; ++y)
      for (int64_t x = 1; x < 4 && x < X; ++x) c.labels.at<uint8_t>(0, z, y, x) = 1;
  c.labels.at<uint8_t>(0, Z - 1, Y - 1, X - 1) = 2;
  c.foreground = sample_foreground(c.labels, 3, 10000, 0.01, 1234);
  return c;
}

TEST(Train_Sampler, forced_patches_contain_foreground_and_bounds_hold) {
  const TrainCase c = make_case(1, 60, 50, 1);
  std::vector<const TrainCase*> cases{&c};
  SamplerOptions o;
  o.dims = 2;
  o.patch = {16, 16};
  o.initial_patch = {24, 20};
  o.batch_size = 3;
  for (uint64_t s = 0; s < 200; ++s) {
    AugmentRandom rng(s);
    const auto boxes = sample_boxes(cases, o, rng);
    ASSERT_EQ(boxes.size(), 3u);
    const CpuBatch b = crop_boxes(cases, boxes, o);
    for (int j = 0; j < 3; ++j) {
      const auto& box = boxes[static_cast<size_t>(j)];
      EXPECT_EQ(box.forced_foreground, j == 2);
      if (box.forced_foreground) {
        // The patch centred on a foreground voxel holds that class.
        EXPECT_GT((b.labels[j] == static_cast<float>(box.foreground_class)).sum().item<int64_t>(),
                  0);
      } else {
        // Free corners in [lb, ub]: lb = −pad//2 (floor), ub = size + pad//2 + pad%2 − patch.
        EXPECT_GE(box.lower[0], -4);
        EXPECT_LE(box.lower[0], 60 + 4 - 24);
        EXPECT_GE(box.lower[1], -2);
        EXPECT_LE(box.lower[1], 50 + 2 - 20);
      }
    }
  }
}

TEST(Train_Sampler, crop_matches_reference_with_padding) {
  const TrainCase c = make_case(5, 20, 18, 2);
  std::vector<const TrainCase*> cases{&c};
  for (int dims : {2, 3}) {
    SamplerOptions o;
    o.dims = dims;
    o.patch = dims == 2 ? std::vector<int64_t>{12, 10} : std::vector<int64_t>{4, 12, 10};
    o.initial_patch = o.patch;
    o.batch_size = 1;
    std::vector<PatchBox> boxes(1);
    boxes[0].slice = dims == 2 ? 3 : -1;
    boxes[0].lower = dims == 2 ? std::vector<int64_t>{-3, 12} : std::vector<int64_t>{2, -3, 12};
    const CpuBatch b = crop_boxes(cases, boxes, o);
    const int64_t pz = dims == 3 ? 4 : 1;
    for (int64_t ch = 0; ch < 2; ++ch)
      for (int64_t z = 0; z < pz; ++z)
        for (int64_t y = 0; y < 12; ++y)
          for (int64_t x = 0; x < 10; ++x) {
            const int64_t sz = dims == 3 ? 2 + z : 3, sy = y - 3, sx = x + 12;
            const bool inside = sz >= 0 && sz < 5 && sy >= 0 && sy < 20 && sx >= 0 && sx < 18;
            const float want = inside ? c.data.at<float>(ch, sz, sy, sx) : 0.0f;
            const float want_l = inside ? c.labels.at<uint8_t>(0, sz, sy, sx) : 0.0f;
            const float got = dims == 3 ? b.data[0][ch][z][y][x].item<float>()
                                        : b.data[0][ch][y][x].item<float>();
            const float got_l = dims == 3 ? b.labels[0][0][z][y][x].item<float>()
                                          : b.labels[0][0][y][x].item<float>();
            ASSERT_EQ(got, want) << dims << "D at " << ch << "," << z << "," << y << "," << x;
            ASSERT_EQ(got_l, want_l);
          }
  }
}

// 2D batches of 2 patches of 16², default augmentation, two deep-supervision targets.
LoaderOptions small_2d_loader() {
  LoaderOptions o;
  o.sampler.dims = 2;
  o.sampler.patch = {16, 16};
  o.augment = default_augment_config({16, 16});
  o.sampler.initial_patch = o.augment.initial_patch;
  o.sampler.batch_size = 2;
  o.ds_scales = {{1, 1}, {2, 2}};
  return o;
}

TEST(Train_Sampler, loader_batches_do_not_depend_on_threads) {
  const TrainCase a = make_case(1, 40, 40, 3), b = make_case(1, 48, 36, 4);
  std::vector<const TrainCase*> cases{&a, &b};
  LoaderOptions o = small_2d_loader();
  o.seed = 42;
  std::vector<Batch> direct;
  for (int64_t i = 5; i < 11; ++i) direct.push_back(make_batch(cases, o, i));
  for (int workers : {1, 3}) {
    o.workers = workers;
    o.queue_depth = 2;
    BatchLoader loader(cases, o, 5);
    for (int64_t i = 5; i < 11; ++i) {
      const Batch got = loader.next();
      const Batch& want = direct[static_cast<size_t>(i - 5)];
      EXPECT_EQ(got.index, i);
      EXPECT_TRUE(torch::equal(got.data, want.data)) << "workers " << workers << " batch " << i;
      ASSERT_EQ(got.targets.size(), 2u);
      EXPECT_TRUE(torch::equal(got.targets[0], want.targets[0]));
      EXPECT_TRUE(torch::equal(got.targets[1], want.targets[1]));
      EXPECT_EQ(got.targets[1].size(2), 8);
    }
  }
}

// Queued targets are stored in the smallest integer type that holds the classes (they wait on
// the device), with the same class indices as the f32 targets.
TEST(Train_Sampler, targets_are_compact_integers_with_the_same_classes) {
  const TrainCase a = make_case(1, 40, 40, 3), b = make_case(1, 48, 36, 4);
  std::vector<const TrainCase*> cases{&a, &b};
  LoaderOptions o = small_2d_loader();
  o.seed = 7;
  const Batch plain = make_batch(cases, o, 3);
  for (const auto& [classes, dtype] : std::vector<std::pair<int64_t, torch::ScalarType>>{
           {3, torch::kByte}, {256, torch::kByte}, {300, torch::kShort}, {40000, torch::kFloat}}) {
    o.num_classes = classes;
    const Batch compact = make_batch(cases, o, 3);
    ASSERT_EQ(compact.targets.size(), plain.targets.size());
    EXPECT_TRUE(torch::equal(compact.data, plain.data));
    for (size_t i = 0; i < plain.targets.size(); ++i) {
      EXPECT_EQ(compact.targets[i].scalar_type(), dtype) << classes << " classes";
      EXPECT_TRUE(torch::equal(compact.targets[i].to(torch::kFloat), plain.targets[i]));
    }
  }
}

// Regression: a worker thread that started after the others had already handed out batches used
// to pick its first index from the moving counter, leaving one batch unmade and next() waiting
// forever. Many workers, a queue of one and a slow consumer make a late start likely.
TEST(Train_Sampler, loader_with_many_workers_delivers_every_index) {
  const TrainCase a = make_case(1, 40, 40, 3);
  std::vector<const TrainCase*> cases{&a};
  LoaderOptions o;
  o.sampler.dims = 2;
  o.sampler.patch = {16, 16};
  o.augment = default_augment_config({16, 16});
  o.sampler.initial_patch = o.augment.initial_patch;
  o.sampler.batch_size = 1;
  o.workers = 6;
  o.queue_depth = 1;
  for (int round = 0; round < 5; ++round) {
    BatchLoader loader(cases, o, 3 + round);
    for (int64_t i = 3 + round; i < 13 + round; ++i) EXPECT_EQ(loader.next().index, i);
  }
}

TEST(Train_Dataset, foreground_samples_follow_nnunet_budget) {
  Image lab = Image::zeros(DType::U8, Shape{1, 1, 300, 300});
  for (int64_t y = 0; y < 300; ++y)
    for (int64_t x = 0; x < 200; ++x) lab.at<uint8_t>(0, 0, y, x) = 1;  // 60,000 voxels
  lab.at<uint8_t>(0, 0, 5, 250) = 2;
  const auto fg = sample_foreground(lab, 4, 10000, 0.01, 1234);
  ASSERT_EQ(fg.size(), 3u);
  EXPECT_EQ(fg[0].size(), 10000u);  // min(10000, n), at least 1% (600)
  EXPECT_EQ(fg[1].size(), 1u);
  EXPECT_TRUE(fg[2].empty());
  std::set<std::array<int32_t, 3>> unique(fg[0].begin(), fg[0].end());
  EXPECT_EQ(unique.size(), fg[0].size());  // without replacement
  for (const auto& v : fg[0]) EXPECT_EQ(lab.at<uint8_t>(0, v[0], v[1], v[2]), 1);
  EXPECT_EQ(fg, sample_foreground(lab, 4, 10000, 0.01, 1234));  // seeded
}

TEST(Train_Dataset, splits_are_seeded_disjoint_and_complete) {
  std::vector<std::string> ids;
  for (int i = 0; i < 23; ++i) ids.push_back("case" + std::to_string(100 + i));
  std::set<std::string> all_val;
  for (int f = 0; f < 5; ++f) {
    const Split s = make_split(ids, std::to_string(f), 5, 12345);
    EXPECT_EQ(s.train.size() + s.val.size(), ids.size());
    EXPECT_EQ(s.val.size(), f < 3 ? 5u : 4u);  // KFold chunk sizes
    for (const auto& v : s.val) {
      EXPECT_TRUE(all_val.insert(v).second) << v << " validates in two folds";
      EXPECT_EQ(std::count(s.train.begin(), s.train.end(), v), 0);
    }
    const Split again = make_split(ids, std::to_string(f), 5, 12345);
    EXPECT_EQ(again.val, s.val);
  }
  EXPECT_EQ(all_val.size(), ids.size());
  EXPECT_NE(make_split(ids, "0", 5, 1).val, make_split(ids, "0", 5, 2).val);
  const Split all = make_split(ids, "all", 5, 1);
  EXPECT_EQ(all.train.size(), ids.size());
  EXPECT_EQ(all.val.size(), ids.size());
  EXPECT_THROW(make_split(ids, "5", 5, 1), Error);
  EXPECT_THROW(make_split({"a", "b"}, "0", 5, 1), Error);
}

TEST(Train_Dataset, explicit_validation_list) {
  TempDir dir("vallist");
  const auto list = dir.path() / "val.txt";
  {
    std::ofstream out(list);
    out << "# validation\nb\n  c  \n";
  }
  const Split s = split_from_list({"a", "b", "c", "d"}, list);
  EXPECT_EQ(s.val, (std::vector<std::string>{"b", "c"}));
  EXPECT_EQ(s.train, (std::vector<std::string>{"a", "d"}));
  {
    std::ofstream out(list);
    out << "zz\n";
  }
  EXPECT_THROW(split_from_list({"a", "b"}, list), FileError);
}

TEST(Train_Dataset, neurips_case_becomes_three_classes_normalised) {
  TempDir dir("neurips");
  testing::write_neurips_dataset(dir.path(), 2, 48);
  const plan::DatasetDescription d = plan::discover_dataset(dir.path());
  const nlohmann::json plans = testing::tiny_plans_2d();
  const PreprocessSettings s = PreprocessSettings::from_plans(plans, "2d", d);
  EXPECT_TRUE(s.instance_labels);
  EXPECT_EQ(s.num_classes, 3);
  EXPECT_EQ(s.channels, 1);
  const TrainCase c = preprocess_case(d.cases[0], s, false);
  const Image inst = io::read_image(d.cases[0].label);
  // Classes = the organisers' recipe on the whole image (no crop happens: synthetic images have
  // no all-zero border).
  const Image want = postprocess::instances_to_classes(inst, s.class_targets);
  ASSERT_EQ(c.labels.shape(), want.shape());
  EXPECT_TRUE(c.labels.same_pixels(want));
  EXPECT_TRUE(c.instances.same_pixels(inst.cast(DType::I32)));
  // Z-score per image.
  const auto t =
      torch::from_blob(const_cast<void*>(c.data.data()), {c.data.element_count()}, torch::kFloat);
  EXPECT_NEAR(t.mean().item<double>(), 0.0, 1e-4);
  EXPECT_NEAR(t.std(false).item<double>(), 1.0, 1e-3);
  // Foreground locations point at their classes.
  ASSERT_EQ(c.foreground.size(), 2u);
  for (size_t k = 0; k < 2; ++k)
    for (const auto& v : c.foreground[k])
      EXPECT_EQ(c.labels.at<uint8_t>(0, v[0], v[1], v[2]), static_cast<uint8_t>(k + 1));
}

TEST(Train_Dataset, cache_is_reused_and_invalidated) {
  TempDir dir("cache");
  testing::write_neurips_dataset(dir.path() / "data", 3, 40);
  const plan::DatasetDescription d = plan::discover_dataset(dir.path() / "data");
  const PreprocessSettings s = PreprocessSettings::from_plans(testing::tiny_plans_2d(), "2d", d);
  CacheReport r1, r2, r3;
  const auto first = load_cases(d, s, dir.path() / "cache", &r1);
  EXPECT_EQ(r1.built, 3);
  EXPECT_EQ(r1.reused, 0);
  const auto second = load_cases(d, s, dir.path() / "cache", &r2);
  EXPECT_EQ(r2.reused, 3);
  EXPECT_EQ(r2.built, 0);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(second[i].from_cache);
    EXPECT_TRUE(second[i].data.same_pixels(first[i].data));
    EXPECT_TRUE(second[i].labels.same_pixels(first[i].labels));
    EXPECT_TRUE(second[i].instances.same_pixels(first[i].instances));
    EXPECT_EQ(second[i].foreground, first[i].foreground);
  }
  // Other settings, other key: rebuilt.
  PreprocessSettings other = s;
  other.class_targets.boundary_width = 3;
  load_cases(d, other, dir.path() / "cache", &r3);
  EXPECT_EQ(r3.built, 3);
}

TEST(Train_Dataset, resampling_3d_to_the_plans_spacing) {
  TempDir dir("resample");
  // nnU-Net raw 3D dataset: one case, spacing (2, 1, 1), a labelled block.
  fs::create_directories(dir.path() / "imagesTr");
  fs::create_directories(dir.path() / "labelsTr");
  Image img = Image::zeros(DType::F32, Shape{1, 8, 16, 16});
  Image lab = Image::zeros(DType::U8, Shape{1, 8, 16, 16});
  for (int64_t z = 0; z < 8; ++z)
    for (int64_t y = 0; y < 16; ++y)
      for (int64_t x = 0; x < 16; ++x) {
        img.at<float>(0, z, y, x) = 1.0f + static_cast<float>(z + y + x);
        if (z >= 2 && z < 6 && y >= 4 && y < 12 && x >= 4 && x < 12)
          lab.at<uint8_t>(0, z, y, x) = 1;
      }
  img.geometry().spacing = {2.0, 1.0, 1.0};
  lab.geometry().spacing = {2.0, 1.0, 1.0};
  io::write_image(dir.path() / "imagesTr" / "vol_0000.nii.gz", img);
  io::write_labels(dir.path() / "labelsTr" / "vol.nii.gz", lab);
  std::ofstream(dir.path() / "dataset.json")
      << R"({"channel_names": {"0": "MR"}, "labels": {"background": 0, "block": 1},
            "numTraining": 1, "file_ending": ".nii.gz"})";
  const plan::DatasetDescription d = plan::discover_dataset(dir.path());
  nlohmann::json plans = testing::tiny_plans_2d();
  nlohmann::json c3 = plans["configurations"]["2d"];
  c3["patch_size"] = {8, 8, 8};
  c3["spacing"] = {1.0, 1.0, 1.0};
  c3["pool_op_kernel_sizes"] = {{1, 1, 1}, {2, 2, 2}, {2, 2, 2}};
  c3["conv_kernel_sizes"] = {{3, 3, 3}, {3, 3, 3}, {3, 3, 3}};
  plans["configurations"]["3d_fullres"] = c3;
  const PreprocessSettings s = PreprocessSettings::from_plans(plans, "3d_fullres", d);
  EXPECT_FALSE(s.instance_labels);
  const TrainCase c = preprocess_case(d.cases[0], s, false);
  EXPECT_EQ(c.data.shape(), (Shape{1, 16, 16, 16}));
  EXPECT_EQ(c.labels.shape(), (Shape{1, 16, 16, 16}));
  EXPECT_DOUBLE_EQ(c.data.geometry().spacing[0], 1.0);
  // The block spans z 4..11 at the new spacing (in-plane unchanged).
  int64_t n = 0;
  for (int64_t z = 0; z < 16; ++z)
    for (int64_t y = 0; y < 16; ++y)
      for (int64_t x = 0; x < 16; ++x) n += c.labels.at<uint8_t>(0, z, y, x) == 1;
  EXPECT_NEAR(static_cast<double>(n), 8.0 * 8 * 8, 8.0 * 8 * 2);
  EXPECT_EQ(c.labels.at<uint8_t>(0, 8, 8, 8), 1);
  EXPECT_EQ(c.labels.at<uint8_t>(0, 1, 8, 8), 0);
}

}  // namespace
}  // namespace umamba::train

namespace umamba::train {
namespace {

namespace fs = std::filesystem;

// Real data: the bundled DSB 2018 nuclei pair and (when present) the shared NeurIPS challenge pair,
// laid out as a NeurIPS dataset: targets follow the recipe, oversampled patches hold cells.
void check_real_case(const fs::path& image, const fs::path& label, const std::string& name) {
  TempDir dir("real_" + name);
  fs::create_directories(dir.path() / "images");
  fs::create_directories(dir.path() / "labels");
  fs::copy_file(image, dir.path() / "images" / (name + image.extension().string()));
  fs::copy_file(label, dir.path() / "labels" / (name + "_label.tiff"));
  const plan::DatasetDescription d = plan::discover_dataset(dir.path());
  const PreprocessSettings s = PreprocessSettings::from_plans(testing::tiny_plans_2d(), "2d", d);
  CacheReport report;
  const auto cases = load_cases(d, s, dir.path() / "cache", &report);
  ASSERT_EQ(cases.size(), 1u);
  const TrainCase& c = cases[0];
  const Image inst = io::read_image(label);
  EXPECT_EQ(c.data.channels(), s.channels);
  // No all-zero border in these images: the crop keeps everything.
  ASSERT_EQ(c.labels.height(), inst.height());
  ASSERT_EQ(c.labels.width(), inst.width());
  EXPECT_TRUE(c.labels.same_pixels(postprocess::instances_to_classes(inst, s.class_targets)));
  EXPECT_FALSE(c.foreground[0].empty());
  // Forced patches hold interior or boundary pixels.
  std::vector<const TrainCase*> ptrs{&c};
  SamplerOptions o;
  o.dims = 2;
  o.patch = {64, 64};
  o.initial_patch = {76, 76};
  o.batch_size = 3;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    AugmentRandom rng(seed);
    const auto boxes = sample_boxes(ptrs, o, rng);
    const CpuBatch b = crop_boxes(ptrs, boxes, o);
    EXPECT_GT((b.labels[2] > 0).sum().item<int64_t>(), 0) << name << " seed " << seed;
  }
}

TEST(Train_Dataset, real_dsb2018_pair) {
  const fs::path root = fs::path(UMAMBA_SOURCE_DIR) / "examples" / "data" / "dsb2018";
  check_real_case(root / "img2d.tif", root / "mask2d.tif", "dsb");
}

TEST(Train_Dataset, real_neurips_pair) {
  const fs::path root = fs::path(UMAMBA_SHARED_DATA) / "cells2d" / "neurips-cellseg";
  if (!fs::exists(root / "images" / "cell_00225.png")) GTEST_SKIP() << "no shared NeurIPS pair";
  if (!io::is_supported_image(root / "images" / "cell_00225.png")) GTEST_SKIP() << "no PNG reader";
  check_real_case(root / "images" / "cell_00225.png", root / "labels" / "cell_00225_label.tiff",
                  "cell_00225");
}

}  // namespace
}  // namespace umamba::train
