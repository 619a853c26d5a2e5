// JSON files read whole (see json_file.h).
#include "io/json_file.h"

#include <fstream>

#include "core/error.h"

namespace umamba::io {
namespace {

template <typename Json>
Json read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) fail_file(path.string(), "cannot be opened");
  try {
    return Json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail_file(path.string(), "is not valid JSON: {}", e.what());
  }
}

}  // namespace

nlohmann::json read_json_file(const std::filesystem::path& path) {
  return read_file<nlohmann::json>(path);
}

nlohmann::ordered_json read_ordered_json_file(const std::filesystem::path& path) {
  return read_file<nlohmann::ordered_json>(path);
}

}  // namespace umamba::io
