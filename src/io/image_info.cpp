#include "io/image_info.h"

#include <fmt/format.h>

namespace umamba::io {

nlohmann::json image_info_json(const std::filesystem::path& path, const ImageInfo& info) {
  nlohmann::json j;
  j["path"] = path.string();
  j["format"] = info.format;
  j["shape"] = {info.shape.c, info.shape.z, info.shape.y, info.shape.x};
  j["dtype"] = std::string(dtype_name(info.dtype));
  const Geometry& g = info.geometry;
  j["spacing"] = {g.spacing[0], g.spacing[1], g.spacing[2]};
  j["unit"] = g.unit;
  j["origin"] = {g.origin[0], g.origin[1], g.origin[2]};
  j["direction"] = g.direction;
  nlohmann::json meta = nlohmann::json::object();
  for (const auto& [k, v] : info.metadata) meta[k] = v;
  j["metadata"] = meta;
  return j;
}

std::string format_image_info(const nlohmann::json& j) {
  auto nums = [](const nlohmann::json& a, const char* sep) {
    std::string s;
    for (size_t i = 0; i < a.size(); ++i) {
      if (i) s += sep;
      s += a[i].is_number_integer() ? std::to_string(a[i].get<int64_t>())
                                    : fmt::format("{:.6g}", a[i].get<double>());
    }
    return s;
  };
  std::string out = fmt::format("{}\n", j.at("path").get<std::string>());
  auto line = [&](const std::string& key, const std::string& value) {
    out += fmt::format("  {:<22} {}\n", key, value);
  };
  line("format", j.at("format").get<std::string>());
  line("shape [C,Z,Y,X]", nums(j.at("shape"), " x "));
  line("dtype", j.at("dtype").get<std::string>());
  const std::string unit = j.at("unit").get<std::string>();
  line("spacing [Z,Y,X]", nums(j.at("spacing"), ", ") + " " + (unit.empty() ? "(no unit)" : unit));
  line("origin (x,y,z)", nums(j.at("origin"), ", "));
  const auto& d = j.at("direction");
  line("direction (rows)", fmt::format("[{}; {}; {}]", nums(nlohmann::json{d[0], d[1], d[2]}, ", "),
                                       nums(nlohmann::json{d[3], d[4], d[5]}, ", "),
                                       nums(nlohmann::json{d[6], d[7], d[8]}, ", ")));
  for (const auto& [k, v] : j.at("metadata").items()) {
    if (k == "source.path") continue;
    std::string value = v.get<std::string>();
    for (char& c : value) {
      if (c == '\n' || c == '\r') c = ' ';
    }
    if (value.size() > 120) value = value.substr(0, 117) + "...";
    line(k, value);
  }
  return out;
}

}  // namespace umamba::io
