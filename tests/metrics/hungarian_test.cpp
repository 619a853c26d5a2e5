// The assignment solver against exhaustive search over every assignment of small matrices.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "metrics/hungarian.h"

namespace um = umamba::metrics;

namespace {

double cost_of(const std::vector<double>& c, int64_t cols, const std::vector<int64_t>& a) {
  double s = 0;
  for (size_t r = 0; r < a.size(); ++r)
    if (a[r] >= 0) s += c[r * cols + a[r]];
  return s;
}

// Plain reference: every injective map of the smaller side into the larger.
double brute_force(const std::vector<double>& c, int64_t rows, int64_t cols) {
  double best = std::numeric_limits<double>::infinity();
  if (rows <= cols) {
    std::vector<int64_t> idx(cols);
    std::iota(idx.begin(), idx.end(), 0);
    do {
      double s = 0;
      for (int64_t r = 0; r < rows; ++r) s += c[r * cols + idx[r]];
      best = std::min(best, s);
    } while (std::next_permutation(idx.begin(), idx.end()));
  } else {
    std::vector<int64_t> idx(rows);
    std::iota(idx.begin(), idx.end(), 0);
    do {
      double s = 0;
      for (int64_t k = 0; k < cols; ++k) s += c[idx[k] * cols + k];
      best = std::min(best, s);
    } while (std::next_permutation(idx.begin(), idx.end()));
  }
  return best;
}

}  // namespace

TEST(Metrics_Hungarian, random_matrices_match_exhaustive_search) {
  std::mt19937 rng(4);
  std::uniform_real_distribution<double> u(-1, 0);
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t rows = 1 + trial % 6, cols = 1 + (trial / 6) % 6;
    std::vector<double> c(rows * cols);
    for (auto& x : c) x = (trial % 3 == 0) ? std::round(u(rng) * 3) : u(rng);  // ties too
    const auto a = um::min_cost_assignment(c, rows, cols);
    ASSERT_EQ(static_cast<int64_t>(a.size()), rows);
    std::vector<int> used(cols, 0);
    int64_t assigned = 0;
    for (int64_t x : a)
      if (x >= 0) {
        ASSERT_LT(x, cols);
        ASSERT_EQ(used[x]++, 0) << "column used twice";
        ++assigned;
      }
    EXPECT_EQ(assigned, std::min(rows, cols));
    EXPECT_NEAR(cost_of(c, cols, a), brute_force(c, rows, cols), 1e-12) << rows << "x" << cols;
  }
}

TEST(Metrics_Hungarian, empty_sides) {
  EXPECT_TRUE(um::min_cost_assignment({}, 0, 3).empty());
  EXPECT_EQ(um::min_cost_assignment({}, 2, 0), (std::vector<int64_t>{-1, -1}));
}
