// The N-D image buffer shared by every layer: images, probability maps and label maps.
//
// Layout: shape [C, Z, Y, X] with X fastest; a 2D image has Z = 1, a grey image C = 1. Strides are
// in elements, so a view (one channel, one slice, a region) is the same type over the same memory.
// Storage is reference-counted: views keep their parent alive and copying an Image is cheap (it
// shares the pixels; use clone() for a deep copy). Code that needs a tensor wraps the same memory
// (model/image_tensor.h) without copying when the layout is contiguous.
//
// Geometry follows the medical convention (ITK/NIfTI): spacing per axis in `unit`, the world
// position of the first voxel's centre, and the direction cosines of the three index axes.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "core/dtype.h"

namespace umamba {

struct Shape {
  int64_t c = 1;  // channels
  int64_t z = 1;  // slices (1 for 2D)
  int64_t y = 1;  // rows
  int64_t x = 1;  // columns

  int64_t pixels() const { return z * y * x; }  // voxels per channel
  int64_t elements() const { return c * z * y * x; }
  bool operator==(const Shape&) const = default;
};

std::string to_string(const Shape& s);  // "C×Z×Y×X", e.g. "3x1x512x512"

struct Geometry {
  std::array<double, 3> spacing{1.0, 1.0, 1.0};  // [Z,Y,X] voxel size in `unit`
  std::string unit;                              // "um", "mm", ... ; empty when unknown (pixels)
  // World coordinates (x, y, z) of the centre of voxel (0,0,0), in `unit`.
  std::array<double, 3> origin{0.0, 0.0, 0.0};
  // Row-major 3×3; column j is the world direction of index axis j, with index axes ordered
  // (X, Y, Z) as NIfTI's (i, j, k). Identity unless the file says otherwise.
  std::array<double, 9> direction{1, 0, 0, 0, 1, 0, 0, 0, 1};

  bool operator==(const Geometry&) const = default;
};

// An axis-aligned box of voxels: [z0, z0+dz) × [y0, y0+dy) × [x0, x0+dx).
struct Box {
  int64_t z0 = 0, y0 = 0, x0 = 0;
  int64_t dz = 1, dy = 1, dx = 1;
};

class Image {
 public:
  // Free-form facts about where the image came from ("source.path", "tiff.compression", ...).
  using Metadata = std::map<std::string, std::string>;

  Image() = default;  // empty: no storage, shape 0

  // A zero-filled contiguous image. Throws Unsupported above the allocation limit (core/memory.h).
  static Image zeros(DType dtype, const Shape& shape, const Geometry& geometry = {});

  // Views memory owned elsewhere; `owner` (may be null) is kept alive as long as any view exists.
  static Image wrap(void* data, DType dtype, const Shape& shape, const Shape& strides,
                    std::shared_ptr<void> owner, const Geometry& geometry = {});

  static Shape contiguous_strides(const Shape& shape);

  bool empty() const { return data_ == nullptr; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }  // in elements
  int64_t channels() const { return shape_.c; }
  int64_t depth() const { return shape_.z; }
  int64_t height() const { return shape_.y; }
  int64_t width() const { return shape_.x; }
  bool is_2d() const { return shape_.z == 1; }
  int64_t element_count() const { return empty() ? 0 : shape_.elements(); }
  size_t byte_size() const { return static_cast<size_t>(element_count()) * dtype_size(dtype_); }
  bool is_contiguous() const;

  void* data() { return data_; }
  const void* data() const { return data_; }

  // Typed access; throws when T does not match dtype().
  template <typename T>
  T* data_as() {
    check_type(dtype_of<T>());
    return static_cast<T*>(data_);
  }
  template <typename T>
  const T* data_as() const {
    check_type(dtype_of<T>());
    return static_cast<const T*>(data_);
  }
  // Unchecked element access (no bounds or type check: hot loops use data_as + strides instead).
  template <typename T>
  T& at(int64_t c, int64_t z, int64_t y, int64_t x) const {
    return static_cast<T*>(
        data_)[c * strides_.c + z * strides_.z + y * strides_.y + x * strides_.x];
  }

  // Views (no copy). Arguments are checked against the shape.
  Image channel(int64_t c) const;
  Image channels(int64_t first, int64_t count) const;
  Image slice(int64_t z) const;
  Image region(const Box& box) const;  // all channels of the box

  // Copies.
  Image clone() const;       // deep, contiguous
  Image contiguous() const;  // *this when already contiguous, else clone()
  // Converted copy: values are clamped to the target's range, floats rounded to nearest, NaN -> 0.
  Image cast(DType target) const;
  void copy_from(const Image& src);  // same shape; any strides and dtypes (converted)
  void fill_zero();

  Geometry& geometry() { return geometry_; }
  const Geometry& geometry() const { return geometry_; }
  Metadata& metadata() { return metadata_; }
  const Metadata& metadata() const { return metadata_; }

  // True when shape, dtype and every element are equal (strides may differ).
  bool same_pixels(const Image& other) const;

 private:
  void check_type(DType requested) const;

  std::shared_ptr<void> owner_;
  void* data_ = nullptr;
  DType dtype_ = DType::U8;
  Shape shape_{0, 0, 0, 0};
  Shape strides_{0, 0, 0, 0};
  Geometry geometry_;
  Metadata metadata_;
};

}  // namespace umamba
