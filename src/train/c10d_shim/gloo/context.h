// umamba: declarations standing in for Gloo's own headers, which LibTorch's PyPI wheel does not
// ship. torch/csrc/distributed/c10d/ProcessGroupGloo.hpp holds Gloo objects only through
// pointers; the names below are what it mentions. Only distributed.cpp sees them, and it never
// touches a Gloo object itself: every Gloo call happens inside libtorch_cpu. Written for this
// project from the names ProcessGroupGloo.hpp uses (not copied from Gloo).
#pragma once

#include <chrono>

namespace gloo {
class Context {
 public:
  void setTimeout(std::chrono::milliseconds timeout);  // declared only; never called here
};
}  // namespace gloo
