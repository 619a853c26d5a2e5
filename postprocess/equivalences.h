// Label equivalences across blocks or bands, resolved with Boost's disjoint sets.
//
// Provisional ids are numbered 1..size() so that ids follow the raster order of the first pixel of
// each block-local component (blocks in raster order, local labels in raster order inside a block).
// finish() then numbers the classes 1..N in the order of their smallest id, which is the raster
// order of each component's first pixel: the same numbering a serial labeller gives.
// Union by rank and path compression come from boost/pending/disjoint_sets.hpp.
#pragma once

#include <boost/pending/disjoint_sets.hpp>
#include <cstdint>
#include <vector>

#include "core/error.h"

namespace umamba::postprocess {

class Equivalences {
 public:
  // Adds `count` new ids; returns the offset to add to local labels 1..count.
  uint32_t add_block(uint32_t count) {
    const uint64_t offset = parent_.size() - 1;
    if (offset + count >= UINT32_MAX)
      throw Unsupported("connected components: more than 2^32-2 provisional labels");
    parent_.resize(offset + count + 1);
    rank_.resize(offset + count + 1, 0);
    for (uint64_t i = offset + 1; i <= offset + count; ++i) parent_[i] = static_cast<uint32_t>(i);
    return static_cast<uint32_t>(offset);
  }
  uint32_t size() const { return static_cast<uint32_t>(parent_.size() - 1); }

  void unite(uint32_t a, uint32_t b) {
    boost::disjoint_sets<uint8_t*, uint32_t*> sets(rank_.data(), parent_.data());
    sets.union_set(a, b);
  }

  // Final labels 1..N for every id (map[0] = 0); returns N.
  uint32_t finish(std::vector<uint32_t>& map) {
    boost::disjoint_sets<uint8_t*, uint32_t*> sets(rank_.data(), parent_.data());
    map.assign(parent_.size(), 0);
    std::vector<uint32_t> root_label(parent_.size(), 0);
    uint32_t n = 0;
    for (size_t i = 1; i < parent_.size(); ++i) {
      const uint32_t root = sets.find_set(static_cast<uint32_t>(i));
      if (root_label[root] == 0) root_label[root] = ++n;
      map[i] = root_label[root];
    }
    return n;
  }

 private:
  std::vector<uint32_t> parent_{0};
  std::vector<uint8_t> rank_{0};
};

}  // namespace umamba::postprocess
