// Errors: exceptions that say what is wrong and what to do.
//
// Library code never exits or aborts on bad input; it throws umamba::Error (or a subclass) with a
// message naming the file, the dimension or the value at fault. `main` catches, prints one line and
// returns non-zero. Destructors never throw.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace umamba {

// Any failure the user can act on: bad input, bad option, missing file, resource exhausted.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The input file itself is at fault (corrupt, truncated, inconsistent, unsupported).
class FileError : public Error {
 public:
  FileError(const std::string& path, const std::string& problem)
      : Error(path + ": " + problem), path_(path), problem_(problem) {}
  const std::string& path() const { return path_; }
  const std::string& problem() const { return problem_; }

 private:
  std::string path_;
  std::string problem_;
};

// A request the build or the machine cannot serve (format compiled out, no GPU, too much memory).
class Unsupported : public Error {
 public:
  using Error::Error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

template <typename... Args>
[[noreturn]] void fail_file(const std::string& path, fmt::format_string<Args...> format,
                            Args&&... args) {
  throw FileError(path, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace umamba

// Precondition on arguments: throws umamba::Error with the formatted message when `cond` is false.
#define UMAMBA_CHECK(cond, ...)               \
  do {                                        \
    if (!(cond)) ::umamba::fail(__VA_ARGS__); \
  } while (false)
