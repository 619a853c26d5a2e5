// Shared helpers of the metrics: reading integer label images of any dtype row by row, and their
// checks (one channel, same shape, integer ids ≥ 0). Internal to src/metrics.
#pragma once

#include <cstdint>
#include <string_view>
#include <type_traits>

#include "core/dtype.h"
#include "core/error.h"
#include "core/image.h"

namespace umamba::metrics::detail {

// Throws Error unless `image` is a one-channel integer label image.
inline void check_label_image(const Image& image, std::string_view what) {
  UMAMBA_CHECK(!image.empty(), "{}: the label image is empty", what);
  UMAMBA_CHECK(image.channels() == 1, "{}: label images have one channel, this one has {}", what,
               image.channels());
  UMAMBA_CHECK(!dtype_is_float(image.dtype()),
               "{}: labels must be integers, got {} (convert the file to an integer type)", what,
               dtype_name(image.dtype()));
}

inline void check_same_shape(const Image& gt, const Image& pred, std::string_view what) {
  check_label_image(gt, std::string(what) + " (ground truth)");
  check_label_image(pred, std::string(what) + " (prediction)");
  UMAMBA_CHECK(gt.shape() == pred.shape(),
               "{}: ground truth is {} but the prediction is {} (CxZxYxX)", what,
               to_string(gt.shape()), to_string(pred.shape()));
}

// Calls fn(row_pointer, x_stride) style access through a typed lambda: fn(T{}) with T the C++
// type of the label dtype (integers only).
template <typename Fn>
decltype(auto) visit_labels(const Image& image, Fn&& fn) {
  return visit_dtype(image.dtype(), [&](auto tag) -> decltype(auto) {
    using T = decltype(tag);
    if constexpr (std::is_floating_point_v<T>) {
      fail("labels must be integers, got {}", dtype_name(image.dtype()));
      return fn(int64_t{});  // unreachable; keeps the return type
    } else {
      return fn(tag);
    }
  });
}

}  // namespace umamba::metrics::detail
