#include "core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "core/error.h"

namespace umamba::log {
namespace {

spdlog::level::level_enum to_spdlog(Level level) {
  switch (level) {
    case Level::Trace:
      return spdlog::level::trace;
    case Level::Debug:
      return spdlog::level::debug;
    case Level::Info:
      return spdlog::level::info;
    case Level::Warn:
      return spdlog::level::warn;
    case Level::Error:
      return spdlog::level::err;
    case Level::Off:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

std::shared_ptr<spdlog::logger>& logger() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    auto l = spdlog::stderr_color_mt("umamba");
    l->set_pattern("[%H:%M:%S] %^%l%$: %v");
    l->set_level(spdlog::level::info);
    return l;
  }();
  return instance;
}

}  // namespace

void init(std::string_view level) {
  const auto parsed = spdlog::level::from_str(std::string(level));
  // spdlog maps unknown names to "off"; accept "off" only when it was asked for.
  if (parsed == spdlog::level::off && level != "off") {
    fail("unknown log level '{}' (expected trace, debug, info, warn, error or off)", level);
  }
  logger()->set_level(parsed);
}

bool enabled(Level level) {
  return logger()->should_log(to_spdlog(level));
}

void write(Level level, std::string_view message) {
  logger()->log(to_spdlog(level), message);
}

}  // namespace umamba::log
