// Element types of images and labels, and a dispatcher from the runtime tag to a C++ type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "core/error.h"

namespace umamba {

enum class DType : uint8_t { U8, I8, U16, I16, U32, I32, U64, I64, F32, F64 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::U8:
    case DType::I8:
      return 1;
    case DType::U16:
    case DType::I16:
      return 2;
    case DType::U32:
    case DType::I32:
    case DType::F32:
      return 4;
    case DType::U64:
    case DType::I64:
    case DType::F64:
      return 8;
  }
  return 0;
}

constexpr bool dtype_is_float(DType t) {
  return t == DType::F32 || t == DType::F64;
}
constexpr bool dtype_is_signed(DType t) {
  return t == DType::I8 || t == DType::I16 || t == DType::I32 || t == DType::I64 ||
         dtype_is_float(t);
}

// "u8", "i16", "f32", ... as numpy spells them without the byte order.
std::string_view dtype_name(DType t);
// Inverse of dtype_name; also accepts numpy's long names ("uint16", "float32").
DType dtype_from_name(std::string_view name);

template <typename T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, uint8_t>)
    return DType::U8;
  else if constexpr (std::is_same_v<T, int8_t>)
    return DType::I8;
  else if constexpr (std::is_same_v<T, uint16_t>)
    return DType::U16;
  else if constexpr (std::is_same_v<T, int16_t>)
    return DType::I16;
  else if constexpr (std::is_same_v<T, uint32_t>)
    return DType::U32;
  else if constexpr (std::is_same_v<T, int32_t>)
    return DType::I32;
  else if constexpr (std::is_same_v<T, uint64_t>)
    return DType::U64;
  else if constexpr (std::is_same_v<T, int64_t>)
    return DType::I64;
  else if constexpr (std::is_same_v<T, float>)
    return DType::F32;
  else if constexpr (std::is_same_v<T, double>)
    return DType::F64;
  else
    static_assert(sizeof(T) == 0, "no DType for this C++ type");
}

// Calls fn(T{}) with the C++ type of `t` and returns its result:
//   visit_dtype(img.dtype(), [&](auto tag) { using T = decltype(tag); ... });
template <typename Fn>
decltype(auto) visit_dtype(DType t, Fn&& fn) {
  switch (t) {
    case DType::U8:
      return fn(uint8_t{});
    case DType::I8:
      return fn(int8_t{});
    case DType::U16:
      return fn(uint16_t{});
    case DType::I16:
      return fn(int16_t{});
    case DType::U32:
      return fn(uint32_t{});
    case DType::I32:
      return fn(int32_t{});
    case DType::U64:
      return fn(uint64_t{});
    case DType::I64:
      return fn(int64_t{});
    case DType::F32:
      return fn(float{});
    case DType::F64:
      return fn(double{});
  }
  throw Error("visit_dtype: invalid dtype tag");
}

}  // namespace umamba
