// Internal: the parameter blocks the selective-scan kernels receive, and the per-dtype launchers
// (one translation unit each: selective_scan_{fp32,bf16,fp16}.cu). Host code only sees this header;
// the kernels themselves are in selective_scan_kernels.cuh.
#pragma once

#include <cstdint>

#include "cuda/selective_scan.h"

namespace umamba::cuda::detail {

constexpr int kFwdItems = 16;  // steps one forward thread owns on one-tile rows (8 up to 256 steps)
constexpr int kLongItems = 8;  // ... on long rows (forward and backward): a warp tile = kStateChunk
constexpr int kBwdItems = kLongItems;
constexpr int kFwdWarps = 4;  // warps per forward block (short rows: independent; long: one batch)
constexpr int kBwdWarps = 4;  // warps per backward block (channels of one batch, same time range)
constexpr int kBwdSmemState = 16;  // dB/dC block reduction in shared memory up to this nstate
constexpr int kReduceBlock = 1;   // BwdParams::reduce: dB/dC summed over the block in shared memory
constexpr int kReduceWarp = 2;    // ... added by each warp with coalesced global atomics
constexpr int kReduceDirect = 3;  // ... added by each lane from registers (4-float atomics on
                                  // whole aligned tiles, else as kReduceWarp)

struct FwdParams {
  int batch, dim, len, nstate;
  int lanes;        // threads per row: 32, or a power of two below 32 for short rows (one tile)
  int items;        // time steps per thread: one tile 8 or kFwdItems (16), long rows kLongItems
  bool one_tile;    // the one-tile (short-row) kernel
  int state_split;  // short rows: warps sharing rows, each a share of the states (1, 2, 4)
  int segments;     // segments per row (lanes == 32 only)
  int seg_len;      // multiple of the tile, kStateChunk
  int pieces;       // summary pieces per segment (seg_len / pieces a multiple of kStateChunk)
  int chunks;       // saved states per row (0 when len <= kStateChunk)
  bool softplus;
  bool vec;  // every row and B/C plane allows 16-byte accesses
  const void* u;
  std::int64_t u_sb, u_sd;
  const void* delta;
  std::int64_t dl_sb, dl_sd;
  const float* A;
  const void* B;
  std::int64_t B_sb, B_sn;
  const void* C;
  std::int64_t C_sb, C_sn;
  const float* D;
  const void* z;
  std::int64_t z_sb, z_sd;
  const float* delta_bias;
  void* out;
  std::int64_t o_sb, o_sd;
  float* states;   // [batch*dim, chunks, nstate] or nullptr
  float* summary;  // [batch*dim, segments * pieces, nstate + 1] (segments > 1)
};

struct BwdParams {
  int batch, dim, len, nstate;
  int lanes;
  int segments;
  int seg_len;        // multiple of kStateChunk
  int rows_per_warp;  // R (long rows only)
  int state_split;    // long rows, warp atomics: warps sharing a channel, each a share of states
  int blocks_per_sm;  // register budget of the long-row kernel: 2, 3 or 4 blocks per SM
  int reduce;         // kReduceBlock (nstate <= kBwdSmemState only), kReduceWarp or kReduceDirect
  int chunks;
  bool softplus;
  bool vec;
  bool vec_dbc;  // dB and dC rows 16-byte aligned (len % 4 == 0): 4-float atomics
  const void* u;
  std::int64_t u_sb, u_sd;
  const void* delta;
  std::int64_t dl_sb, dl_sd;
  const float* A;
  const void* B;
  std::int64_t B_sb, B_sn;
  const void* C;
  std::int64_t C_sb, C_sn;
  const float* D;
  const void* z;
  std::int64_t z_sb, z_sd;
  const float* delta_bias;
  const float* states;
  const void* dout;
  std::int64_t do_sb, do_sd;
  void* du;
  std::int64_t du_sb, du_sd;
  void* ddelta;
  std::int64_t dd_sb, dd_sd;
  void* dz;
  std::int64_t dz_sb, dz_sd;
  float* dA;
  float* dB;
  float* dC;
  float* dD;
  float* ddelta_bias;
  float* summary;  // [batch*dim, segments, nstate + 1]
};

// Dynamic shared memory of the backward kernel (bytes): for long rows, the dB/dC tile accumulators
// (when nstate <= kBwdSmemState) and per-row adjoint carries, dA sums, dD and ddelta_bias sums.
inline int bwd_smem_bytes(const BwdParams& p) {
  if (p.lanes < 32) return 0;
  // Block reduction: dB/dC tile accumulators and the per-warp slots that feed them (double
  // buffered). Warp atomics: one slot per warp, where the warp transposes its values for
  // coalesced atomics.
  const int red = p.reduce != kReduceBlock ? kBwdWarps * 2 * kStateChunk
                  : p.nstate <= kBwdSmemState
                      ? 2 * kBwdSmemState * kStateChunk + 2 * kBwdWarps * 2 * kStateChunk
                      : 0;
  const int per_row = kBwdWarps * p.rows_per_warp * (2 * p.nstate + 2);
  const int stage = 2 * 16 * (32 * kBwdItems + 4 * kBwdItems);  // staged B and C tile, 16 states
  return static_cast<int>(sizeof(float)) * (red + per_row + (4 - per_row % 4) % 4 + stage);
}

// Each returns the CUDA error code of its launches (0: cudaSuccess).
int launch_forward_fp32(const FwdParams& p, Stream stream);
int launch_forward_bf16(const FwdParams& p, Stream stream);
int launch_forward_fp16(const FwdParams& p, Stream stream);
int launch_backward_fp32(const BwdParams& p, Stream stream);
int launch_backward_bf16(const BwdParams& p, Stream stream);
int launch_backward_fp16(const BwdParams& p, Stream stream);

}  // namespace umamba::cuda::detail
