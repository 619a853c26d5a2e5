// Test tool: answers sliding-window geometry queries with the engine's code, for the Python
// cross-check against nnU-Net's own formulas (crosscheck_geometry.py).
//   stdin:  {"steps": [[size, tile, step], ...], "gaussian": [[pz, py, px], ...]}
//   stdout: {"steps": [[positions...], ...], "gaussian": [[values (float16 map as f32)...], ...]}
#include <nlohmann/json.hpp>

#include <exception>
#include <iostream>

#include "engine/sliding_window.h"

int main() {
  try {
    const nlohmann::json in = nlohmann::json::parse(std::cin);
    nlohmann::json out;
    out["steps"] = nlohmann::json::array();
    for (const auto& q : in.at("steps")) {
      out["steps"].push_back(umamba::engine::compute_steps(q[0].get<int64_t>(), q[1].get<int64_t>(),
                                                           q[2].get<double>()));
    }
    out["gaussian"] = nlohmann::json::array();
    for (const auto& q : in.at("gaussian")) {
      out["gaussian"].push_back(umamba::engine::gaussian_importance_map(
          {q[0].get<int64_t>(), q[1].get<int64_t>(), q[2].get<int64_t>()}));
    }
    std::cout << out.dump() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "engine_geometry_dump: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
