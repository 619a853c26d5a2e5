// NumPy / Python numerics for the planner; see numpy_compat.h. Formulas follow NumPy 2.x
// (`_quantile`, `_get_indexes`, `_lerp` in numpy/lib/_function_base_impl.py; legacy bounded
// integers in numpy/random/src/distributions/distributions.c).
#include "plan/numpy_compat.h"

#include <algorithm>
#include <cfenv>
#include <cmath>

#include "core/error.h"

namespace umamba::plan::numpy {

int64_t round_half_even(double x) {
  // nearbyint honours the current rounding mode, which is round-to-nearest-even by default.
  return static_cast<int64_t>(std::nearbyint(x));
}

double median(std::vector<double> values) {
  UMAMBA_CHECK(!values.empty(), "median of an empty list");
  const size_t n = values.size();
  std::sort(values.begin(), values.end());
  if (n % 2 == 1) return values[n / 2];
  return (values[n / 2 - 1] + values[n / 2]) / 2.0;
}

namespace {

// NumPy's _lerp: a + (b-a)·t, or b - (b-a)·(1-t) when t >= 0.5.
double lerp(double a, double b, double t) {
  const double diff = b - a;
  if (t >= 0.5) return b - diff * (1.0 - t);
  return a + diff * t;
}

struct VirtualIndex {
  uint64_t previous;
  uint64_t next;
  double gamma;
};

VirtualIndex virtual_index(uint64_t n, double q) {
  UMAMBA_CHECK(n > 0, "percentile of an empty list");
  UMAMBA_CHECK(q >= 0.0 && q <= 100.0, "percentile {} is outside [0, 100]", q);
  const double quantile = q / 100.0;
  const double virt = static_cast<double>(n - 1) * quantile;
  const double prev = std::floor(virt);
  VirtualIndex v{};
  v.gamma = virt - prev;
  if (virt >= static_cast<double>(n - 1)) {
    v.previous = v.next = n - 1;
  } else {
    v.previous = static_cast<uint64_t>(prev);
    v.next = v.previous + 1;
  }
  return v;
}

}  // namespace

double percentile_sorted(std::span<const double> sorted, double q) {
  const VirtualIndex v = virtual_index(sorted.size(), q);
  return lerp(sorted[v.previous], sorted[v.next], v.gamma);
}

double percentile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  return percentile_sorted(values, q);
}

double value_at_rank(std::span<const WeightedValue> sorted_runs, uint64_t index) {
  uint64_t seen = 0;
  for (const auto& run : sorted_runs) {
    seen += run.count;
    if (index < seen) return run.value;
  }
  fail("rank {} is beyond the {} values of the multiset", index, seen);
}

double percentile_weighted(std::span<const WeightedValue> sorted_runs, uint64_t total, double q) {
  const VirtualIndex v = virtual_index(total, q);
  const double a = value_at_rank(sorted_runs, v.previous);
  const double b = v.next == v.previous ? a : value_at_rank(sorted_runs, v.next);
  return lerp(a, b, v.gamma);
}

uint64_t LegacyRandomState::mask_for(uint64_t rng) {
  // Smallest all-ones mask covering rng.
  uint64_t mask = rng;
  mask |= mask >> 1;
  mask |= mask >> 2;
  mask |= mask >> 4;
  mask |= mask >> 8;
  mask |= mask >> 16;
  mask |= mask >> 32;
  return mask;
}

uint64_t LegacyRandomState::bounded(uint64_t n) {
  UMAMBA_CHECK(n >= 1, "cannot draw from an empty range");
  const uint64_t rng = n - 1;
  if (rng == 0) return 0;
  const uint64_t mask = mask_for(rng);
  if (rng <= 0xFFFFFFFFull) {
    if (rng == 0xFFFFFFFFull) return mt_();
    uint64_t value;
    do {
      value = static_cast<uint32_t>(mt_()) & mask;
    } while (value > rng);
    return value;
  }
  uint64_t value;
  do {
    const uint64_t hi = mt_();
    const uint64_t lo = mt_();
    value = ((hi << 32) | lo) & mask;
  } while (value > rng);
  return value;
}

}  // namespace umamba::plan::numpy
