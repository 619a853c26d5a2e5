// Hungarian algorithm: see hungarian.h.
#include "metrics/hungarian.h"

#include <limits>

#include "core/error.h"

namespace umamba::metrics {

namespace {

// rows <= cols. a(i, j) with 1-based potentials u (rows) and v (cols); p[j] = row matched to col j.
std::vector<int64_t> solve(const std::vector<double>& cost, int64_t n, int64_t m, bool transposed,
                           int64_t stride_rows) {
  auto a = [&](int64_t i, int64_t j) {  // 0-based
    return transposed ? cost[j * stride_rows + i] : cost[i * stride_rows + j];
  };
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> u(n + 1, 0), v(m + 1, 0), minv(m + 1);
  std::vector<int64_t> p(m + 1, 0), way(m + 1, 0);
  std::vector<char> used(m + 1);
  for (int64_t i = 1; i <= n; ++i) {
    p[0] = i;
    int64_t j0 = 0;
    std::fill(minv.begin(), minv.end(), inf);
    std::fill(used.begin(), used.end(), 0);
    do {
      used[j0] = 1;
      const int64_t i0 = p[j0];
      double delta = inf;
      int64_t j1 = 0;
      for (int64_t j = 1; j <= m; ++j) {
        if (used[j]) continue;
        const double cur = a(i0 - 1, j - 1) - u[i0] - v[j];
        if (cur < minv[j]) {
          minv[j] = cur;
          way[j] = j0;
        }
        if (minv[j] < delta) {
          delta = minv[j];
          j1 = j;
        }
      }
      for (int64_t j = 0; j <= m; ++j) {
        if (used[j]) {
          u[p[j]] += delta;
          v[j] -= delta;
        } else {
          minv[j] -= delta;
        }
      }
      j0 = j1;
    } while (p[j0] != 0);
    do {
      const int64_t j1 = way[j0];
      p[j0] = p[j1];
      j0 = j1;
    } while (j0 != 0);
  }
  std::vector<int64_t> row_to_col(n, -1);
  for (int64_t j = 1; j <= m; ++j)
    if (p[j] != 0) row_to_col[p[j] - 1] = j - 1;
  return row_to_col;
}

}  // namespace

std::vector<int64_t> min_cost_assignment(const std::vector<double>& cost, int64_t rows,
                                         int64_t cols) {
  UMAMBA_CHECK(rows >= 0 && cols >= 0 && static_cast<int64_t>(cost.size()) == rows * cols,
               "assignment: cost matrix has {} entries, expected {}x{}", cost.size(), rows, cols);
  if (rows == 0 || cols == 0) return std::vector<int64_t>(rows, -1);
  if (rows <= cols) return solve(cost, rows, cols, false, cols);
  // More rows than columns: solve the transpose (columns as rows), then invert.
  const auto col_to_row = solve(cost, cols, rows, true, cols);
  std::vector<int64_t> row_to_col(rows, -1);
  for (int64_t c = 0; c < cols; ++c)
    if (col_to_row[c] >= 0) row_to_col[col_to_row[c]] = c;
  return row_to_col;
}

}  // namespace umamba::metrics
