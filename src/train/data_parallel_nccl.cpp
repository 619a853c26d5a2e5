// The NCCL process group (see data_parallel.h). Compiled with NCCL only when the build found
// LibTorch's CUDA libraries and nccl.h (src/train/CMakeLists.txt defines UMAMBA_WITH_NCCL).
#if defined(UMAMBA_WITH_NCCL)
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "core/error.h"
#include "train/data_parallel.h"
#include "train/data_parallel_backend.h"

namespace umamba::train {

bool nccl_available() {
#if defined(UMAMBA_WITH_NCCL)
  return true;
#else
  return false;
#endif
}

namespace detail {

c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                                    int rank, int world_size, int device_index,
                                                    std::chrono::milliseconds timeout) {
#if defined(UMAMBA_WITH_NCCL)
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(device_index));
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  auto backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, options);
  // This rank's GPU, so that NCCL does not guess it (barriers, communicator creation).
  backend->setBoundDeviceId(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device_index)));
  return backend;
#else
  (void)store;
  (void)rank;
  (void)world_size;
  (void)device_index;
  (void)timeout;
  fail(
      "--dist-backend nccl: this build has no NCCL (LibTorch without CUDA, or nccl.h not found "
      "when configuring); use --dist-backend gloo");
#endif
}

}  // namespace detail
}  // namespace umamba::train
