// Tensor shapes as text for error messages ("2x3x64x64"): LibTorch's IntArrayRef has no fmt
// formatter.
#pragma once

#include <c10/util/ArrayRef.h>

#include <string>

namespace umamba::train {

inline std::string shape_text(c10::IntArrayRef s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "x" : "") + std::to_string(s[i]);
  return out.empty() ? "scalar" : out;
}

}  // namespace umamba::train
