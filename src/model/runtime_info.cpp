#include "model/runtime_info.h"

#include <ATen/Parallel.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <fmt/format.h>
#include <torch/cuda.h>
#include <torch/version.h>

#if defined(UMAMBA_TORCH_HAS_CUDA)
#include <ATen/cuda/CUDAContext.h>
#endif

namespace umamba::model {
namespace {

// 13000 -> "13.0", 91900 -> "9.19.0" (cuDNN encodes major*10000 + minor*100 + patch since 9.0).
std::string cudart_version_string(long v) {
  return fmt::format("{}.{}", v / 1000, (v % 1000) / 10);
}
std::string cudnn_version_string(long v) {
  return fmt::format("{}.{}.{}", v / 10000, (v % 10000) / 100, v % 100);
}

}  // namespace

nlohmann::json torch_runtime_info() {
  nlohmann::json info;
  info["libtorch"] = TORCH_VERSION;
  info["intraop_threads"] = at::get_num_threads();
  const auto& hooks = at::detail::getCUDAHooks();
  const bool cuda_built = hooks.hasCUDART();
  info["cuda_built"] = cuda_built;
  info["cuda_available"] = torch::cuda::is_available();
  if (cuda_built) info["cuda_runtime"] = cudart_version_string(hooks.versionCUDART());
  if (cuda_built && hooks.hasCuDNN()) info["cudnn"] = cudnn_version_string(hooks.versionCuDNN());
  info["cudnn_available"] = torch::cuda::cudnn_is_available();
  nlohmann::json devices = nlohmann::json::array();
#if defined(UMAMBA_TORCH_HAS_CUDA)
  if (torch::cuda::is_available()) {
    for (int i = 0; i < static_cast<int>(torch::cuda::device_count()); ++i) {
      const cudaDeviceProp* p = at::cuda::getDeviceProperties(i);
      devices.push_back({{"index", i},
                         {"name", p->name},
                         {"memory_gib", p->totalGlobalMem / double(1 << 30)},
                         {"capability", fmt::format("{}.{}", p->major, p->minor)},
                         {"multiprocessors", p->multiProcessorCount}});
    }
  }
#endif
  info["devices"] = devices;
  return info;
}

}  // namespace umamba::model
