#include "pipeline/system_info.h"

#include <fmt/format.h>
#include <tbb/info.h>
#include <tbb/version.h>
#include <tiffvers.h>

#include "core/build_info.h"
#if defined(UMAMBA_WITH_TORCH)
#include "model/runtime_info.h"
#endif

namespace umamba::pipeline {

nlohmann::json system_info() {
  nlohmann::json info;
  info["umamba"] = build_info::kVersion;
  info["git_revision"] = build_info::kGitRevision;
  info["build"] = {
      {"type", build_info::kBuildType},    {"compiler", build_info::kCompiler},
      {"cuda_kernels", build_info::kCuda}, {"cuda_architectures", build_info::kCudaArchitectures},
      {"opencv", build_info::kOpenCV},     {"libtorch", build_info::kTorch}};
  info["tbb"] = {{"version", TBB_VERSION_STRING}, {"threads", tbb::info::default_concurrency()}};
  info["libtiff"] =
      fmt::format("{}.{}.{}", TIFFLIB_MAJOR_VERSION, TIFFLIB_MINOR_VERSION, TIFFLIB_MICRO_VERSION);
#if defined(UMAMBA_WITH_TORCH)
  info["torch"] = model::torch_runtime_info();
#endif
  return info;
}

std::string format_system_info(const nlohmann::json& info) {
  std::string out;
  auto line = [&](std::string_view key, const std::string& value) {
    out += fmt::format("{:<22}{}\n", key, value);
  };
  auto yes_no = [](const nlohmann::json& v) { return std::string(v.get<bool>() ? "yes" : "no"); };
  const auto& b = info["build"];
  line("umamba",
       fmt::format("{} ({}, {})", info["umamba"].get<std::string>(),
                   info["git_revision"].get<std::string>(), b["type"].get<std::string>()));
  line("compiler", b["compiler"].get<std::string>());
  line("CUDA kernels", b["cuda_kernels"].get<bool>()
                           ? "built for sm_" + b["cuda_architectures"].get<std::string>()
                           : std::string("not built"));
  line("OpenCV (PNG/JPEG/BMP)", yes_no(b["opencv"]));
  line("TBB", fmt::format("{} ({} threads)", info["tbb"]["version"].get<std::string>(),
                          info["tbb"]["threads"].get<int>()));
  line("libtiff", info["libtiff"].get<std::string>());
  if (!info.contains("torch")) {
    line("LibTorch", "not built (UMAMBA_TORCH=OFF)");
    return out;
  }
  const auto& t = info["torch"];
  line("LibTorch", fmt::format("{} ({} intra-op threads)", t["libtorch"].get<std::string>(),
                               t["intraop_threads"].get<int>()));
  line("CUDA runtime", t.contains("cuda_runtime") ? t["cuda_runtime"].get<std::string>()
                                                  : std::string("not in this LibTorch"));
  line("cuDNN", t.contains("cudnn") ? t["cudnn"].get<std::string>() : std::string("none"));
  if (t["devices"].empty()) {
    line("GPUs", t["cuda_built"].get<bool>()
                     ? "none visible (inference and training run on the CPU)"
                     : "none (CPU-only LibTorch)");
  }
  for (const auto& d : t["devices"]) {
    line(fmt::format("cuda:{}", d["index"].get<int>()),
         fmt::format("{}, {:.1f} GiB, compute capability {}, {} SMs", d["name"].get<std::string>(),
                     d["memory_gib"].get<double>(), d["capability"].get<std::string>(),
                     d["multiprocessors"].get<int>()));
  }
  return out;
}

}  // namespace umamba::pipeline
