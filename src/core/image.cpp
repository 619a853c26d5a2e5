#include "core/image.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "core/memory.h"

namespace umamba {

std::string to_string(const Shape& s) {
  return fmt::format("{}x{}x{}x{}", s.c, s.z, s.y, s.x);
}

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::U8:
      return "u8";
    case DType::I8:
      return "i8";
    case DType::U16:
      return "u16";
    case DType::I16:
      return "i16";
    case DType::U32:
      return "u32";
    case DType::I32:
      return "i32";
    case DType::U64:
      return "u64";
    case DType::I64:
      return "i64";
    case DType::F32:
      return "f32";
    case DType::F64:
      return "f64";
  }
  return "?";
}

DType dtype_from_name(std::string_view name) {
  static constexpr std::pair<std::string_view, DType> kNames[] = {
      {"u8", DType::U8},   {"uint8", DType::U8},    {"i8", DType::I8},   {"int8", DType::I8},
      {"u16", DType::U16}, {"uint16", DType::U16},  {"i16", DType::I16}, {"int16", DType::I16},
      {"u32", DType::U32}, {"uint32", DType::U32},  {"i32", DType::I32}, {"int32", DType::I32},
      {"u64", DType::U64}, {"uint64", DType::U64},  {"i64", DType::I64}, {"int64", DType::I64},
      {"f32", DType::F32}, {"float32", DType::F32}, {"f64", DType::F64}, {"float64", DType::F64},
  };
  for (const auto& [n, t] : kNames) {
    if (n == name) return t;
  }
  fail("unknown element type '{}' (expected one of u8 i8 u16 i16 u32 i32 u64 i64 f32 f64)", name);
}

Shape Image::contiguous_strides(const Shape& s) {
  return Shape{s.z * s.y * s.x, s.y * s.x, s.x, 1};
}

Image Image::zeros(DType dtype, const Shape& shape, const Geometry& geometry) {
  UMAMBA_CHECK(shape.c > 0 && shape.z > 0 && shape.y > 0 && shape.x > 0,
               "image shape {} must be positive on every axis", to_string(shape));
  const size_t bytes = checked_allocation_size(
      static_cast<uint64_t>(shape.c) * shape.z * shape.y * static_cast<uint64_t>(shape.x),
      dtype_size(dtype), "image " + to_string(shape));
  // calloc: large zeroed buffers come straight from the kernel's zero pages.
  void* raw = std::calloc(bytes, 1);
  if (raw == nullptr) {
    throw Unsupported(fmt::format("out of memory allocating {:.1f} MiB for image {}",
                                  bytes / double(1 << 20), to_string(shape)));
  }
  std::shared_ptr<void> owner(raw, [](void* p) { std::free(p); });
  return wrap(raw, dtype, shape, contiguous_strides(shape), std::move(owner), geometry);
}

Image Image::wrap(void* data, DType dtype, const Shape& shape, const Shape& strides,
                  std::shared_ptr<void> owner, const Geometry& geometry) {
  UMAMBA_CHECK(data != nullptr, "Image::wrap: null data pointer");
  Image img;
  img.owner_ = std::move(owner);
  img.data_ = data;
  img.dtype_ = dtype;
  img.shape_ = shape;
  img.strides_ = strides;
  img.geometry_ = geometry;
  return img;
}

bool Image::is_contiguous() const {
  if (empty()) return true;
  const Shape want = contiguous_strides(shape_);
  // Strides of axes of extent 1 do not matter.
  return (shape_.c == 1 || strides_.c == want.c) && (shape_.z == 1 || strides_.z == want.z) &&
         (shape_.y == 1 || strides_.y == want.y) && (shape_.x == 1 || strides_.x == 1);
}

void Image::check_type(DType requested) const {
  if (requested != dtype_) {
    fail("image holds {} elements, accessed as {}", dtype_name(dtype_), dtype_name(requested));
  }
}

Image Image::channels(int64_t first, int64_t count) const {
  UMAMBA_CHECK(first >= 0 && count > 0 && first + count <= shape_.c,
               "channels [{}, {}) outside an image of {} channels", first, first + count, shape_.c);
  Image v = *this;
  v.data_ = static_cast<char*>(data_) + first * strides_.c * dtype_size(dtype_);
  v.shape_.c = count;
  return v;
}

Image Image::channel(int64_t c) const {
  return channels(c, 1);
}

Image Image::slice(int64_t z) const {
  UMAMBA_CHECK(z >= 0 && z < shape_.z, "slice {} outside an image of {} slices", z, shape_.z);
  return region(Box{z, 0, 0, 1, shape_.y, shape_.x});
}

Image Image::region(const Box& b) const {
  UMAMBA_CHECK(b.z0 >= 0 && b.y0 >= 0 && b.x0 >= 0 && b.dz > 0 && b.dy > 0 && b.dx > 0 &&
                   b.z0 + b.dz <= shape_.z && b.y0 + b.dy <= shape_.y && b.x0 + b.dx <= shape_.x,
               "region z[{},{}) y[{},{}) x[{},{}) outside an image of {}", b.z0, b.z0 + b.dz, b.y0,
               b.y0 + b.dy, b.x0, b.x0 + b.dx, to_string(shape_));
  Image v = *this;
  const int64_t offset = b.z0 * strides_.z + b.y0 * strides_.y + b.x0 * strides_.x;
  v.data_ = static_cast<char*>(data_) + offset * static_cast<int64_t>(dtype_size(dtype_));
  v.shape_ = Shape{shape_.c, b.dz, b.dy, b.dx};
  // The region's first voxel moves in world space along the direction cosines.
  const auto& d = geometry_.direction;
  const double step[3] = {b.x0 * geometry_.spacing[2], b.y0 * geometry_.spacing[1],
                          b.z0 * geometry_.spacing[0]};
  for (int row = 0; row < 3; ++row) {
    v.geometry_.origin[row] +=
        d[row * 3 + 0] * step[0] + d[row * 3 + 1] * step[1] + d[row * 3 + 2] * step[2];
  }
  return v;
}

namespace {

template <typename To, typename From>
To convert_value(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (std::is_floating_point_v<To>) {
    return static_cast<To>(v);
  } else if constexpr (std::is_floating_point_v<From>) {
    if (std::isnan(v)) return To{0};
    const From r = std::nearbyint(v);
    if (r <= static_cast<From>(std::numeric_limits<To>::lowest()))
      return std::numeric_limits<To>::lowest();
    if (r >= static_cast<From>(std::numeric_limits<To>::max()))
      return std::numeric_limits<To>::max();
    return static_cast<To>(r);
  } else {
    // Integer to integer: clamp with the mixed-sign-safe comparisons of <utility>.
    if (std::cmp_less(v, std::numeric_limits<To>::lowest()))
      return std::numeric_limits<To>::lowest();
    if (std::cmp_greater(v, std::numeric_limits<To>::max())) return std::numeric_limits<To>::max();
    return static_cast<To>(v);
  }
}

// dst[c,z,y,x] = convert(src[c,z,y,x]) over arbitrary strides.
template <typename To, typename From>
void copy_convert(const Image& src, Image& dst) {
  const Shape s = src.shape();
  const Shape ss = src.strides();
  const Shape ds = dst.strides();
  const From* sp = static_cast<const From*>(src.data());
  To* dp = static_cast<To*>(dst.data());
  for (int64_t c = 0; c < s.c; ++c) {
    for (int64_t z = 0; z < s.z; ++z) {
      for (int64_t y = 0; y < s.y; ++y) {
        const From* srow = sp + c * ss.c + z * ss.z + y * ss.y;
        To* drow = dp + c * ds.c + z * ds.z + y * ds.y;
        if constexpr (std::is_same_v<To, From>) {
          if (ss.x == 1 && ds.x == 1) {
            std::memcpy(drow, srow, static_cast<size_t>(s.x) * sizeof(To));
            continue;
          }
        }
        for (int64_t x = 0; x < s.x; ++x) drow[x * ds.x] = convert_value<To>(srow[x * ss.x]);
      }
    }
  }
}

}  // namespace

void Image::copy_from(const Image& src) {
  UMAMBA_CHECK(src.shape() == shape_, "copy_from: shape {} differs from {}", to_string(src.shape()),
               to_string(shape_));
  visit_dtype(dtype_, [&](auto to_tag) {
    using To = decltype(to_tag);
    visit_dtype(src.dtype(), [&](auto from_tag) {
      using From = decltype(from_tag);
      copy_convert<To, From>(src, *this);
    });
  });
}

Image Image::clone() const {
  if (empty()) return Image{};
  Image out = zeros(dtype_, shape_, geometry_);
  out.copy_from(*this);
  out.metadata_ = metadata_;
  return out;
}

Image Image::contiguous() const {
  return is_contiguous() ? *this : clone();
}

Image Image::cast(DType target) const {
  if (empty()) return Image{};
  Image out = zeros(target, shape_, geometry_);
  out.copy_from(*this);
  out.metadata_ = metadata_;
  return out;
}

void Image::fill_zero() {
  if (empty()) return;
  if (is_contiguous()) {
    std::memset(data_, 0, byte_size());
    return;
  }
  visit_dtype(dtype_, [&](auto tag) {
    using T = decltype(tag);
    for (int64_t c = 0; c < shape_.c; ++c)
      for (int64_t z = 0; z < shape_.z; ++z)
        for (int64_t y = 0; y < shape_.y; ++y)
          for (int64_t x = 0; x < shape_.x; ++x) at<T>(c, z, y, x) = T{0};
  });
}

bool Image::same_pixels(const Image& other) const {
  if (dtype_ != other.dtype_ || !(shape_ == other.shape_)) return false;
  if (empty()) return other.empty();
  return visit_dtype(dtype_, [&](auto tag) {
    using T = decltype(tag);
    const T* mine = data_as<T>();
    const T* theirs = other.data_as<T>();
    const Shape& a = strides_;
    const Shape& b = other.strides_;
    for (int64_t c = 0; c < shape_.c; ++c)
      for (int64_t z = 0; z < shape_.z; ++z)
        for (int64_t y = 0; y < shape_.y; ++y) {
          // One row at a time through pointers: this runs per pixel in tests and fuzz targets.
          const T* p = mine + c * a.c + z * a.z + y * a.y;
          const T* q = theirs + c * b.c + z * b.z + y * b.y;
          for (int64_t x = 0; x < shape_.x; ++x, p += a.x, q += b.x) {
            if (!(*p == *q)) {
              if constexpr (std::is_floating_point_v<T>) {
                if (std::isnan(*p) && std::isnan(*q)) continue;
              }
              return false;
            }
          }
        }
    return true;
  });
}

}  // namespace umamba
