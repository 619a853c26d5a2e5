// NSD tolerance tables: per-label tolerances in physical units, read from JSON
// (configs/nsd_tolerances_abdomen.json holds the FLARE22 / U-Mamba abdomen table).
//
// Format:
//   { "unit": "mm",
//     "default": 2,                                   (optional: labels not listed)
//     "labels": { "1": {"name": "liver", "tolerance": 5}, "2": 3, ... } }
// A label entry is either a number or an object with "tolerance" (and optionally "name").
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

namespace umamba::metrics {

struct ToleranceTable {
  std::string unit;                         // as written in the file ("mm"); may be empty
  std::optional<double> default_tolerance;  // for labels not listed
  std::map<int64_t, double> tolerance;      // label -> tolerance
  std::map<int64_t, std::string> names;     // label -> name, where given

  // Tolerance of `label`; throws Error naming the label when it has none.
  double at(int64_t label) const;
  std::string name(int64_t label) const;  // "" when unnamed
};

// Throws FileError naming the file and the entry at fault.
ToleranceTable load_tolerances(const std::filesystem::path& path);
// The same from JSON text (`origin` names it in errors).
ToleranceTable parse_tolerances(const std::string& json_text, const std::string& origin);

}  // namespace umamba::metrics
