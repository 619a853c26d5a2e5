// Joining band-wise labels across band faces (see band_merger.h).
#include "postprocess/band_merger.h"

#include <algorithm>
#include <array>
#include <utility>

#include "core/error.h"

namespace umamba::postprocess {

namespace {

// (dy, dx) offsets into the previous plane that touch a pixel of the current plane. In 2D a plane
// is a row and only dx is used.
std::vector<std::pair<int, int>> face_offsets(Connectivity c) {
  switch (c) {
    case Connectivity::C4:
    case Connectivity::C6:
      return {{0, 0}};
    case Connectivity::C8:
      return {{0, -1}, {0, 0}, {0, 1}};
    case Connectivity::C18:
      return {{-1, 0}, {0, -1}, {0, 0}, {0, 1}, {1, 0}};
    case Connectivity::C26: {
      std::vector<std::pair<int, int>> all;
      for (int dy = -1; dy <= 1; ++dy)
        for (int dx = -1; dx <= 1; ++dx) all.emplace_back(dy, dx);
      return all;
    }
  }
  return {};
}

}  // namespace

BandMerger::BandMerger(const Extents& whole, Connectivity connectivity)
    : whole_(whole), connectivity_(connectivity_from_int(to_int(connectivity), whole.is_3d())) {
  UMAMBA_CHECK(whole.x > 0 && whole.y > 0 && whole.z > 0,
               "band merger: empty image extents {}x{}x{}", whole.z, whole.y, whole.x);
  plane_pixels_ = whole.is_3d() ? whole.y * whole.x : whole.x;
  planes_total_ = whole.is_3d() ? whole.z : whole.y;
}

template <typename T>
void BandMerger::add_band(const uint32_t* labels, int64_t planes, uint32_t count, const T* values) {
  if (values == nullptr) {
    add_band(labels, planes, count);
    return;
  }
  UMAMBA_CHECK(planes >= 1, "band merger: a band needs at least one plane, got {}", planes);
  std::vector<int64_t> first(static_cast<size_t>(plane_pixels_));
  std::vector<int64_t> last(static_cast<size_t>(plane_pixels_));
  const T* last_plane = values + (planes - 1) * plane_pixels_;
  for (int64_t i = 0; i < plane_pixels_; ++i) {
    first[i] = static_cast<int64_t>(values[i]);
    last[i] = static_cast<int64_t>(last_plane[i]);
  }
  add_band_impl(labels, planes, count, first.data(), last.data());
}

void BandMerger::add_band(const uint32_t* labels, int64_t planes, uint32_t count) {
  add_band_impl(labels, planes, count, nullptr, nullptr);
}

void BandMerger::add_band_impl(const uint32_t* labels, int64_t planes, uint32_t count,
                               const int64_t* first_values, const int64_t* last_values) {
  UMAMBA_CHECK(!finished_, "band merger: add_band after finish()");
  UMAMBA_CHECK(planes >= 1, "band merger: a band needs at least one plane, got {}", planes);
  UMAMBA_CHECK(planes_seen_ + planes <= planes_total_,
               "band merger: band {} ({} planes from plane {}) runs past the image's {} planes",
               offsets_.size(), planes, planes_seen_, planes_total_);
  const bool with_values = first_values != nullptr;
  UMAMBA_CHECK(offsets_.empty() || with_values == has_values_,
               "band merger: band {} {} values but the first band {}", offsets_.size(),
               with_values ? "has" : "has no", has_values_ ? "had" : "had none");
  const size_t band = offsets_.size();
  const int64_t n = plane_pixels_;
  const uint32_t* last_plane = labels + (planes - 1) * n;
  for (int64_t i = 0; i < n; ++i) {
    UMAMBA_CHECK(labels[i] <= count && last_plane[i] <= count,
                 "band merger: band {} holds label {} above its count {}", band,
                 std::max(labels[i], last_plane[i]), count);
  }
  has_values_ = with_values;
  const uint32_t offset = eq_.add_block(count);
  offsets_.push_back(offset);
  counts_.push_back(count);
  if (band > 0) {
    const uint32_t previous_offset = offsets_[band - 1];
    const auto offsets = face_offsets(connectivity_);
    const int64_t rows = whole_.is_3d() ? whole_.y : 1;
    const int64_t width = whole_.x;
    uint64_t last_pair = 0;
    for (int64_t y = 0; y < rows; ++y) {
      for (int64_t x = 0; x < width; ++x) {
        const int64_t i = y * width + x;
        const uint32_t a = labels[i];
        if (a == 0) continue;
        for (const auto& [dy, dx] : offsets) {
          const int64_t yy = y + dy;
          const int64_t xx = x + dx;
          if (yy < 0 || yy >= rows || xx < 0 || xx >= width) continue;
          const int64_t j = yy * width + xx;
          const uint32_t b = last_face_[j];
          if (b == 0) continue;
          if (with_values && first_values[i] != last_face_values_[j]) continue;
          const uint64_t pair = (uint64_t{a} << 32) | b;
          if (pair == last_pair) continue;
          last_pair = pair;
          eq_.unite(offset + a, previous_offset + b);
        }
      }
    }
  }
  last_face_.assign(last_plane, last_plane + n);
  if (with_values) last_face_values_.assign(last_values, last_values + n);
  planes_seen_ += planes;
}

uint32_t BandMerger::finish() {
  UMAMBA_CHECK(!finished_, "band merger: finish() called twice");
  UMAMBA_CHECK(planes_seen_ == planes_total_,
               "band merger: the bands cover {} of the image's {} planes", planes_seen_,
               planes_total_);
  count_ = eq_.finish(map_);
  finished_ = true;
  return count_;
}

uint32_t BandMerger::final_label(size_t band, uint32_t local) const {
  UMAMBA_CHECK(finished_, "band merger: final_label before finish()");
  UMAMBA_CHECK(band < offsets_.size(), "band merger: no band {} (there are {})", band,
               offsets_.size());
  UMAMBA_CHECK(local <= counts_[band], "band merger: band {} has no label {} (count {})", band,
               local, counts_[band]);
  return local == 0 ? 0 : map_[offsets_[band] + local];
}

void BandMerger::relabel(size_t band, uint32_t* labels, int64_t pixels) const {
  UMAMBA_CHECK(finished_, "band merger: relabel before finish()");
  UMAMBA_CHECK(band < offsets_.size(), "band merger: no band {} (there are {})", band,
               offsets_.size());
  const uint32_t* m = map_.data() + offsets_[band];
  const uint32_t count = counts_[band];
  for (int64_t i = 0; i < pixels; ++i) {
    const uint32_t l = labels[i];
    UMAMBA_CHECK(l <= count, "band merger: band {} holds label {} above its count {}", band, l,
                 count);
    labels[i] = l == 0 ? 0 : m[l];
  }
}

#define UMAMBA_INSTANTIATE(T) \
  template void BandMerger::add_band<T>(const uint32_t*, int64_t, uint32_t, const T*);
UMAMBA_INSTANTIATE(uint8_t)
UMAMBA_INSTANTIATE(int8_t)
UMAMBA_INSTANTIATE(uint16_t)
UMAMBA_INSTANTIATE(int16_t)
UMAMBA_INSTANTIATE(uint32_t)
UMAMBA_INSTANTIATE(int32_t)
UMAMBA_INSTANTIATE(uint64_t)
UMAMBA_INSTANTIATE(int64_t)
#undef UMAMBA_INSTANTIATE

}  // namespace umamba::postprocess
