// Logging: one plain line per event on standard error, so batch logs (SLURM) stay readable.
//
// This header is a facade over spdlog that includes only fmt: translation units that see LibTorch's
// include folder get LibTorch's bundled fmt (compiled header-only there), and must never include
// spdlog, whose Debian build is tied to Debian's fmt. The sink lives in log.cpp.
#pragma once

#include <fmt/format.h>

#include <string_view>
#include <utility>

namespace umamba::log {

enum class Level { Trace, Debug, Info, Warn, Error, Off };

// level: "trace", "debug", "info", "warn", "error" or "off"; throws Error on anything else.
void init(std::string_view level);
bool enabled(Level level);
void write(Level level, std::string_view message);

template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::Debug)) write(Level::Debug, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::Info)) write(Level::Info, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::Warn)) write(Level::Warn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::Error)) write(Level::Error, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace umamba::log
