// Minimum-cost assignment of a dense rectangular cost matrix (the problem
// scipy.optimize.linear_sum_assignment solves), used where the matching of cells cannot be
// decided pair by pair (IoU thresholds below ½).
//
// Method: the Hungarian algorithm with potentials and shortest augmenting paths (Kuhn 1955,
// Munkres 1957; the O(n²m) form of Jonker & Volgenant 1987), written for rows ≤ columns and
// transposed otherwise.
//
// Limits: dense, O(min(r,c)²·max(r,c)) time and O(r·c) memory: callers keep matrices small (one
// connected component of overlapping cells at a time). Every row (or column, whichever is fewer)
// is assigned.
#pragma once

#include <cstdint>
#include <vector>

namespace umamba::metrics {

// cost: rows × cols, row-major. Returns for every row the assigned column, or -1 (rows > cols).
std::vector<int64_t> min_cost_assignment(const std::vector<double>& cost, int64_t rows,
                                         int64_t cols);

}  // namespace umamba::metrics
