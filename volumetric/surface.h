// Surfaces of binary masks as DeepMind's surface-distance defines them (Nikolov et al., "Clinically
// applicable segmentation of head and neck anatomy for radiotherapy", arXiv:1809.04430; the
// definition FLARE, U-Mamba and MONAI with use_subvoxels=True measure NSD by).
//
// The surface lives on the voxel-corner grid, shifted by −½ voxel on every axis: corner (i,j,k)
// sees the 2×2×2 voxels (i−1..i, j−1..j, k−1..k) and packs them into a neighbour code, bit
// 128 >> (4a + 2b + c) for voxel (i−1+a, j−1+b, k−1+c) (2D: 8 >> (2b + c) for pixel
// (j−1+b, k−1+c)). A corner is a surface point when its code is neither 0 nor all ones. Its
// measure is, in 3D, the area of the marching-cubes triangles of that code with the voxel
// spacing applied to their normals (n0·s1·s2, n1·s0·s2, n2·s0·s1), and in 2D the length of the
// contour piece: a straight edge s0 or s1, a corner cut ½·√(s0²+s1²), twice that for a saddle.
//
// Limits: the corner grid has one more element than the mask on each axis ((Z+1)(Y+1)(X+1)
// codes; a 2D mask, Z = 1, has (Y+1)(X+1)); masks are 0/non-zero bytes, [Z,Y,X] contiguous.
#pragma once

#include <cstdint>
#include <vector>

#include "volumetric/extents.h"

namespace umamba::volumetric {

// Extents of the corner grid of a mask: Z+1 (1 for a 2D mask), Y+1, X+1.
Extents corner_extents(const Extents& mask_extents);

// Neighbour codes of `mask` on its corner grid (corner_extents(e).count() bytes). Parallel (TBB).
void neighbour_codes(const uint8_t* mask, const Extents& e, uint8_t* codes);

// Measure of every code for this spacing [Z,Y,X]: 256 surfel areas (3D, units²) or 16 contour
// lengths (2D, from spacing[1], spacing[2]; units). Codes 0 and all-ones measure 0.
std::vector<double> surface_measure_table(bool is_3d, const Spacing& spacing);

// The surfel normals of a 3D code in eighths of a voxel face (for tests): up to 4 {n0,n1,n2}.
struct SurfelNormals {
  int8_t n[4][3];
};
const SurfelNormals& surfel_normals(uint8_t code);

inline bool is_surface_code(uint8_t code, bool is_3d) {
  return code != 0 && code != (is_3d ? 0xFF : 0x0F);
}

}  // namespace umamba::volumetric
