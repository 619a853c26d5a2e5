// The few NumPy / Python numerics the nnU-Net planner depends on, reproduced bit for bit so that
// our plans equal nnU-Net's on the same fingerprint.
//
// What: Python's round() (half to even), np.median (mean of the two middle values), np.percentile
// with the default "linear" method (Hyndman & Fan type 7, NumPy's virtual-index and two-sided
// lerp formulas), and the legacy np.random.RandomState(seed).choice(n, k, replace=True) index
// stream (MT19937 seeded with init_genrand, masked rejection sampling of 32-bit draws, as in
// NumPy's legacy `random_bounded_uint64_fill`).
// Limits: values are doubles; percentiles of float32 arrays in NumPy are computed in float32 and
// may differ from ours in the last float32 digit.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace umamba::plan::numpy {

// Python's round(x) for floats: nearest integer, ties to even.
int64_t round_half_even(double x);

// np.median: the middle value, or the mean of the two middle values. `values` need not be sorted.
double median(std::vector<double> values);

// np.percentile(values, q) with the default linear method; q in [0, 100]. Need not be sorted.
double percentile(std::vector<double> values, double q);
// The same on values already sorted ascending.
double percentile_sorted(std::span<const double> sorted, double q);
// Linear percentile over a sorted multiset given as (value, count) runs; `total` = sum of counts.
// Equals percentile() on the expanded array.
struct WeightedValue {
  double value;
  uint64_t count;
};
double percentile_weighted(std::span<const WeightedValue> sorted_runs, uint64_t total, double q);
// The value at rank `index` (0-based) of the expanded sorted multiset.
double value_at_rank(std::span<const WeightedValue> sorted_runs, uint64_t index);

// np.random.RandomState(seed): draws indices in [0, n) like `choice(n, k, replace=True)`.
class LegacyRandomState {
 public:
  explicit LegacyRandomState(uint32_t seed) : mt_(seed) {}
  // One index in [0, n); n >= 1. Consumes no draw when n == 1 (as NumPy).
  uint64_t bounded(uint64_t n);
  // `count` indices in [0, n) (the same stream as `count` calls of bounded), each passed to
  // `sink(index)`; the mask is computed once.
  template <typename Sink>
  void bounded_many(uint64_t n, uint64_t count, Sink&& sink) {
    const uint64_t rng = n - 1;
    if (n <= 1 || rng > 0xFFFFFFFEull) {
      for (uint64_t k = 0; k < count; ++k) sink(bounded(n));
      return;
    }
    const uint32_t mask = static_cast<uint32_t>(mask_for(rng));
    const uint32_t limit = static_cast<uint32_t>(rng);
    for (uint64_t k = 0; k < count; ++k) {
      uint32_t value;
      do {
        value = static_cast<uint32_t>(mt_()) & mask;
      } while (value > limit);
      sink(value);
    }
  }
  static uint64_t mask_for(uint64_t rng);

 private:
  std::mt19937 mt_;
};

}  // namespace umamba::plan::numpy
