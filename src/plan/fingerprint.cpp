// Dataset fingerprint: per-case analysis, pooling, JSON; see fingerprint.h. The part that reads
// files lives in fingerprint_extract.cpp.
#include "plan/fingerprint.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace umamba::plan {

namespace {

nlohmann::ordered_json properties_to_json(const IntensityProperties& p) {
  nlohmann::ordered_json j;
  j["max"] = p.max;
  j["mean"] = p.mean;
  j["median"] = p.median;
  j["min"] = p.min;
  j["percentile_00_5"] = p.percentile_00_5;
  j["percentile_99_5"] = p.percentile_99_5;
  j["std"] = p.std;
  return j;
}

double number(const nlohmann::json& j, const char* key, const std::string& origin) {
  if (!j.contains(key) || !j[key].is_number()) {
    throw FileError(origin, std::string("fingerprint entry lacks the number \"") + key + "\"");
  }
  return j[key].get<double>();
}

}  // namespace

nlohmann::ordered_json fingerprint_to_json(const Fingerprint& f) {
  nlohmann::ordered_json j;
  j["foreground_intensity_properties_per_channel"] = nlohmann::ordered_json::object();
  for (size_t c = 0; c < f.foreground_intensity_properties_per_channel.size(); ++c) {
    j["foreground_intensity_properties_per_channel"][std::to_string(c)] =
        properties_to_json(f.foreground_intensity_properties_per_channel[c]);
  }
  j["median_relative_size_after_cropping"] = f.median_relative_size_after_cropping;
  j["shapes_after_crop"] = f.shapes_after_crop;
  j["spacings"] = f.spacings;
  return j;
}

Fingerprint fingerprint_from_json(const nlohmann::json& j, const std::string& origin) {
  Fingerprint f;
  if (!j.is_object()) throw FileError(origin, "fingerprint is not a JSON object");
  for (const char* key : {"spacings", "shapes_after_crop"}) {
    if (!j.contains(key) || !j[key].is_array() || j[key].empty()) {
      throw FileError(origin, std::string("fingerprint lacks a non-empty \"") + key + "\" list");
    }
  }
  for (const auto& s : j["spacings"]) {
    if (!s.is_array() || s.size() != 3) {
      throw FileError(origin, "each spacing must list 3 numbers [Z,Y,X], got " + s.dump());
    }
    std::array<double, 3> v{};
    for (size_t i = 0; i < 3; ++i) {
      v[i] = s[i].get<double>();
      if (!(v[i] > 0)) throw FileError(origin, "spacing " + s.dump() + " is not positive");
    }
    f.spacings.push_back(v);
  }
  for (const auto& s : j["shapes_after_crop"]) {
    if (!s.is_array() || s.size() != 3) {
      throw FileError(origin, "each shape must list 3 sizes [Z,Y,X], got " + s.dump());
    }
    std::array<int64_t, 3> v{};
    for (size_t i = 0; i < 3; ++i) {
      v[i] = s[i].is_number_integer() ? s[i].get<int64_t>()
                                      : static_cast<int64_t>(std::llround(s[i].get<double>()));
      if (v[i] < 1) throw FileError(origin, "shape " + s.dump() + " has an empty axis");
    }
    f.shapes_after_crop.push_back(v);
  }
  if (f.spacings.size() != f.shapes_after_crop.size()) {
    throw FileError(origin, "fingerprint lists " + std::to_string(f.spacings.size()) +
                                " spacings but " + std::to_string(f.shapes_after_crop.size()) +
                                " shapes");
  }
  if (j.contains("foreground_intensity_properties_per_channel")) {
    const auto& per = j["foreground_intensity_properties_per_channel"];
    for (size_t c = 0; c < per.size(); ++c) {
      const std::string key = std::to_string(c);
      if (!per.contains(key)) {
        throw FileError(origin, "foreground_intensity_properties_per_channel lacks channel " + key);
      }
      const auto& p = per[key];
      IntensityProperties ip;
      ip.mean = number(p, "mean", origin);
      ip.median = number(p, "median", origin);
      ip.std = number(p, "std", origin);
      ip.min = number(p, "min", origin);
      ip.max = number(p, "max", origin);
      ip.percentile_99_5 = number(p, "percentile_99_5", origin);
      ip.percentile_00_5 = number(p, "percentile_00_5", origin);
      f.foreground_intensity_properties_per_channel.push_back(ip);
    }
  }
  if (j.contains("median_relative_size_after_cropping")) {
    f.median_relative_size_after_cropping =
        number(j, "median_relative_size_after_cropping", origin);
  }
  return f;
}

Box nonzero_bounding_box(const Image& image) {
  const Shape& s = image.shape();
  int64_t z0 = s.z, z1 = -1, y0 = s.y, y1 = -1, x0 = s.x, x1 = -1;
  visit_dtype(image.dtype(), [&](auto tag) {
    using T = decltype(tag);
    for (int64_t z = 0; z < s.z; ++z) {
      for (int64_t y = 0; y < s.y; ++y) {
        int64_t first = -1, last = -1;
        for (int64_t x = 0; x < s.x; ++x) {
          bool nonzero = false;
          for (int64_t c = 0; c < s.c && !nonzero; ++c) nonzero = image.at<T>(c, z, y, x) != T{0};
          if (nonzero) {
            if (first < 0) first = x;
            last = x;
          }
        }
        if (first < 0) continue;
        z0 = std::min(z0, z), z1 = std::max(z1, z);
        y0 = std::min(y0, y), y1 = std::max(y1, y);
        x0 = std::min(x0, first), x1 = std::max(x1, last);
      }
    }
  });
  if (z1 < 0) return Box{0, 0, 0, s.z, s.y, s.x};
  return Box{z0, y0, x0, z1 - z0 + 1, y1 - y0 + 1, x1 - x0 + 1};
}

CaseAnalysis analyze_case(const Image& image, const Image& labels,
                          const std::array<double, 3>& spacing, uint64_t num_samples,
                          uint32_t seed) {
  const Shape& s = image.shape();
  const Shape& ls = labels.shape();
  UMAMBA_CHECK(ls.c == 1, "labels must have one channel, got {}", ls.c);
  UMAMBA_CHECK(ls.z == s.z && ls.y == s.y && ls.x == s.x,
               "labels {}x{}x{} (ZxYxX) do not match the image {}x{}x{}", ls.z, ls.y, ls.x, s.z,
               s.y, s.x);
  CaseAnalysis out;
  out.spacing = spacing;
  const Box box = nonzero_bounding_box(image);
  out.shape_after_crop = {box.dz, box.dy, box.dx};
  out.relative_size_after_cropping =
      static_cast<double>(box.dz * box.dy * box.dx) / static_cast<double>(s.pixels());

  // Foreground intensities (label > 0 inside the box), C order, as float32 like nnU-Net.
  const Image crop = image.region(box).cast(DType::F32);
  const Image crop_labels = labels.region(box);
  std::vector<uint8_t> foreground(static_cast<size_t>(box.dz * box.dy * box.dx));
  visit_dtype(crop_labels.dtype(), [&](auto tag) {
    using T = decltype(tag);
    size_t i = 0;
    for (int64_t z = 0; z < box.dz; ++z)
      for (int64_t y = 0; y < box.dy; ++y)
        for (int64_t x = 0; x < box.dx; ++x) foreground[i++] = crop_labels.at<T>(0, z, y, x) > T{0};
  });
  numpy::LegacyRandomState rs(seed);
  out.samples.resize(static_cast<size_t>(s.c));
  std::vector<float> values;
  std::vector<uint32_t> counts;
  for (int64_t c = 0; c < s.c; ++c) {
    values.clear();
    size_t i = 0;
    for (int64_t z = 0; z < box.dz; ++z)
      for (int64_t y = 0; y < box.dy; ++y)
        for (int64_t x = 0; x < box.dx; ++x, ++i)
          if (foreground[i]) values.push_back(crop.at<float>(c, z, y, x));
    if (values.empty()) continue;  // nnU-Net draws nothing for this channel
    counts.assign(values.size(), 0);
    uint32_t* cp = counts.data();
    rs.bounded_many(values.size(), num_samples, [cp](uint64_t index) { ++cp[index]; });
    auto& runs = out.samples[static_cast<size_t>(c)];
    for (size_t v = 0; v < values.size(); ++v) {
      if (counts[v]) runs.push_back({static_cast<double>(values[v]), counts[v]});
    }
    std::sort(runs.begin(), runs.end(),
              [](const auto& a, const auto& b) { return a.value < b.value; });
    size_t w = 0;
    for (size_t r = 0; r < runs.size(); ++r) {
      if (w > 0 && runs[w - 1].value == runs[r].value) {
        runs[w - 1].count += runs[r].count;
      } else {
        runs[w++] = runs[r];
      }
    }
    runs.resize(w);
  }
  return out;
}

Fingerprint aggregate_fingerprint(const std::vector<CaseAnalysis>& cases) {
  UMAMBA_CHECK(!cases.empty(), "fingerprint of a dataset without cases");
  Fingerprint f;
  std::vector<double> relative;
  size_t n_channels = 0;
  for (const auto& c : cases) {
    f.spacings.push_back(c.spacing);
    f.shapes_after_crop.push_back(c.shape_after_crop);
    relative.push_back(c.relative_size_after_cropping);
    n_channels = std::max(n_channels, c.samples.size());
  }
  f.median_relative_size_after_cropping = numpy::median(relative);
  for (size_t ch = 0; ch < n_channels; ++ch) {
    std::vector<numpy::WeightedValue> runs;
    for (const auto& c : cases) {
      if (ch < c.samples.size())
        runs.insert(runs.end(), c.samples[ch].begin(), c.samples[ch].end());
    }
    std::sort(runs.begin(), runs.end(),
              [](const auto& a, const auto& b) { return a.value < b.value; });
    uint64_t total = 0;
    long double sum = 0;
    for (const auto& r : runs) {
      total += r.count;
      sum += static_cast<long double>(r.value) * r.count;
    }
    if (total == 0) {
      fail(
          "channel {} has no foreground voxel (label > 0) in any case; the intensity statistics "
          "need labelled voxels",
          ch);
    }
    IntensityProperties p;
    const long double mean = sum / total;
    long double ss = 0;
    for (const auto& r : runs) {
      const long double d = r.value - mean;
      ss += d * d * r.count;
    }
    p.mean = static_cast<double>(mean);
    p.std = static_cast<double>(std::sqrt(ss / total));
    p.min = runs.front().value;
    p.max = runs.back().value;
    if (total % 2 == 1) {
      p.median = numpy::value_at_rank(runs, total / 2);
    } else {
      p.median =
          (numpy::value_at_rank(runs, total / 2 - 1) + numpy::value_at_rank(runs, total / 2)) / 2.0;
    }
    p.percentile_99_5 = numpy::percentile_weighted(runs, total, 99.5);
    p.percentile_00_5 = numpy::percentile_weighted(runs, total, 0.5);
    f.foreground_intensity_properties_per_channel.push_back(p);
  }
  return f;
}

}  // namespace umamba::plan
