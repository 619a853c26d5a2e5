// `umamba import`: temporary folder, conversion by umamba::model, rename into place.
#include "pipeline/import.h"

#include <fmt/format.h>
#include <unistd.h>

#include <fstream>

#include "core/error.h"
#include "core/log.h"

#if defined(UMAMBA_WITH_TORCH)
#include "model/model_folder.h"
#endif

namespace umamba::pipeline {
namespace fs = std::filesystem;

namespace {

bool is_model_folder(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_regular_file(dir / "metadata.json", ec)) return false;
  try {
    std::ifstream in(dir / "metadata.json");
    return nlohmann::json::parse(in).value("format", "") == "umamba-model";
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace

ImportResult run_import(const ImportJob& job) {
#if !defined(UMAMBA_WITH_TORCH)
  (void)job;
  throw Unsupported("umamba import needs a build with LibTorch (configure with UMAMBA_TORCH=ON)");
#else
  UMAMBA_CHECK(!job.output.empty(), "import: no output folder given");
  const fs::path output = fs::absolute(job.output).lexically_normal();
  std::error_code ec;
  if (fs::exists(output, ec)) {
    UMAMBA_CHECK(job.overwrite,
                 "{}: already exists; choose another output folder or pass --overwrite",
                 output.string());
    UMAMBA_CHECK(is_model_folder(output),
                 "{}: exists and is not an umamba model folder; refusing to replace it",
                 output.string());
  }
  fs::create_directories(output.parent_path(), ec);
  const fs::path tmp = output.parent_path() / fmt::format(".{}.tmp-{}", output.filename().string(),
                                                          static_cast<long>(::getpid()));
  model::remove_tree(tmp.string());
  model::ImportOptions options;
  options.architecture = job.architecture;
  options.configuration = job.configuration;
  options.folds = job.folds;
  options.checkpoint = job.checkpoint;
  ImportResult result;
  result.output = output;
  try {
    log::info("import: reading {}", job.results.string());
    result.metadata = model::import_nnunet_results(job.results.string(), tmp.string(), options);
    if (fs::exists(output)) model::remove_tree(output.string());
    fs::rename(tmp, output);
  } catch (...) {
    try {
      model::remove_tree(tmp.string());
    } catch (const std::exception&) {
      // the original error matters more than a leftover temporary
    }
    throw;
  }
  log::info("import: wrote {}", output.string());
  return result;
#endif
}

std::string summarize_import(const ImportResult& r) {
  const auto& m = r.metadata;
  std::string s = fmt::format("model: {}\narchitecture: {} ({} configuration, trainer {})\n",
                              r.output.string(), m.value("architecture", "?"),
                              m.value("configuration", "?"), m.value("trainer", "?"));
  if (m.contains("folds")) {
    for (const auto& [fold, info] : m["folds"].items()) {
      s += fmt::format("fold {}: {} parameters, sha256 {}\n", fold,
                       info.value("parameters", int64_t{0}), info.value("sha256", std::string()));
    }
  }
  return s;
}

}  // namespace umamba::pipeline
