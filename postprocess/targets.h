// Three-class targets (0 background, 1 interior, 2 boundary) from instance labels, and instances
// back from three-class maps or class probabilities.
//
// Instances -> classes follows the NeurIPS 2022 CellSeg organisers' recipe
// (JunMa11/NeurIPS-CellSeg data/pre_process_3class.py, create_interior_map): boundary = skimage
// find_boundaries(labels, mode='inner') (a labelled pixel with a 4-neighbour (6 in 3D) of another
// value, background included; the image edge does not count, as skimage's 'reflect' border),
// dilated by disk(1) (the cross; ball(1) in 3D), which spreads one pixel outwards into the
// background and into touching neighbours; interior = labelled and not boundary, then interior
// pieces smaller than 16 pixels (4-connected) are dropped to background; boundary wins over
// interior. boundary_width = 2 is exactly that recipe; width w uses w - 1 dilations; spill = false
// keeps the band inside the instances.
//
// Classes -> instances has two modes.
//   plain:   the paper's (U-Mamba evaluation/compute_cell_metric.py): connected components of the
//            interior class only (8-connected in 2D, 26 in 3D by default); boundary pixels are
//            lost, so every cell shrinks by the band and cells without interior disappear.
//   reclaim: seeds = components of the interior; boundary pixels are handed to the seed that
//            reaches them first in a breadth-first growth restricted to the boundary class, in
//            order of distance (steps of the chosen connectivity; max_growth may bound them);
//            leftover boundary components become instances of their own (small cells whose
//            interior vanished); the one-pixel outward spill of the recipe is trimmed (boundary
//            pixels 4-adjacent to background); boundary-only instances below a minimum size are
//            dropped; holes (background regions enclosed by one instance, 4-/6-connected, not
//            touching the image edge) are filled; then a size filter and consecutive labels.
//
// Labels are renumbered 1..N in raster order of first appearance; Image results are U16 when
// N <= 65535, else U32.
#pragma once

#include <cstdint>

#include "core/image.h"
#include "postprocess/ccl.h"

namespace umamba::postprocess {

enum ThreeClass : uint8_t { kBackground = 0, kInterior = 1, kBoundary = 2 };

struct ClassTargetOptions {
  // 1: find_boundaries(mode='inner') alone; each further unit one more cross dilation.
  // 2 is the organisers' recipe.
  int boundary_width = 2;
  // true (recipe): the dilation may reach outside the instance; false: band inside instances.
  bool spill = true;
  // Interior pieces (4-/6-connected) smaller than this become background; 0 keeps all. Recipe: 16.
  int64_t min_interior_size = 16;
};

// labels: instance labels (any integer type, 0 background), extents e; classes: same extents.
template <typename L>
void instances_to_classes(const L* labels, const Extents& e, uint8_t* classes,
                          const ClassTargetOptions& options);
// One-channel integer image -> U8 three-class image [1,Z,Y,X] with the same geometry.
Image instances_to_classes(const Image& labels, const ClassTargetOptions& options);

enum class InstanceMode { Reclaim, Plain };
InstanceMode instance_mode_from_name(const std::string& name);  // "reclaim" or "plain"

struct InstanceOptions {
  InstanceMode mode = InstanceMode::Reclaim;
  // Seeds, growth steps and leftover components: 4/8 (2D), 6/18/26 (3D), 0 = full (8 or 26).
  int connectivity = 0;
  // Reclaim: growth steps into the boundary class (0: unlimited, the default: on round trips of
  // real and synthetic labels it scored at least as well as any limit from 2 to 6).
  int64_t max_growth = 0;
  // Reclaim: trim the one-pixel outward spill (boundary pixels 4-/6-adjacent to background).
  bool trim_spill = true;
  // Reclaim: instances made of boundary only are kept from this size (after trimming).
  int64_t min_boundary_only_size = 8;
  // Reclaim: fill holes enclosed by a single instance up to this size (0: any size).
  bool fill_holes = true;
  int64_t max_hole_size = 0;
  // Both modes: instances smaller than this are removed (0 keeps all: the paper's plain mode).
  int64_t min_size = 0;
  // Threads of the labelling steps (ccl.h: 1 serial, 0 TBB default).
  int threads = 1;
};

// classes: values 0, 1, 2 (anything else is an error naming the value and position). Writes
// labels 1..N (raster order) and returns N.
uint32_t classes_to_instances(const uint8_t* classes, const Extents& e, uint32_t* labels,
                              const InstanceOptions& options);
// Input: a one-channel integer class map, or class probabilities/logits [3,Z,Y,X] (floating
// point: the arg-max is taken, ties to the lower class). Output U16 or U32 [1,Z,Y,X].
Image classes_to_instances(const Image& classes_or_probabilities, const InstanceOptions& options,
                           uint32_t* count = nullptr);

// Arg-max over 3 channels (floating point) -> U8 classes [1,Z,Y,X]; a one-channel integer map is
// checked (values 0..2) and returned as U8.
Image class_map(const Image& classes_or_probabilities);

// ---- building blocks (raw buffers) ----

// Renumbers non-zero labels 1..N in raster order of first appearance; returns N.
uint32_t relabel_sequential(uint32_t* labels, int64_t pixels);
// Sets labels whose pixel count is below min_size to 0 (labels need not be consecutive).
void remove_small(uint32_t* labels, int64_t pixels, int64_t min_size);
// Fills background regions (4-/6-connected, not touching the image edge) whose labelled
// neighbours all belong to one label, up to max_hole_size pixels (0: any size).
void fill_holes(uint32_t* labels, const Extents& e, int64_t max_hole_size);
// U16 when count <= 65535 else U32, [1,Z,Y,X].
Image label_image(const uint32_t* labels, const Extents& e, uint32_t count,
                  const Geometry& geometry);

}  // namespace umamba::postprocess
