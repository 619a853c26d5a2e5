// Training cases for `umamba train`: read from a NeurIPS cell dataset or an nnU-Net raw dataset
// (plan/dataset.h finds them), turned into targets, preprocessed as nnU-Net does, cached on disk,
// and split into training and validation cases.
//
// Targets: NeurIPS-layout labels (and nnU-Net datasets whose dataset.json says "label_kind":
// "instance") are instance labels; they become the organisers' three classes (0 background,
// 1 interior, 2 boundary) through postprocess::instances_to_classes, and the instances are kept
// for the validation F1. Other labels are used as they are (integers 0..K−1).
// Channels (NeurIPS layout): grey images are replicated to 3 channels when the dataset has RGB
// images, images with more than 3 channels keep the first 3 (the challenge baseline's rule).
//
// Preprocessing (nnU-Net v2 DefaultPreprocessor, reference §4.3), per case: transpose the spatial
// axes by the plans' transpose_forward (3D configurations); crop to the bounding box of the
// non-zero region of all channels (plan::nonzero_bounding_box); normalise every channel by the
// plans' scheme (engine::Normalizer: z-score per image, optionally over the non-zero mask; CT with
// the dataset's foreground statistics; none; rescale; RGB/255); 3D configurations are resampled
// to the plans' spacing with nnU-Net's orders (volumetric/resample.h): data by cubic B-spline
// (order 3), labels one-hot per label with order 1 (written where >= 0.5, later labels win),
// in-plane only and nearest along the coarse axis when the spacing is anisotropic (> 3×, nnU-Net's
// separate-z rule with order_z 0); instance ids by nearest. 2D configurations are not resampled
// (natural images have no spacing; `umamba predict` resamples 3D models only, the same way).
// Foreground locations for oversampling: per class up to 10,000 voxels (at least 1% of the
// class), drawn without replacement with a per-case seed (nnU-Net: 10,000 samples, 1% coverage,
// seed 1234).
//
// Cache: one set of raw files per case, named <case>_<key>.* under the cache folder, where key is
// the SHA-256 (first 16 hex digits) of the case's files (path, size, modification time) and every
// setting above (format version, configuration, spacing, transpose, schemes, intensity
// properties, target recipe). A second run with the same data and plans only memory-maps the
// files (mmap, read-only), so it starts in seconds and shares pages between processes. Files are
// written under temporary names and renamed; the .json sidecar comes last and marks the case
// complete.
//
// Limits: label -1 (nnU-Net's "outside the non-zero mask") is not produced: voxels outside the
// crop's mask keep their label.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/image.h"
#include "engine/normalization.h"
#include "plan/dataset.h"
#include "postprocess/targets.h"

namespace umamba::train {

struct PreprocessSettings {
  std::string configuration = "2d";    // plans configuration name
  int dims = 2;                        // 2: the network sees [C, Y, X] (3D cases are sliced)
  std::vector<double> target_spacing;  // [Z,Y,X] (3D configurations); empty: no resampling
  std::array<int64_t, 3> transpose_forward{0, 1, 2};
  engine::Normalization normalization;
  int64_t channels = 1;          // channels the network expects
  bool instance_labels = false;  // labels are instances → three classes
  postprocess::ClassTargetOptions class_targets;
  int64_t num_classes = 2;  // including background
  bool crop_to_nonzero = true;
  int64_t foreground_samples = 10000;
  double foreground_min_coverage = 0.01;
  uint64_t foreground_seed = 1234;

  // The settings from plans.json + dataset facts (throws Error naming the missing key).
  static PreprocessSettings from_plans(const nlohmann::json& plans,
                                       const std::string& configuration,
                                       const plan::DatasetDescription& dataset);
  nlohmann::json to_json() const;  // what enters the cache key
};

// One preprocessed case; images may be memory-mapped (read-only: never write into them).
struct TrainCase {
  std::string id;
  Image data;       // [C, Z, Y, X] f32, normalised (Z = 1 for 2D images)
  Image labels;     // [1, Z, Y, X] u8 (≤ 255 classes) or i16: class indices
  Image instances;  // [1, Z, Y, X] i32 instance ids (instance tasks only; else empty)
  // Per foreground class c (index c − 1): sampled voxel positions [z, y, x].
  std::vector<std::vector<std::array<int32_t, 3>>> foreground;
  std::string cache_key;
  bool from_cache = false;
};

// Preprocesses one case in memory (no cache).
TrainCase preprocess_case(const plan::Case& c, const PreprocessSettings& settings,
                          bool replicate_grey);

struct CacheReport {
  int64_t cases = 0, reused = 0, built = 0;
  double seconds = 0;
  std::filesystem::path folder;
};

// Every case preprocessed, from the cache where it is valid (built there otherwise, cases in
// parallel with TBB). `progress` (may be empty) is called after each case with (done, total).
std::vector<TrainCase> load_cases(const plan::DatasetDescription& dataset,
                                  const PreprocessSettings& settings,
                                  const std::filesystem::path& cache_folder,
                                  CacheReport* report = nullptr,
                                  const std::function<void(int64_t, int64_t)>& progress = {});

// Sampled foreground locations (the rule above), for labels [1, Z, Y, X] of classes 0..K−1.
std::vector<std::vector<std::array<int32_t, 3>>> sample_foreground(
    const Image& labels, int64_t num_classes, int64_t samples, double min_coverage, uint64_t seed);

// ---- splits ----

struct Split {
  std::vector<std::string> train, val;
  std::string how;  // "5-fold, seed 12345, fold 0", "explicit list", "all"
};

// Seeded k-fold split of `ids` (sorted first): a Fisher–Yates shuffle with a 64-bit generator,
// then fold f takes every k-th case starting at f as validation. fold "all": train on every case
// and validate on every case (nnU-Net's fold 'all'). Throws Error for a fold outside 0..k−1.
Split make_split(std::vector<std::string> ids, const std::string& fold, int folds, uint64_t seed);

// Validation ids from a text file (one id per line, '#' comments); the rest are training cases.
// Throws Error naming an id that is not in the dataset.
Split split_from_list(const std::vector<std::string>& ids, const std::filesystem::path& list);

// splits.json in nnU-Net's format: [{"train": [...], "val": [...]}, ...] for every fold of the
// k-fold split, so the folds of one model folder agree.
nlohmann::json splits_json(const std::vector<std::string>& ids, int folds, uint64_t seed);

}  // namespace umamba::train
