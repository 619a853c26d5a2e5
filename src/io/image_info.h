// What `umamba info FILE` prints: an ImageInfo as JSON and as readable lines.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

#include "io/image_io.h"

namespace umamba::io {

// {"path", "format", "shape": [C,Z,Y,X], "dtype", "spacing": [z,y,x], "unit", "origin": [x,y,z],
//  "direction": [9, row-major], "metadata": {...}}
nlohmann::json image_info_json(const std::filesystem::path& path, const ImageInfo& info);

// One fact per line, e.g. "shape [C,Z,Y,X]   1 x 100 x 100 x 100".
std::string format_image_info(const nlohmann::json& j);

}  // namespace umamba::io
