// Training cases: reading, targets, nnU-Net preprocessing, the on-disk cache and splits (see
// dataset.h).
#include "train/dataset.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tbb/parallel_for.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/log.h"
#include "io/image_io.h"
#include "model/plans_configuration.h"
#include "model/sha256.h"
#include "plan/case_image.h"
#include "plan/fingerprint.h"
#include "train/augment.h"
#include "volumetric/resample.h"

namespace umamba::train {
namespace fs = std::filesystem;
namespace F = torch::nn::functional;

namespace {

// 2: 3D resampling by volumetric/resample.h (nnU-Net's orders) instead of LibTorch's trilinear.
constexpr int kCacheVersion = 2;

// A view of `image` with its spatial axes permuted (perm over [Z,Y,X]), copied contiguous.
Image transpose_spatial(const Image& image, const std::array<int64_t, 3>& perm) {
  if (perm == std::array<int64_t, 3>{0, 1, 2}) return image;
  const Shape& s = image.shape();
  const Shape& st = image.strides();
  const std::array<int64_t, 3> sizes{s.z, s.y, s.x}, strides{st.z, st.y, st.x};
  Shape ns{s.c, sizes[perm[0]], sizes[perm[1]], sizes[perm[2]]};
  Shape nst{st.c, strides[perm[0]], strides[perm[1]], strides[perm[2]]};
  Geometry g = image.geometry();
  for (int i = 0; i < 3; ++i) g.spacing[i] = image.geometry().spacing[perm[i]];
  auto owner = std::make_shared<Image>(image);
  Image view = Image::wrap(const_cast<void*>(image.data()), image.dtype(), ns, nst, owner, g);
  Image out = view.clone();
  out.geometry() = g;
  return out;
}

std::string file_stamp(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0)
    fail_file(p.string(), "cannot be inspected: {}", std::strerror(errno));
  return fmt::format("{}|{}|{}.{}", fs::absolute(p).string(), static_cast<int64_t>(st.st_size),
                     static_cast<int64_t>(st.st_mtim.tv_sec),
                     static_cast<int64_t>(st.st_mtim.tv_nsec));
}

void write_raw(const fs::path& path, const void* data, size_t bytes) {
  const fs::path tmp = path.parent_path() / ("." + path.filename().string() + ".tmp");
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail_file(tmp.string(), "cannot be created");
    out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
    out.close();
    if (!out) fail_file(tmp.string(), "write failed (disk full?)");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) fail_file(path.string(), "cannot be renamed into place: {}", ec.message());
}

// Maps `path` read-only as an Image of `dtype` and `shape`; throws FileError when the size differs.
Image map_image(const fs::path& path, DType dtype, const Shape& shape) {
  const size_t bytes = static_cast<size_t>(shape.elements()) * dtype_size(dtype);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail_file(path.string(), "cannot be opened: {}", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) != bytes) {
    ::close(fd);
    fail_file(path.string(), "has {} bytes, {} expected", static_cast<int64_t>(st.st_size), bytes);
  }
  void* p = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) fail_file(path.string(), "cannot be mapped: {}", std::strerror(errno));
  std::shared_ptr<void> owner(p, [bytes](void* q) { ::munmap(q, bytes); });
  return Image::wrap(p, dtype, shape, Image::contiguous_strides(shape), owner);
}

nlohmann::json shape_json(const Shape& s) {
  return {s.c, s.z, s.y, s.x};
}
Shape shape_from_json(const nlohmann::json& j) {
  return Shape{j.at(0).get<int64_t>(), j.at(1).get<int64_t>(), j.at(2).get<int64_t>(),
               j.at(3).get<int64_t>()};
}

struct CachePaths {
  fs::path json, data, labels, instances, foreground;
};
CachePaths cache_paths(const fs::path& folder, const std::string& id, const std::string& key) {
  const std::string base = id + "_" + key;
  return {folder / (base + ".json"), folder / (base + "_data.f32"), folder / (base + "_labels.raw"),
          folder / (base + "_instances.i32"), folder / (base + "_foreground.i32")};
}

void write_cache(const fs::path& folder, const TrainCase& c) {
  const CachePaths p = cache_paths(folder, c.id, c.cache_key);
  const Image data = c.data.contiguous();
  write_raw(p.data, data.data(), data.byte_size());
  const Image labels = c.labels.contiguous();
  write_raw(p.labels, labels.data(), labels.byte_size());
  if (!c.instances.empty()) {
    const Image inst = c.instances.contiguous();
    write_raw(p.instances, inst.data(), inst.byte_size());
  }
  std::vector<int32_t> fg;
  nlohmann::json counts = nlohmann::json::array();
  for (const auto& cls : c.foreground) {
    counts.push_back(cls.size());
    for (const auto& v : cls) fg.insert(fg.end(), v.begin(), v.end());
  }
  write_raw(p.foreground, fg.data(), fg.size() * sizeof(int32_t));
  nlohmann::json j;
  j["format"] = "umamba-train-cache";
  j["version"] = kCacheVersion;
  j["id"] = c.id;
  j["key"] = c.cache_key;
  j["shape"] = shape_json(data.shape());
  j["label_dtype"] = std::string(dtype_name(labels.dtype()));
  j["instances"] = !c.instances.empty();
  j["foreground_counts"] = counts;
  j["spacing"] = data.geometry().spacing;
  const std::string text = j.dump(1) + "\n";
  write_raw(p.json, text.data(), text.size());
}

// The cached case, or nullopt-like empty id when the entry is missing or incomplete.
bool read_cache(const fs::path& folder, const std::string& id, const std::string& key,
                TrainCase& out) {
  const CachePaths p = cache_paths(folder, id, key);
  if (!fs::exists(p.json)) return false;
  try {
    std::ifstream in(p.json);
    const nlohmann::json j = nlohmann::json::parse(in);
    if (j.value("version", 0) != kCacheVersion || j.value("key", "") != key) return false;
    const Shape s = shape_from_json(j.at("shape"));
    Geometry g;
    g.spacing = j.at("spacing").get<std::array<double, 3>>();
    out.id = id;
    out.cache_key = key;
    out.data = map_image(p.data, DType::F32, s);
    out.data.geometry() = g;
    const Shape ls{1, s.z, s.y, s.x};
    out.labels = map_image(p.labels, dtype_from_name(j.at("label_dtype").get<std::string>()), ls);
    out.labels.geometry() = g;
    if (j.value("instances", false)) {
      out.instances = map_image(p.instances, DType::I32, ls);
      out.instances.geometry() = g;
    }
    std::vector<int64_t> counts = j.at("foreground_counts").get<std::vector<int64_t>>();
    int64_t total = 0;
    for (int64_t n : counts) total += n;
    std::vector<int32_t> fg(static_cast<size_t>(total * 3));
    if (total > 0) {
      std::ifstream f(p.foreground, std::ios::binary);
      f.read(reinterpret_cast<char*>(fg.data()), static_cast<std::streamsize>(fg.size() * 4));
      if (!f) return false;
    }
    out.foreground.assign(counts.size(), {});
    size_t at = 0;
    for (size_t c = 0; c < counts.size(); ++c) {
      for (int64_t i = 0; i < counts[c]; ++i, at += 3) {
        out.foreground[c].push_back({fg[at], fg[at + 1], fg[at + 2]});
      }
    }
    out.from_cache = true;
    return true;
  } catch (const std::exception& e) {
    log::warn("train cache: {} is unusable ({}); rebuilding it", p.json.string(), e.what());
    return false;
  }
}

}  // namespace

PreprocessSettings PreprocessSettings::from_plans(const nlohmann::json& plans,
                                                  const std::string& configuration,
                                                  const plan::DatasetDescription& dataset_in) {
  plan::DatasetDescription dataset = dataset_in;
  plan::resolve_neurips_channels(dataset);
  const nlohmann::json c = model::resolve_plans_configuration(plans, configuration);
  PreprocessSettings s;
  s.configuration = configuration;
  UMAMBA_CHECK(c.contains("patch_size"), "plans configuration '{}' has no patch_size",
               configuration);
  s.dims = static_cast<int>(c["patch_size"].size());
  UMAMBA_CHECK(s.dims == 2 || s.dims == 3, "plans configuration '{}': patch has {} axes",
               configuration, s.dims);
  if (s.dims == 3 && c.contains("spacing")) {
    s.target_spacing = c["spacing"].get<std::vector<double>>();
    UMAMBA_CHECK(s.target_spacing.size() == 3, "plans configuration '{}': spacing has {} axes",
                 configuration, s.target_spacing.size());
  }
  if (s.dims == 3 && plans.contains("transpose_forward")) {
    const auto t = plans["transpose_forward"].get<std::vector<int64_t>>();
    UMAMBA_CHECK(t.size() == 3, "plans.json transpose_forward has {} entries", t.size());
    s.transpose_forward = {t[0], t[1], t[2]};
  }
  s.normalization = engine::Normalization::from_plans(
      c, plans.value("foreground_intensity_properties_per_channel", nlohmann::json::object()));
  s.channels = static_cast<int64_t>(dataset.channel_names.size());
  UMAMBA_CHECK(s.channels > 0, "dataset {} names no channels", dataset.name);
  const bool instance_kind = dataset.dataset_json.is_object() &&
                             dataset.dataset_json.value("label_kind", "") == "instance";
  s.instance_labels = dataset.layout == plan::DatasetLayout::NeurIPSCells || instance_kind;
  s.num_classes = s.instance_labels ? 3 : static_cast<int64_t>(dataset.labels.size());
  UMAMBA_CHECK(s.num_classes >= 2, "dataset {} has {} labels (at least background and one class)",
               dataset.name, s.num_classes);
  return s;
}

nlohmann::json PreprocessSettings::to_json() const {
  nlohmann::json j;
  j["configuration"] = configuration;
  j["dims"] = dims;
  j["target_spacing"] = target_spacing;
  j["transpose_forward"] = transpose_forward;
  nlohmann::json norm = nlohmann::json::array();
  for (const auto& c : normalization.channels) {
    norm.push_back({{"scheme", engine::norm_scheme_name(c.scheme)},
                    {"mask", c.use_mask_for_norm},
                    {"mean", c.dataset.mean},
                    {"std", c.dataset.std},
                    {"p005", c.dataset.percentile_00_5},
                    {"p995", c.dataset.percentile_99_5}});
  }
  j["normalization"] = norm;
  j["channels"] = channels;
  j["instance_labels"] = instance_labels;
  j["class_targets"] = {{"boundary_width", class_targets.boundary_width},
                        {"spill", class_targets.spill},
                        {"min_interior_size", class_targets.min_interior_size}};
  j["num_classes"] = num_classes;
  j["crop_to_nonzero"] = crop_to_nonzero;
  j["foreground"] = {foreground_samples, foreground_min_coverage, foreground_seed};
  return j;
}

std::vector<std::vector<std::array<int32_t, 3>>> sample_foreground(
    const Image& labels, int64_t num_classes, int64_t samples, double min_coverage, uint64_t seed) {
  std::vector<std::vector<std::array<int32_t, 3>>> all(static_cast<size_t>(num_classes - 1));
  const Shape& s = labels.shape();
  visit_dtype(labels.dtype(), [&](auto tag) {
    using T = decltype(tag);
    for (int64_t z = 0; z < s.z; ++z)
      for (int64_t y = 0; y < s.y; ++y)
        for (int64_t x = 0; x < s.x; ++x) {
          const auto v = static_cast<int64_t>(labels.at<T>(0, z, y, x));
          if (v >= 1 && v < num_classes) {
            all[static_cast<size_t>(v - 1)].push_back(
                {static_cast<int32_t>(z), static_cast<int32_t>(y), static_cast<int32_t>(x)});
          }
        }
  });
  for (size_t c = 0; c < all.size(); ++c) {
    auto& locs = all[c];
    const auto n = static_cast<int64_t>(locs.size());
    if (n == 0) continue;
    int64_t take = std::min(samples, n);
    take = std::max(take, static_cast<int64_t>(std::ceil(static_cast<double>(n) * min_coverage)));
    take = std::min(take, n);
    AugmentRandom rng(mix_seed(seed, c + 1));
    // Partial Fisher–Yates: the first `take` entries become a uniform sample without replacement.
    for (int64_t i = 0; i < take; ++i) {
      const int64_t j = i + rng.index(n - i);
      std::swap(locs[static_cast<size_t>(i)], locs[static_cast<size_t>(j)]);
    }
    locs.resize(static_cast<size_t>(take));
  }
  return all;
}

TrainCase preprocess_case(const plan::Case& c, const PreprocessSettings& settings,
                          bool replicate_grey) {
  TrainCase out;
  out.id = c.id;
  Image image = plan::read_case_image(c, settings.channels, replicate_grey);
  Image labels = io::read_image(c.label);
  if (labels.channels() != 1) {
    fail_file(c.label.string(), "label image has {} channels, 1 expected", labels.channels());
  }
  if (labels.depth() != image.depth() || labels.height() != image.height() ||
      labels.width() != image.width()) {
    fail_file(c.label.string(), "label shape {} does not match the image {}",
              to_string(labels.shape()), to_string(image.shape()));
  }
  if (dtype_is_float(labels.dtype())) {
    fail_file(c.label.string(), "labels are floating point ({}); integer labels expected",
              dtype_name(labels.dtype()));
  }
  // Targets on the whole image (the organisers convert whole images).
  Image classes, instances;
  if (settings.instance_labels) {
    classes = postprocess::instances_to_classes(labels, settings.class_targets);
    instances = labels.cast(DType::I32);
  } else {
    classes = labels;
  }
  if (settings.dims == 3 && image.depth() > 1) {
    image = transpose_spatial(image, settings.transpose_forward);
    classes = transpose_spatial(classes, settings.transpose_forward);
    if (!instances.empty()) instances = transpose_spatial(instances, settings.transpose_forward);
  }
  if (settings.crop_to_nonzero) {
    const Box box = plan::nonzero_bounding_box(image);
    image = image.region(box);
    classes = classes.region(box);
    if (!instances.empty()) instances = instances.region(box);
  }
  // Normalise into f32.
  const int64_t C = image.channels();
  std::vector<engine::ChannelStats> stats;
  if (engine::Normalizer::needs_image_stats(settings.normalization, C)) {
    engine::StatsAccumulator acc(C,
                                 engine::Normalizer::needs_masked_stats(settings.normalization, C));
    acc.add(image);
    stats = acc.finish();
  }
  const engine::Normalizer normalizer(settings.normalization, C, stats);
  Geometry geometry = image.geometry();
  Image data = Image::zeros(DType::F32, image.shape(), geometry);
  const Shape st = data.strides();
  normalizer.apply(image, data.data_as<float>(), st.c, st.z, st.y);

  // Check the class values.
  int64_t max_class = 0, min_class = 0;
  visit_dtype(classes.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const Shape& s = classes.shape();
    for (int64_t z = 0; z < s.z; ++z)
      for (int64_t y = 0; y < s.y; ++y)
        for (int64_t x = 0; x < s.x; ++x) {
          const auto v = static_cast<int64_t>(classes.at<T>(0, z, y, x));
          max_class = std::max(max_class, v);
          min_class = std::min(min_class, v);
        }
  });
  if (min_class < 0 || max_class >= settings.num_classes) {
    fail_file(c.label.string(), "holds class {} but the dataset has {} labels (0..{})",
              min_class < 0 ? min_class : max_class, settings.num_classes,
              settings.num_classes - 1);
  }
  const DType label_dtype = settings.num_classes <= 255 ? DType::U8 : DType::I16;

  // Resample 3D configurations to the target spacing with nnU-Net's orders (volumetric/
  // resample.h): data order 3, labels one-hot order 1 (>= 0.5, later labels win), the separate-Z
  // rule (order_z 0) for anisotropic spacings; instance ids by nearest.
  if (settings.dims == 3 && !settings.target_spacing.empty() && data.depth() > 1) {
    const volumetric::Spacing3 sp = geometry.spacing;
    const volumetric::Spacing3 ts{settings.target_spacing[0], settings.target_spacing[1],
                                  settings.target_spacing[2]};
    const volumetric::Shape3 shape{data.depth(), data.height(), data.width()};
    const volumetric::Shape3 target = volumetric::target_shape(shape, sp, ts);
    if (target != shape) {
      volumetric::ResampleOptions o;
      o.order = 3;
      o.order_z = 0;
      o.separate_axis = volumetric::separate_z_axis(sp, ts);
      Geometry ng = geometry;
      for (size_t i = 0; i < 3; ++i) ng.spacing[i] = ts[i];
      data = volumetric::resample_data(data, target, o);
      data.geometry() = ng;
      o.order = 1;
      classes = volumetric::resample_segmentation(classes, target, o);
      classes.geometry() = ng;
      if (!instances.empty()) {
        o.order = 0;
        instances = volumetric::resample_segmentation(instances, target, o);
        instances.geometry() = ng;
      }
      geometry = ng;
    }
  }
  out.data = data;
  out.labels = classes.dtype() == label_dtype ? classes.contiguous() : classes.cast(label_dtype);
  out.labels.geometry() = geometry;
  if (!instances.empty()) {
    out.instances = instances.contiguous();
    out.instances.geometry() = geometry;
  }
  out.foreground = sample_foreground(out.labels, settings.num_classes, settings.foreground_samples,
                                     settings.foreground_min_coverage, settings.foreground_seed);
  return out;
}

std::vector<TrainCase> load_cases(const plan::DatasetDescription& dataset_in,
                                  const PreprocessSettings& settings, const fs::path& cache_folder,
                                  CacheReport* report,
                                  const std::function<void(int64_t, int64_t)>& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  plan::DatasetDescription dataset = dataset_in;
  plan::resolve_neurips_channels(dataset);
  const size_t n = dataset.cases.size();
  UMAMBA_CHECK(n > 0, "dataset {} has no case", dataset.name);
  std::error_code ec;
  fs::create_directories(cache_folder, ec);
  if (ec) fail_file(cache_folder.string(), "cannot be created: {}", ec.message());
  const std::string settings_text = settings.to_json().dump();
  std::vector<TrainCase> cases(n);
  std::atomic<int64_t> done{0}, reused{0};
  std::mutex progress_mutex;
  tbb::parallel_for(size_t{0}, n, [&](size_t i) {
    const plan::Case& c = dataset.cases[i];
    std::string stamp = fmt::format("v{}|{}|{}", kCacheVersion, settings_text, c.id);
    for (const auto& p : c.images) stamp += "|" + file_stamp(p);
    stamp += "|" + file_stamp(c.label);
    const std::string key = model::sha256_hex(stamp).substr(0, 16);
    TrainCase tc;
    if (read_cache(cache_folder, c.id, key, tc)) {
      ++reused;
    } else {
      TrainCase built = preprocess_case(c, settings, dataset.replicate_grey_to_rgb);
      built.cache_key = key;
      write_cache(cache_folder, built);
      // Map what was written, so memory is the page cache's, not ours.
      if (!read_cache(cache_folder, c.id, key, tc)) tc = std::move(built);
      tc.from_cache = false;
    }
    cases[i] = std::move(tc);
    const int64_t d = ++done;
    if (progress) {
      std::lock_guard<std::mutex> lock(progress_mutex);
      progress(d, static_cast<int64_t>(n));
    }
  });
  if (report) {
    report->cases = static_cast<int64_t>(n);
    report->reused = reused.load();
    report->built = static_cast<int64_t>(n) - reused.load();
    report->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    report->folder = cache_folder;
  }
  return cases;
}

Split make_split(std::vector<std::string> ids, const std::string& fold, int folds, uint64_t seed) {
  std::sort(ids.begin(), ids.end());
  Split s;
  if (fold == "all") {
    s.train = ids;
    s.val = ids;
    s.how = "fold all: every case trains and validates";
    return s;
  }
  UMAMBA_CHECK(folds >= 2, "--folds {}: at least 2 folds", folds);
  int f = -1;
  try {
    size_t used = 0;
    f = std::stoi(fold, &used);
    if (used != fold.size()) f = -1;
  } catch (const std::exception&) {
    f = -1;
  }
  UMAMBA_CHECK(f >= 0 && f < folds, "--fold '{}': expected 0..{} or all", fold, folds - 1);
  UMAMBA_CHECK(static_cast<int>(ids.size()) >= folds,
               "{} cases cannot make {} folds; use --fold all or fewer --folds", ids.size(), folds);
  AugmentRandom rng(seed);
  for (int64_t i = static_cast<int64_t>(ids.size()) - 1; i > 0; --i) {
    std::swap(ids[static_cast<size_t>(i)], ids[static_cast<size_t>(rng.index(i + 1))]);
  }
  // KFold's chunks: the first n % k folds get one case more.
  const int64_t n = static_cast<int64_t>(ids.size());
  int64_t start = 0;
  for (int k = 0; k < folds; ++k) {
    const int64_t size = n / folds + (k < n % folds ? 1 : 0);
    for (int64_t i = start; i < start + size; ++i) {
      (k == f ? s.val : s.train).push_back(ids[static_cast<size_t>(i)]);
    }
    start += size;
  }
  std::sort(s.train.begin(), s.train.end());
  std::sort(s.val.begin(), s.val.end());
  s.how = fmt::format("{}-fold split, seed {}, fold {}", folds, seed, f);
  return s;
}

Split split_from_list(const std::vector<std::string>& ids, const fs::path& list) {
  std::ifstream in(list);
  if (!in) fail_file(list.string(), "cannot be opened");
  std::set<std::string> known(ids.begin(), ids.end()), val;
  for (std::string line; std::getline(in, line);) {
    const size_t hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    const size_t a = line.find_first_not_of(" \t\r"), b = line.find_last_not_of(" \t\r");
    if (a == std::string::npos) continue;
    const std::string id = line.substr(a, b - a + 1);
    if (!known.count(id))
      fail_file(list.string(), "names case '{}', which is not in the dataset", id);
    val.insert(id);
  }
  UMAMBA_CHECK(!val.empty(), "{}: names no validation case", list.string());
  Split s;
  for (const auto& id : known) (val.count(id) ? s.val : s.train).push_back(id);
  UMAMBA_CHECK(!s.train.empty(), "{}: every case is a validation case; none is left to train on",
               list.string());
  s.how = "explicit validation list " + list.string();
  return s;
}

nlohmann::json splits_json(const std::vector<std::string>& ids, int folds, uint64_t seed) {
  nlohmann::json out = nlohmann::json::array();
  for (int f = 0; f < folds; ++f) {
    const Split s = make_split(ids, std::to_string(f), folds, seed);
    out.push_back({{"train", s.train}, {"val", s.val}});
  }
  return out;
}

}  // namespace umamba::train
