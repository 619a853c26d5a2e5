// `umamba bench scan`: speed of our CUDA selective-scan kernels (forward, backward, both) on
// U-Mamba's shapes, with the effective bandwidth and its fraction of the card's peak. The work is
// in cuda/scan_bench.h; this file declares the flags and prints the table.
#include <fmt/core.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/bench.h"
#include "core/error.h"

#ifdef UMAMBA_WITH_CUDA_BENCH
#include "cuda/scan_bench.h"
#endif

namespace umamba::cli {
namespace {

struct ScanBenchFlags {
  std::string shapes = "umamba";
  std::string dtypes = "fp32";
  int repeats = 15;
  double replay_ms = 4.0;
  int fwd_segments = 0;
  int fwd_summary_pieces = 0;
  int fwd_target_warps = 0;
  int fwd_short_len = 0;
  int fwd_state_split = 0;
  int fwd_short_items = 0;
  int bwd_rows_per_warp = 0;
  int bwd_segments = 0;
  int bwd_target_blocks = 0;
  int bwd_blocks_per_sm = 0;
  int bwd_reduce = 0;
  int bwd_state_split = 0;
  std::string csv;
};

#ifdef UMAMBA_WITH_CUDA_BENCH

void run_scan_bench(const ScanBenchFlags& f) {
  cuda::ScanBenchConfig config;
  config.shapes = f.shapes;
  config.dtypes = f.dtypes;
  config.repeats = f.repeats;
  config.replay_ms = f.replay_ms;
  config.tuning.fwd_segments = f.fwd_segments;
  config.tuning.fwd_summary_pieces = f.fwd_summary_pieces;
  config.tuning.fwd_target_warps = f.fwd_target_warps;
  config.tuning.fwd_short_len = f.fwd_short_len;
  config.tuning.fwd_state_split = f.fwd_state_split;
  config.tuning.fwd_short_items = f.fwd_short_items;
  config.tuning.bwd_rows_per_warp = f.bwd_rows_per_warp;
  config.tuning.bwd_segments = f.bwd_segments;
  config.tuning.bwd_target_blocks = f.bwd_target_blocks;
  config.tuning.bwd_blocks_per_sm = f.bwd_blocks_per_sm;
  config.tuning.bwd_reduce = f.bwd_reduce;
  config.tuning.bwd_state_split = f.bwd_state_split;
  config.csv = f.csv;
  cuda::run_scan_bench_report(config, stdout);
}

#endif  // UMAMBA_WITH_CUDA_BENCH

void add_scan_bench(CLI::App& bench) {
  auto f = std::make_shared<ScanBenchFlags>();
  CLI::App* cmd = bench.add_subcommand(
      "scan", "Selective-scan CUDA kernels: time, effective bandwidth and %peak per shape");
  cmd->add_option("--shapes", f->shapes,
                  "umamba (the paper's configurations), extra (peer stress shapes), all, or "
                  "'B,D,L[,N];...'")
      ->capture_default_str()
      ->envname("UMAMBA_BENCH_SCAN_SHAPES");
  cmd->add_option("--dtype", f->dtypes, "Input dtypes, comma-separated: fp32, bf16, fp16")
      ->capture_default_str()
      ->envname("UMAMBA_BENCH_SCAN_DTYPE");
  cmd->add_option("--repeats", f->repeats, "Timed graph replays per measurement (median reported)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_BENCH_SCAN_REPEATS");
  cmd->add_option("--replay-ms", f->replay_ms,
                  "Target length of one graph replay (calls per replay follow)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->envname("UMAMBA_BENCH_SCAN_REPLAY_MS");
  cmd->add_option("--fwd-segments", f->fwd_segments, "Forward segments per row (0: choose)")
      ->capture_default_str()
      ->envname("UMAMBA_SCAN_FWD_SEGMENTS");
  cmd->add_option("--fwd-summary-pieces", f->fwd_summary_pieces,
                  "Forward summaries per segment, a divisor of its 256-step tiles (0: choose)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber)
      ->envname("UMAMBA_SCAN_FWD_SUMMARY_PIECES");
  cmd->add_option("--fwd-short-len", f->fwd_short_len,
                  "Rows up to this length take the forward's one-tile kernel (at most 512; 0: "
                  "choose)")
      ->capture_default_str()
      ->check(CLI::Range(0, 512))
      ->envname("UMAMBA_SCAN_FWD_SHORT_LEN");
  cmd->add_option("--fwd-state-split", f->fwd_state_split,
                  "Short rows: warps sharing a row, each a share of the states: 1, 2, 4 (0: "
                  "choose)")
      ->capture_default_str()
      ->check(CLI::IsMember({0, 1, 2, 4}))
      ->envname("UMAMBA_SCAN_FWD_STATE_SPLIT");
  cmd->add_option("--fwd-short-items", f->fwd_short_items,
                  "Short rows: steps per lane, 8 or 16 (0: choose)")
      ->capture_default_str()
      ->check(CLI::IsMember({0, 8, 16}))
      ->envname("UMAMBA_SCAN_FWD_SHORT_ITEMS");
  cmd->add_option("--fwd-target-warps", f->fwd_target_warps,
                  "Warps the forward keeps busy (0: what fits)")
      ->capture_default_str()
      ->envname("UMAMBA_SCAN_FWD_TARGET_WARPS");
  cmd->add_option("--bwd-rows-per-warp", f->bwd_rows_per_warp,
                  "Backward channels per warp: 1, 2, 4, 8 (0: choose)")
      ->capture_default_str()
      ->envname("UMAMBA_SCAN_BWD_ROWS_PER_WARP");
  cmd->add_option("--bwd-segments", f->bwd_segments, "Backward segments per row (0: choose)")
      ->capture_default_str()
      ->envname("UMAMBA_SCAN_BWD_SEGMENTS");
  cmd->add_option("--bwd-target-blocks", f->bwd_target_blocks,
                  "Blocks the backward keeps busy (0: blocks per SM x SMs)")
      ->capture_default_str()
      ->envname("UMAMBA_SCAN_BWD_TARGET_BLOCKS");
  cmd->add_option("--bwd-blocks-per-sm", f->bwd_blocks_per_sm,
                  "Backward register budget: 2, 3 or 4 blocks per SM (0: choose)")
      ->capture_default_str()
      ->envname("UMAMBA_SCAN_BWD_BLOCKS_PER_SM");
  cmd->add_option("--bwd-reduce", f->bwd_reduce,
                  "Backward dB/dC sums over channels: 1 block (shared memory), 2 warp (coalesced "
                  "atomics), 3 direct (4-float atomics from each lane) (0: choose)")
      ->capture_default_str()
      ->envname("UMAMBA_SCAN_BWD_REDUCE");
  cmd->add_option("--bwd-state-split", f->bwd_state_split,
                  "Backward with warp atomics: warps sharing a channel, each a share of the "
                  "states: 1, 2 or 4 (0: choose)")
      ->capture_default_str()
      ->envname("UMAMBA_SCAN_BWD_STATE_SPLIT");
  cmd->add_option("--csv", f->csv, "Also write the rows to this CSV file")
      ->envname("UMAMBA_BENCH_SCAN_CSV");
  cmd->callback([f] {
#ifdef UMAMBA_WITH_CUDA_BENCH
    run_scan_bench(*f);
#else
    throw Unsupported(
        "bench scan: this umamba was built without the CUDA kernels (UMAMBA_CUDA=OFF or no nvcc)");
#endif
  });
}

}  // namespace

UMAMBA_REGISTER_BENCH(add_scan_bench);

}  // namespace umamba::cli
