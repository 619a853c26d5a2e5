// Joins connected components across the bands of an image that is labelled band by band (a slide
// streamed in Y bands, a volume in Z slabs), so that the result equals labelling the whole image.
//
// Method: the caller labels each band alone (label_components over the band's rows gives local
// labels 1..count in the band's raster order). add_band() gives the band's ids an offset and joins
// the ids of touching pixels across the face with the previous band (the last row of a 2D band or
// the last slice of a 3D band, kept by the merger), through Boost's disjoint sets. finish() numbers
// the components 1..N in raster order of their first pixel, the numbering of whole-image
// labelling; relabel() then rewrites each band's local labels in place.
//
// Limits: bands come in order and tile the image along Y (2D, z = 1) or Z (3D); a 3D band holds
// whole slices. Memory: one face (row or slice) of labels and values, plus 8 bytes per local id.
#pragma once

#include <cstdint>
#include <vector>

#include "postprocess/ccl.h"
#include "postprocess/equivalences.h"

namespace umamba::postprocess {

class BandMerger {
 public:
  // `whole`: extents of the whole image. `connectivity` must be the one the bands were labelled
  // with.
  BandMerger(const Extents& whole, Connectivity connectivity);

  // The next band, `planes` rows (2D) or slices (3D) tall, holding `labels` (contiguous, local
  // labels 1..count, 0 background). `values` (same layout) is the input the band was labelled
  // from in multi-label mode: then only equal values connect across the face. Without values any
  // two foreground pixels that touch connect (binary mode).
  template <typename T>
  void add_band(const uint32_t* labels, int64_t planes, uint32_t count, const T* values);
  void add_band(const uint32_t* labels, int64_t planes, uint32_t count);

  // Resolves the equivalences after the last band; returns N. Throws if the bands do not cover
  // the image.
  uint32_t finish();

  size_t band_count() const { return offsets_.size(); }
  uint32_t component_count() const { return count_; }
  // Final label of local label `local` (0..count) of band `band`; valid after finish().
  uint32_t final_label(size_t band, uint32_t local) const;
  // Rewrites a band's local labels with the final ones, in place (`pixels` = its pixel count).
  void relabel(size_t band, uint32_t* labels, int64_t pixels) const;

 private:
  void add_band_impl(const uint32_t* labels, int64_t planes, uint32_t count,
                     const int64_t* face_values_first, const int64_t* face_values_last);

  Extents whole_;
  Connectivity connectivity_;
  int64_t plane_pixels_;  // pixels of one plane: X in 2D, Y*X in 3D
  int64_t planes_total_;  // Y in 2D, Z in 3D
  int64_t planes_seen_ = 0;
  bool finished_ = false;
  bool has_values_ = false;
  Equivalences eq_;
  std::vector<uint32_t> offsets_;
  std::vector<uint32_t> counts_;
  std::vector<uint32_t> last_face_;        // labels of the previous band's last plane
  std::vector<int64_t> last_face_values_;  // its values (multi-label mode)
  std::vector<uint32_t> map_;
  uint32_t count_ = 0;
};

}  // namespace umamba::postprocess
