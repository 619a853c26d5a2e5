// JSON files read whole, with errors that name the file: FileError "cannot be opened" or "is not
// valid JSON: <parser's message>" (plans.json, dataset.json, checkpoints' sidecars, manifests).
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>

namespace umamba::io {

nlohmann::json read_json_file(const std::filesystem::path& path);
// Keeping the file's key order (dataset.json's labels, written back in the order they came).
nlohmann::ordered_json read_ordered_json_file(const std::filesystem::path& path);

}  // namespace umamba::io
