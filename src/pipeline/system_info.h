// The facts `umamba info` prints and every run manifest records: this build's version and options,
// the libraries it runs on, and the devices it sees.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace umamba::pipeline {

nlohmann::json system_info();

// Human-readable rendering of system_info(), one fact per line.
std::string format_system_info(const nlohmann::json& info);

}  // namespace umamba::pipeline
