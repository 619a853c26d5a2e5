// Sharding (see shard.h).
#include "pipeline/shard.h"

#include <fmt/format.h>

#include <charconv>

#include "core/error.h"

namespace umamba::pipeline {

namespace {

bool parse_int(const std::string& s, int64_t& value) {
  if (s.empty()) return false;
  const char* first = s.data();
  const char* last = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(first, last, value);
  return ec == std::errc() && ptr == last;
}

int64_t env_int(const GetEnv& getenv, const char* name, bool required, int64_t fallback) {
  const char* v = getenv(name);
  if (v == nullptr || *v == '\0') {
    UMAMBA_CHECK(!required, "SLURM_ARRAY_TASK_ID is set but {} is not; pass --shard i/N", name);
    return fallback;
  }
  int64_t value = 0;
  UMAMBA_CHECK(parse_int(v, value), "{}='{}' is not an integer; pass --shard i/N", name, v);
  return value;
}

}  // namespace

std::string Shard::name() const {
  return fmt::format("{}/{}", index, count);
}

Shard parse_shard(const std::string& text) {
  const size_t slash = text.find('/');
  int64_t i = 0, n = 0;
  UMAMBA_CHECK(slash != std::string::npos && parse_int(text.substr(0, slash), i) &&
                   parse_int(text.substr(slash + 1), n),
               "--shard '{}': expected i/N, e.g. 0/4 (part i of N, counted from 0)", text);
  UMAMBA_CHECK(n >= 1, "--shard '{}': N must be at least 1", text);
  UMAMBA_CHECK(i >= 0 && i < n, "--shard '{}': i must lie in 0..{} (parts count from 0)", text,
               n - 1);
  return {i, n, "flag"};
}

Shard shard_from_slurm(const GetEnv& getenv) {
  const char* id_text = getenv("SLURM_ARRAY_TASK_ID");
  if (id_text == nullptr || *id_text == '\0') return {};
  const int64_t id = env_int(getenv, "SLURM_ARRAY_TASK_ID", true, 0);
  const int64_t count = env_int(getenv, "SLURM_ARRAY_TASK_COUNT", true, 0);
  const int64_t min = env_int(getenv, "SLURM_ARRAY_TASK_MIN", false, 0);
  const int64_t step = env_int(getenv, "SLURM_ARRAY_TASK_STEP", false, 1);
  UMAMBA_CHECK(count >= 1, "SLURM_ARRAY_TASK_COUNT={} must be at least 1", count);
  UMAMBA_CHECK(step >= 1, "SLURM_ARRAY_TASK_STEP={} must be at least 1", step);
  UMAMBA_CHECK(id >= min && (id - min) % step == 0 && (id - min) / step < count,
               "SLURM array task {} (min {}, step {}, count {}) does not map to a part 0..{}; an "
               "array given as an irregular list needs --shard i/N",
               id, min, step, count, count - 1);
  return {(id - min) / step, count, "slurm"};
}

Shard resolve_shard(const std::string& flag, const GetEnv& getenv) {
  if (!flag.empty()) return parse_shard(flag);
  return shard_from_slurm(getenv);
}

}  // namespace umamba::pipeline
