// Three-class targets and their inverse (see targets.h for the recipe, the modes and the sources).
#include "postprocess/targets.h"

#include <algorithm>
#include <array>
#include <vector>

#include "core/error.h"

namespace umamba::postprocess {

namespace {

// Neighbour offsets of one connectivity with their linear steps; visit() skips those outside.
class Neighbourhood {
 public:
  Neighbourhood(const Extents& e, Connectivity c) : e_(e) {
    const int conn = to_int(connectivity_from_int(to_int(c), e.is_3d()));
    for (int dz = -1; dz <= 1; ++dz)
      for (int dy = -1; dy <= 1; ++dy)
        for (int dx = -1; dx <= 1; ++dx) {
          const int l1 = std::abs(dz) + std::abs(dy) + std::abs(dx);
          if (l1 == 0) continue;
          if ((conn == 4 || conn == 8) && dz != 0) continue;
          if ((conn == 4 || conn == 6) && l1 > 1) continue;
          if (conn == 18 && l1 > 2) continue;
          offsets_.push_back({dz, dy, dx});
          steps_.push_back((static_cast<int64_t>(dz) * e.y + dy) * e.x + dx);
        }
  }
  // fn(q) for each in-image neighbour q of pixel p = (z, y, x); stops when fn returns true.
  template <typename Fn>
  bool any(int64_t p, Fn&& fn) const {
    const int64_t x = p % e_.x;
    const int64_t y = (p / e_.x) % e_.y;
    const int64_t z = p / (e_.x * e_.y);
    for (size_t k = 0; k < offsets_.size(); ++k) {
      const auto& d = offsets_[k];
      if (static_cast<uint64_t>(z + d[0]) >= static_cast<uint64_t>(e_.z) ||
          static_cast<uint64_t>(y + d[1]) >= static_cast<uint64_t>(e_.y) ||
          static_cast<uint64_t>(x + d[2]) >= static_cast<uint64_t>(e_.x))
        continue;
      if (fn(p + steps_[k])) return true;
    }
    return false;
  }

 private:
  Extents e_;
  std::vector<std::array<int, 3>> offsets_;
  std::vector<int64_t> steps_;
};

bool on_edge(const Extents& e, int64_t p) {
  const int64_t x = p % e.x;
  const int64_t y = (p / e.x) % e.y;
  const int64_t z = p / (e.x * e.y);
  return x == 0 || x == e.x - 1 || y == 0 || y == e.y - 1 ||
         (e.is_3d() && (z == 0 || z == e.z - 1));
}

// Components of a mask (u8 0/1) with their sizes (index = label).
uint32_t label_mask(const std::vector<uint8_t>& mask, const Extents& e, Connectivity c, int threads,
                    std::vector<uint32_t>& labels, std::vector<int64_t>* sizes) {
  labels.resize(mask.size());
  CclOptions o;
  o.connectivity = c;
  o.threads = threads;
  const uint32_t n = label_components(mask.data(), e, labels.data(), o);
  if (sizes != nullptr) {
    sizes->assign(static_cast<size_t>(n) + 1, 0);
    for (uint32_t l : labels) ++(*sizes)[l];
  }
  return n;
}

}  // namespace

// ---- instances -> classes -----------------------------------------------------------------

template <typename L>
void instances_to_classes(const L* labels, const Extents& e, uint8_t* classes,
                          const ClassTargetOptions& options) {
  UMAMBA_CHECK(options.boundary_width >= 1, "boundary width must be at least 1, got {}",
               options.boundary_width);
  UMAMBA_CHECK(options.min_interior_size >= 0, "minimum interior size must be >= 0, got {}",
               options.min_interior_size);
  const int64_t n = e.pixels();
  const Neighbourhood cross(e, minimal_connectivity(e.is_3d()));
  // find_boundaries(mode='inner'): a labelled pixel with a cross neighbour of another value.
  std::vector<uint8_t> boundary(static_cast<size_t>(n), 0);
  for (int64_t p = 0; p < n; ++p) {
    const L l = labels[p];
    if (l == 0) continue;
    boundary[p] = cross.any(p, [&](int64_t q) { return labels[q] != l; });
  }
  // binary_dilation with the cross, width - 1 times.
  std::vector<uint8_t> previous;
  for (int k = 1; k < options.boundary_width; ++k) {
    previous = boundary;
    for (int64_t p = 0; p < n; ++p)
      if (!previous[p]) boundary[p] = cross.any(p, [&](int64_t q) { return previous[q] != 0; });
  }
  if (!options.spill)
    for (int64_t p = 0; p < n; ++p) boundary[p] = boundary[p] && labels[p] != 0;
  std::vector<uint8_t> interior(static_cast<size_t>(n));
  for (int64_t p = 0; p < n; ++p) interior[p] = labels[p] != 0 && !boundary[p];
  if (options.min_interior_size > 0) {
    std::vector<uint32_t> pieces;
    std::vector<int64_t> sizes;
    label_mask(interior, e, minimal_connectivity(e.is_3d()), 1, pieces, &sizes);
    for (int64_t p = 0; p < n; ++p)
      if (interior[p] && sizes[pieces[p]] < options.min_interior_size) interior[p] = 0;
  }
  for (int64_t p = 0; p < n; ++p)
    classes[p] = boundary[p] ? kBoundary : (interior[p] ? kInterior : kBackground);
}

#define UMAMBA_INSTANTIATE(T)                                               \
  template void instances_to_classes<T>(const T*, const Extents&, uint8_t*, \
                                        const ClassTargetOptions&);
UMAMBA_INSTANTIATE(uint8_t)
UMAMBA_INSTANTIATE(int8_t)
UMAMBA_INSTANTIATE(uint16_t)
UMAMBA_INSTANTIATE(int16_t)
UMAMBA_INSTANTIATE(uint32_t)
UMAMBA_INSTANTIATE(int32_t)
UMAMBA_INSTANTIATE(uint64_t)
UMAMBA_INSTANTIATE(int64_t)
#undef UMAMBA_INSTANTIATE

Image instances_to_classes(const Image& labels, const ClassTargetOptions& options) {
  UMAMBA_CHECK(!labels.empty(), "instances to classes: the label image is empty");
  UMAMBA_CHECK(labels.channels() == 1,
               "instances to classes: labels need one channel; got {} (shape {})",
               labels.channels(), to_string(labels.shape()));
  UMAMBA_CHECK(!dtype_is_float(labels.dtype()),
               "instances to classes: labels of dtype {} are floating point; instance labels "
               "are integers",
               dtype_name(labels.dtype()));
  const Image src = labels.contiguous();
  const Extents e{src.depth(), src.height(), src.width()};
  Image out = Image::zeros(DType::U8, Shape{1, e.z, e.y, e.x}, labels.geometry());
  visit_dtype(src.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_floating_point_v<T>)
      instances_to_classes<T>(src.data_as<T>(), e, out.data_as<uint8_t>(), options);
  });
  return out;
}

// ---- building blocks ----------------------------------------------------------------------

uint32_t relabel_sequential(uint32_t* labels, int64_t pixels) {
  uint32_t max_label = 0;
  for (int64_t i = 0; i < pixels; ++i) max_label = std::max(max_label, labels[i]);
  std::vector<uint32_t> map(static_cast<size_t>(max_label) + 1, 0);
  uint32_t n = 0;
  for (int64_t i = 0; i < pixels; ++i) {
    const uint32_t l = labels[i];
    if (l == 0) continue;
    if (map[l] == 0) map[l] = ++n;
    labels[i] = map[l];
  }
  return n;
}

void remove_small(uint32_t* labels, int64_t pixels, int64_t min_size) {
  if (min_size <= 1) return;
  uint32_t max_label = 0;
  for (int64_t i = 0; i < pixels; ++i) max_label = std::max(max_label, labels[i]);
  std::vector<int64_t> size(static_cast<size_t>(max_label) + 1, 0);
  for (int64_t i = 0; i < pixels; ++i) ++size[labels[i]];
  for (int64_t i = 0; i < pixels; ++i)
    if (size[labels[i]] < min_size) labels[i] = 0;
}

void fill_holes(uint32_t* labels, const Extents& e, int64_t max_hole_size) {
  const int64_t n = e.pixels();
  std::vector<uint8_t> background(static_cast<size_t>(n));
  for (int64_t p = 0; p < n; ++p) background[p] = labels[p] == 0;
  std::vector<uint32_t> regions;
  std::vector<int64_t> sizes;
  const uint32_t count =
      label_mask(background, e, minimal_connectivity(e.is_3d()), 1, regions, &sizes);
  std::vector<uint32_t> owner(static_cast<size_t>(count) + 1, 0);
  std::vector<uint8_t> rejected(static_cast<size_t>(count) + 1, 0);
  const Neighbourhood cross(e, minimal_connectivity(e.is_3d()));
  for (int64_t p = 0; p < n; ++p) {
    const uint32_t r = regions[p];
    if (r == 0 || rejected[r]) continue;
    if (on_edge(e, p)) {
      rejected[r] = 1;
      continue;
    }
    cross.any(p, [&](int64_t q) {
      const uint32_t l = labels[q];
      if (l == 0) return false;
      if (owner[r] == 0) {
        owner[r] = l;
      } else if (owner[r] != l) {
        rejected[r] = 1;
        return true;
      }
      return false;
    });
  }
  for (int64_t p = 0; p < n; ++p) {
    const uint32_t r = regions[p];
    if (r != 0 && !rejected[r] && owner[r] != 0 &&
        (max_hole_size <= 0 || sizes[r] <= max_hole_size))
      labels[p] = owner[r];
  }
}

Image label_image(const uint32_t* labels, const Extents& e, uint32_t count,
                  const Geometry& geometry) {
  const Shape shape{1, e.z, e.y, e.x};
  if (count <= 65535) {
    Image out = Image::zeros(DType::U16, shape, geometry);
    std::copy(labels, labels + e.pixels(), out.data_as<uint16_t>());
    return out;
  }
  Image out = Image::zeros(DType::U32, shape, geometry);
  std::copy(labels, labels + e.pixels(), out.data_as<uint32_t>());
  return out;
}

// ---- classes -> instances -----------------------------------------------------------------

InstanceMode instance_mode_from_name(const std::string& name) {
  if (name == "reclaim") return InstanceMode::Reclaim;
  if (name == "plain") return InstanceMode::Plain;
  fail("instance mode must be 'reclaim' or 'plain', got '{}'", name);
}

uint32_t classes_to_instances(const uint8_t* classes, const Extents& e, uint32_t* labels,
                              const InstanceOptions& options) {
  const int64_t n = e.pixels();
  for (int64_t p = 0; p < n; ++p) {
    if (classes[p] > kBoundary)
      fail(
          "three-class map: value {} at (z {}, y {}, x {}); expected 0 background, 1 interior, "
          "2 boundary",
          classes[p], p / (e.x * e.y), (p / e.x) % e.y, p % e.x);
  }
  UMAMBA_CHECK(options.max_growth >= 0, "maximum growth must be >= 0, got {}", options.max_growth);
  const Connectivity conn = connectivity_from_int(options.connectivity, e.is_3d());
  CclOptions ccl;
  ccl.connectivity = conn;
  ccl.threads = options.threads;

  // Seeds: components of the interior class (the whole result in plain mode).
  std::vector<uint8_t> mask(static_cast<size_t>(n));
  for (int64_t p = 0; p < n; ++p) mask[p] = classes[p] == kInterior;
  const uint32_t seeds = label_components(mask.data(), e, labels, ccl);
  if (options.mode == InstanceMode::Plain) {
    if (options.min_size > 1) {
      remove_small(labels, n, options.min_size);
      return relabel_sequential(labels, n);
    }
    return seeds;
  }

  // Growth into the boundary class, level by level; the first seed to reach a pixel takes it.
  const Neighbourhood step(e, conn);
  std::vector<int64_t> frontier, next;
  for (int64_t p = 0; p < n; ++p)
    if (labels[p] != 0 && step.any(p, [&](int64_t q) { return classes[q] == kBoundary; }))
      frontier.push_back(p);
  for (int64_t level = 1;
       !frontier.empty() && (options.max_growth == 0 || level <= options.max_growth); ++level) {
    next.clear();
    for (const int64_t p : frontier) {
      const uint32_t l = labels[p];
      step.any(p, [&](int64_t q) {
        if (classes[q] == kBoundary && labels[q] == 0) {
          labels[q] = l;
          next.push_back(q);
        }
        return false;
      });
    }
    frontier.swap(next);
  }

  // Leftover boundary components: instances of their own (cells without interior).
  for (int64_t p = 0; p < n; ++p) mask[p] = classes[p] == kBoundary && labels[p] == 0;
  std::vector<uint32_t> leftover;
  label_mask(mask, e, conn, options.threads, leftover, nullptr);
  for (int64_t p = 0; p < n; ++p)
    if (leftover[p] != 0) labels[p] = seeds + leftover[p];

  // Trim the outward spill: boundary-class pixels with a background cross neighbour.
  if (options.trim_spill) {
    const Neighbourhood cross(e, minimal_connectivity(e.is_3d()));
    std::vector<int64_t> trimmed;
    for (int64_t p = 0; p < n; ++p)
      if (labels[p] != 0 && classes[p] == kBoundary &&
          cross.any(p, [&](int64_t q) { return labels[q] == 0; }))
        trimmed.push_back(p);
    for (const int64_t p : trimmed) labels[p] = 0;
  }

  // Boundary-only instances below their minimum size go.
  if (options.min_boundary_only_size > 1) {
    uint32_t max_label = 0;
    for (int64_t p = 0; p < n; ++p) max_label = std::max(max_label, labels[p]);
    std::vector<int64_t> size(static_cast<size_t>(max_label) + 1, 0);
    for (int64_t p = 0; p < n; ++p) ++size[labels[p]];
    for (int64_t p = 0; p < n; ++p)
      if (labels[p] > seeds && size[labels[p]] < options.min_boundary_only_size) labels[p] = 0;
  }
  if (options.fill_holes) fill_holes(labels, e, options.max_hole_size);
  if (options.min_size > 1) remove_small(labels, n, options.min_size);
  return relabel_sequential(labels, n);
}

Image class_map(const Image& in) {
  UMAMBA_CHECK(!in.empty(), "three-class map: the image is empty");
  const Extents e{in.depth(), in.height(), in.width()};
  Image out = Image::zeros(DType::U8, Shape{1, e.z, e.y, e.x}, in.geometry());
  uint8_t* o = out.data_as<uint8_t>();
  if (dtype_is_float(in.dtype())) {
    UMAMBA_CHECK(in.channels() == 3,
                 "class probabilities need 3 channels (background, interior, boundary); got {} "
                 "(shape {})",
                 in.channels(), to_string(in.shape()));
    const Image f = in.cast(DType::F32);
    const float* d = f.data_as<float>();
    const int64_t n = e.pixels();
    for (int64_t p = 0; p < n; ++p) {
      const float b = d[p], i = d[n + p], s = d[2 * n + p];
      o[p] = s > b && s > i ? kBoundary : (i > b ? kInterior : kBackground);
    }
    return out;
  }
  UMAMBA_CHECK(in.channels() == 1,
               "a three-class map has one channel of values 0..2 (or 3 channels of "
               "probabilities); got {} channels of {} (shape {})",
               in.channels(), dtype_name(in.dtype()), to_string(in.shape()));
  const Image c = in.contiguous();
  visit_dtype(c.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* d = c.data_as<T>();
    for (int64_t p = 0; p < e.pixels(); ++p) {
      const double v = static_cast<double>(d[p]);
      if (v < 0 || v > 2)
        fail(
            "three-class map: value {} at (z {}, y {}, x {}); expected 0 background, "
            "1 interior, 2 boundary",
            v, p / (e.x * e.y), (p / e.x) % e.y, p % e.x);
      o[p] = static_cast<uint8_t>(d[p]);
    }
  });
  return out;
}

Image classes_to_instances(const Image& classes_or_probabilities, const InstanceOptions& options,
                           uint32_t* count) {
  const Image classes = class_map(classes_or_probabilities);
  const Extents e{classes.depth(), classes.height(), classes.width()};
  std::vector<uint32_t> labels(static_cast<size_t>(e.pixels()));
  const uint32_t n = classes_to_instances(classes.data_as<uint8_t>(), e, labels.data(), options);
  if (count != nullptr) *count = n;
  return label_image(labels.data(), e, n, classes_or_probabilities.geometry());
}

}  // namespace umamba::postprocess
