// Fault injection for tests (see fault_injection.h): parsing of UMAMBA_FAULT_INJECT and the call
// counters.
#include "core/fault_injection.h"

#include <cstdlib>
#include <memory>
#include <mutex>
#include <vector>

#include "core/error.h"

namespace umamba::fault {

namespace detail {
std::atomic<int> g_state{-1};
}

namespace {

struct Range {
  int64_t first = 0, last = 0;    // inclusive; last = INT64_MAX for "N+"
  std::string filter;             // "": every call of the kind; else calls whose subject has it
  std::atomic<int64_t> count{0};  // calls that matched `filter` (filtered ranges only)
};

struct Plan {
  std::vector<std::unique_ptr<Range>> ranges[kKinds];
  std::atomic<int64_t> counts[kKinds] = {};
};

std::mutex g_mutex;  // guards (re)configuration
Plan g_plan;

int64_t parse_count(std::string_view text, std::string_view entry) {
  if (text.empty() || text.size() > 18) fail("{}: bad entry '{}'", kEnvironmentVariable, entry);
  int64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      fail("{}: bad entry '{}' (expected kind:N, kind:N-M or kind:N+)", kEnvironmentVariable,
           entry);
    }
    v = v * 10 + (c - '0');
  }
  if (v < 1) fail("{}: bad entry '{}': calls count from 1", kEnvironmentVariable, entry);
  return v;
}

// Parses into `plan` (not yet active). Throws Error naming the bad entry.
void parse(std::string_view spec, Plan& plan) {
  for (auto& r : plan.ranges) r.clear();
  size_t pos = 0;
  while (pos <= spec.size()) {
    size_t end = spec.find(',', pos);
    if (end == std::string_view::npos) end = spec.size();
    std::string_view entry = spec.substr(pos, end - pos);
    while (!entry.empty() && entry.front() == ' ') entry.remove_prefix(1);
    while (!entry.empty() && entry.back() == ' ') entry.remove_suffix(1);
    pos = end + 1;
    if (entry.empty()) continue;
    const size_t colon = entry.find(':');
    if (colon == std::string_view::npos) {
      fail("{}: bad entry '{}' (expected kind:N, kind:N-M or kind:N+)", kEnvironmentVariable,
           entry);
    }
    const std::string_view name = entry.substr(0, colon);
    std::string_view when = entry.substr(colon + 1);
    auto r = std::make_unique<Range>();
    if (const size_t at = when.find('@'); at != std::string_view::npos) {
      r->filter = std::string(when.substr(at + 1));
      when = when.substr(0, at);
      if (r->filter.empty())
        fail("{}: empty filter after '@' in '{}'", kEnvironmentVariable, entry);
    }
    int kind = -1;
    for (int k = 0; k < kKinds; ++k) {
      if (name == kind_name(static_cast<Kind>(k))) kind = k;
    }
    if (kind < 0) {
      fail("{}: unknown kind '{}' in '{}' (expected read, write, rename or alloc)",
           kEnvironmentVariable, name, entry);
    }
    if (!when.empty() && when.back() == '+') {
      r->first = parse_count(when.substr(0, when.size() - 1), entry);
      r->last = INT64_MAX;
    } else if (const size_t dash = when.find('-'); dash != std::string_view::npos) {
      r->first = parse_count(when.substr(0, dash), entry);
      r->last = parse_count(when.substr(dash + 1), entry);
      if (r->last < r->first) fail("{}: bad range in '{}'", kEnvironmentVariable, entry);
    } else {
      r->first = r->last = parse_count(when, entry);
    }
    plan.ranges[kind].push_back(std::move(r));
  }
}

void install(std::string_view spec) {
  // Called with g_mutex held.
  parse(spec, g_plan);
  bool any = false;
  for (int k = 0; k < kKinds; ++k) {
    g_plan.counts[k].store(0);
    any = any || !g_plan.ranges[k].empty();
  }
  detail::g_state.store(any ? 1 : 0, std::memory_order_release);
}

}  // namespace

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::Read:
      return "read";
    case Kind::Write:
      return "write";
    case Kind::Rename:
      return "rename";
    case Kind::Alloc:
      return "alloc";
  }
  return "?";
}

void init_from_environment() {
  if (detail::g_state.load(std::memory_order_acquire) >= 0) return;
  std::lock_guard lock(g_mutex);
  if (detail::g_state.load(std::memory_order_acquire) >= 0) return;
  const char* env = std::getenv(kEnvironmentVariable);
  try {
    install(env == nullptr ? std::string_view() : std::string_view(env));
  } catch (...) {
    detail::g_state.store(0, std::memory_order_release);  // reported once, then inert
    throw;
  }
}

bool detail::should_fail_slow(Kind kind, std::string_view subject) {
  if (g_state.load(std::memory_order_acquire) < 0) init_from_environment();
  if (g_state.load(std::memory_order_acquire) == 0) return false;
  const int k = static_cast<int>(kind);
  const int64_t n = g_plan.counts[k].fetch_add(1) + 1;
  bool hit = false;
  for (const auto& r : g_plan.ranges[k]) {
    if (r->filter.empty()) {
      hit = hit || (n >= r->first && n <= r->last);
    } else if (subject.find(r->filter) != std::string_view::npos) {
      const int64_t m = r->count.fetch_add(1) + 1;
      hit = hit || (m >= r->first && m <= r->last);
    }
  }
  return hit;
}

void configure(std::string_view spec) {
  std::lock_guard lock(g_mutex);
  detail::g_state.store(0, std::memory_order_release);
  install(spec);
}

int64_t calls(Kind kind) {
  if (detail::g_state.load(std::memory_order_acquire) <= 0) return 0;
  return g_plan.counts[static_cast<int>(kind)].load();
}

}  // namespace umamba::fault
