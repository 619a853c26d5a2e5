// cuda_scan_bench [shapes] [dtypes] [csv]: the benchmark of `umamba bench scan` without the CLI
// (defaults: umamba fp32, no CSV). Tuning comes from the same UMAMBA_SCAN_* environment variables.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "cuda/scan_bench.h"

namespace {
int env_int(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : 0;
}
}  // namespace

int main(int argc, char** argv) {
  umamba::cuda::ScanBenchConfig config;
  if (argc > 1) config.shapes = argv[1];
  if (argc > 2) config.dtypes = argv[2];
  if (argc > 3) config.csv = argv[3];
  config.tuning.fwd_segments = env_int("UMAMBA_SCAN_FWD_SEGMENTS");
  config.tuning.fwd_summary_pieces = env_int("UMAMBA_SCAN_FWD_SUMMARY_PIECES");
  config.tuning.fwd_target_warps = env_int("UMAMBA_SCAN_FWD_TARGET_WARPS");
  config.tuning.fwd_short_len = env_int("UMAMBA_SCAN_FWD_SHORT_LEN");
  config.tuning.fwd_state_split = env_int("UMAMBA_SCAN_FWD_STATE_SPLIT");
  config.tuning.fwd_short_items = env_int("UMAMBA_SCAN_FWD_SHORT_ITEMS");
  config.tuning.bwd_rows_per_warp = env_int("UMAMBA_SCAN_BWD_ROWS_PER_WARP");
  config.tuning.bwd_segments = env_int("UMAMBA_SCAN_BWD_SEGMENTS");
  config.tuning.bwd_target_blocks = env_int("UMAMBA_SCAN_BWD_TARGET_BLOCKS");
  config.tuning.bwd_blocks_per_sm = env_int("UMAMBA_SCAN_BWD_BLOCKS_PER_SM");
  config.tuning.bwd_reduce = env_int("UMAMBA_SCAN_BWD_REDUCE");
  config.tuning.bwd_state_split = env_int("UMAMBA_SCAN_BWD_STATE_SPLIT");
  try {
    umamba::cuda::run_scan_bench_report(config, stdout);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuda_scan_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
