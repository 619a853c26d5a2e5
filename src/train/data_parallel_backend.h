// Internal to data_parallel*.cpp: the NCCL backend's constructor lives in its own translation unit
// (it needs CUDA's and NCCL's headers, which a build may lack).
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>

namespace umamba::train::detail {

// Throws Error when the build has no NCCL.
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                                    int rank, int world_size, int device_index,
                                                    std::chrono::milliseconds timeout);

}  // namespace umamba::train::detail
