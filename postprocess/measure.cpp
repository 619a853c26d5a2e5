// Per-object measurements (see measure.h for the columns and their skimage equivalents).
#include "postprocess/measure.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <unordered_map>

#include "core/error.h"

namespace umamba::postprocess {

size_t RegionTable::column(const std::string& name) const {
  const auto it = std::find(columns.begin(), columns.end(), name);
  if (it == columns.end()) fail("measurement table: no column '{}'", name);
  return static_cast<size_t>(it - columns.begin());
}

namespace {

struct Accumulator {
  int64_t area = 0;
  std::array<int64_t, 3> lo{INT64_MAX, INT64_MAX, INT64_MAX};
  std::array<int64_t, 3> hi{-1, -1, -1};
  std::array<double, 3> sum{0, 0, 0};
  std::vector<double> isum, imin, imax;
};

std::vector<int64_t> labels_as_int64(const Image& labels) {
  const Image c = labels.contiguous();
  std::vector<int64_t> out(static_cast<size_t>(c.shape().pixels()));
  visit_dtype(c.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* d = c.data_as<T>();
    for (size_t i = 0; i < out.size(); ++i) {
      if constexpr (std::is_floating_point_v<T>) {
        (void)d;
        fail("measurements: labels of dtype {} are floating point; labels are integers",
             dtype_name(c.dtype()));
      } else {
        if constexpr (std::is_signed_v<T>) {
          if (d[i] < 0)
            fail("measurements: negative label {} at pixel {}", static_cast<int64_t>(d[i]), i);
        }
        out[i] = static_cast<int64_t>(d[i]);
      }
    }
  });
  return out;
}

}  // namespace

RegionTable region_properties(const Image& labels, const Image& intensity) {
  UMAMBA_CHECK(!labels.empty(), "measurements: the label image is empty");
  UMAMBA_CHECK(labels.channels() == 1, "measurements: labels need one channel; got {} (shape {})",
               labels.channels(), to_string(labels.shape()));
  const Shape& s = labels.shape();
  const bool with_intensity = !intensity.empty();
  if (with_intensity)
    UMAMBA_CHECK(intensity.depth() == s.z && intensity.height() == s.y && intensity.width() == s.x,
                 "measurements: the intensity image ({}) and the labels ({}) differ in Z, Y or X",
                 to_string(intensity.shape()), to_string(s));
  const bool is_3d = s.z > 1;
  const int ndim = is_3d ? 3 : 2;
  const int64_t channels = with_intensity ? intensity.channels() : 0;
  const std::vector<int64_t> ids = labels_as_int64(labels);
  Image values;
  if (with_intensity) values = intensity.cast(DType::F64);  // contiguous [C,Z,Y,X]
  const double* v = with_intensity ? values.data_as<double>() : nullptr;
  const int64_t n = s.pixels();

  std::unordered_map<int64_t, size_t> index;
  std::vector<int64_t> order;
  std::vector<Accumulator> acc;
  for (int64_t p = 0; p < n; ++p) {
    const int64_t id = ids[p];
    if (id == 0) continue;
    auto [it, inserted] = index.try_emplace(id, acc.size());
    if (inserted) {
      acc.emplace_back();
      order.push_back(id);
      if (channels > 0) {
        acc.back().isum.assign(channels, 0.0);
        acc.back().imin.assign(channels, std::numeric_limits<double>::infinity());
        acc.back().imax.assign(channels, -std::numeric_limits<double>::infinity());
      }
    }
    Accumulator& a = acc[it->second];
    const std::array<int64_t, 3> c{p / (s.x * s.y), (p / s.x) % s.y, p % s.x};
    ++a.area;
    for (int k = 0; k < 3; ++k) {
      a.lo[k] = std::min(a.lo[k], c[k]);
      a.hi[k] = std::max(a.hi[k], c[k]);
      a.sum[k] += static_cast<double>(c[k]);
    }
    for (int64_t ch = 0; ch < channels; ++ch) {
      const double x = v[ch * n + p];
      a.isum[ch] += x;
      a.imin[ch] = std::min(a.imin[ch], x);
      a.imax[ch] = std::max(a.imax[ch], x);
    }
  }

  RegionTable t;
  t.columns = {"label", "area", "area_physical"};
  for (int k = 0; k < 2 * ndim; ++k) t.columns.push_back(fmt::format("bbox-{}", k));
  for (int k = 0; k < ndim; ++k) t.columns.push_back(fmt::format("centroid-{}", k));
  t.columns.push_back("equivalent_diameter_area");
  t.columns.push_back("equivalent_diameter_physical");
  for (const char* stat : {"intensity_mean", "intensity_min", "intensity_max"})
    for (int64_t ch = 0; ch < channels; ++ch)
      t.columns.push_back(channels == 1 ? std::string(stat) : fmt::format("{}-{}", stat, ch));

  const auto& spacing = labels.geometry().spacing;  // [Z,Y,X]
  const double voxel = is_3d ? spacing[0] * spacing[1] * spacing[2] : spacing[1] * spacing[2];
  auto diameter = [&](double area) {
    return std::pow(2.0 * ndim * area / std::numbers::pi, 1.0 / ndim);
  };
  std::vector<size_t> sorted(order.size());
  for (size_t i = 0; i < sorted.size(); ++i) sorted[i] = i;
  std::sort(sorted.begin(), sorted.end(), [&](size_t a, size_t b) { return order[a] < order[b]; });
  const int first_axis = is_3d ? 0 : 1;
  for (const size_t i : sorted) {
    const Accumulator& a = acc[i];
    std::vector<double> row;
    row.reserve(t.columns.size());
    row.push_back(static_cast<double>(order[i]));
    row.push_back(static_cast<double>(a.area));
    row.push_back(static_cast<double>(a.area) * voxel);
    for (int k = first_axis; k < 3; ++k) row.push_back(static_cast<double>(a.lo[k]));
    for (int k = first_axis; k < 3; ++k) row.push_back(static_cast<double>(a.hi[k] + 1));
    for (int k = first_axis; k < 3; ++k) row.push_back(a.sum[k] / static_cast<double>(a.area));
    row.push_back(diameter(static_cast<double>(a.area)));
    row.push_back(diameter(static_cast<double>(a.area) * voxel));
    for (int64_t ch = 0; ch < channels; ++ch)
      row.push_back(a.isum[ch] / static_cast<double>(a.area));
    for (int64_t ch = 0; ch < channels; ++ch) row.push_back(a.imin[ch]);
    for (int64_t ch = 0; ch < channels; ++ch) row.push_back(a.imax[ch]);
    t.rows.push_back(std::move(row));
  }
  return t;
}

std::string to_csv(const RegionTable& table) {
  std::string out;
  for (size_t j = 0; j < table.columns.size(); ++j) {
    if (j) out += ',';
    out += table.columns[j];
  }
  out += '\n';
  for (const auto& row : table.rows) {
    for (size_t j = 0; j < row.size(); ++j) {
      if (j) out += ',';
      const double x = row[j];
      if (std::isfinite(x) && x == std::floor(x) && std::abs(x) < 9.0e15) {
        out += fmt::format("{}", static_cast<int64_t>(x));
      } else {
        out += fmt::format("{}", x);
      }
    }
    out += '\n';
  }
  return out;
}

}  // namespace umamba::postprocess
