// NSD tolerance tables from JSON: see tolerances.h.
#include "metrics/tolerances.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace umamba::metrics {

namespace {

double positive(const nlohmann::json& v, const std::string& origin, const std::string& where) {
  if (!v.is_number()) fail_file(origin, "{} must be a number, got {}", where, v.dump());
  const double t = v.get<double>();
  if (!std::isfinite(t) || t < 0) fail_file(origin, "{} must be >= 0, got {}", where, t);
  return t;
}

}  // namespace

double ToleranceTable::at(int64_t label) const {
  const auto it = tolerance.find(label);
  if (it != tolerance.end()) return it->second;
  if (default_tolerance) return *default_tolerance;
  fail("no NSD tolerance for label {}: the table lists {} labels and no \"default\"", label,
       tolerance.size());
}

std::string ToleranceTable::name(int64_t label) const {
  const auto it = names.find(label);
  return it == names.end() ? std::string() : it->second;
}

ToleranceTable parse_tolerances(const std::string& text, const std::string& origin) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail_file(origin, "not valid JSON: {}", e.what());
  }
  if (!j.is_object()) fail_file(origin, "expected a JSON object with \"labels\"");
  ToleranceTable t;
  if (j.contains("unit")) {
    if (!j["unit"].is_string()) fail_file(origin, "\"unit\" must be a string");
    t.unit = j["unit"].get<std::string>();
  }
  if (j.contains("default")) t.default_tolerance = positive(j["default"], origin, "\"default\"");
  if (!j.contains("labels") || !j["labels"].is_object())
    fail_file(origin, "expected an object \"labels\" mapping label ids to tolerances");
  for (const auto& [key, value] : j["labels"].items()) {
    int64_t label = 0;
    try {
      size_t used = 0;
      label = std::stoll(key, &used);
      if (used != key.size()) throw std::invalid_argument(key);
    } catch (const std::exception&) {
      fail_file(origin, "label key \"{}\" is not an integer", key);
    }
    if (label <= 0) fail_file(origin, "label {} must be > 0 (0 is background)", label);
    const std::string where = "tolerance of label " + key;
    if (value.is_object()) {
      if (!value.contains("tolerance")) fail_file(origin, "label {} has no \"tolerance\"", key);
      t.tolerance[label] = positive(value["tolerance"], origin, where);
      if (value.contains("name") && value["name"].is_string())
        t.names[label] = value["name"].get<std::string>();
    } else {
      t.tolerance[label] = positive(value, origin, where);
    }
  }
  return t;
}

ToleranceTable load_tolerances(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) fail_file(path.string(), "cannot open the tolerance table");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_tolerances(ss.str(), path.string());
}

}  // namespace umamba::metrics
