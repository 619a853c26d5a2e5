// `umamba bench scan`: times the selective-scan kernels on U-Mamba's shapes with CUDA graphs and
// events, and reports the effective bandwidth (the bytes the op must move, over the time).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "cuda/device.h"
#include "cuda/selective_scan.h"

namespace umamba::cuda {

struct ScanBenchCase {
  std::string label;
  ScanShape shape;
};

// The scan shapes of the paper's configurations, (B, D = 2*d_model, L) with N = 16, derived from
// U-Mamba's structural rules (docs/cuda.md lists the derivation): 2D microscopy (patch 512^2,
// batch 12) UMambaEnc stages 1, 3, 5, 7 and UMambaBot; 3D abdomen CT (patch 40x224x192, batch 2)
// UMambaEnc stages 0-5 and UMambaBot.
std::vector<ScanBenchCase> umamba_scan_cases();
// Extra shapes of the peer measurements (peer-perf.md): stress and mid-size shapes.
std::vector<ScanBenchCase> extra_scan_cases();
// Parses "B,D,L[,N];B,D,L[,N];..." (N defaults to 16).
std::vector<ScanBenchCase> parse_scan_cases(const std::string& text);

struct ScanBenchOptions {
  ScanDtype dtype = ScanDtype::F32;
  int repeats = 15;               // graph replays; the median is reported
  double target_replay_ms = 4.0;  // calls per replay are chosen to last about this long
  ScanTuning tuning;
  std::uint64_t seed = 1;
};

struct ScanBenchRow {
  ScanBenchCase bench_case;
  ScanDtype dtype = ScanDtype::F32;
  std::string plan;
  bool ran = false;
  std::string skipped;  // why, when !ran
  Timing fwd, bwd, fwd_bwd;
  double fwd_bytes = 0,
         bwd_bytes = 0;  // ideal bytes: each input read once, each output written once
  bool finite = false;   // a sample of out, du and ddelta held no NaN or inf
};

// Ideal bytes of one forward / backward (the model of peer-perf.md §3): forward reads u, delta, z,
// B, C and writes out; backward reads u, delta, z, dout, B, C and writes du, ddelta, dz, dB, dC.
double scan_forward_bytes(const ScanShape& s, ScanDtype dtype);
double scan_backward_bytes(const ScanShape& s, ScanDtype dtype);

ScanBenchRow run_scan_bench_case(const ScanBenchCase& bench_case, const ScanBenchOptions& options);

// What `umamba bench scan` runs: the cases of `shapes` ("umamba", "extra", "all" or
// "B,D,L[,N];..."), each dtype, printed as a table to `out` (and as CSV rows to `csv` when set),
// headed by the device, its peak bandwidth and a measured device-to-device copy.
struct ScanBenchConfig {
  std::string shapes = "umamba";
  std::string dtypes = "fp32";  // comma-separated: fp32, bf16, fp16
  int repeats = 15;
  double replay_ms = 4.0;
  ScanTuning tuning;
  std::string csv;
};
// Throws umamba::Unsupported without a device and umamba::Error when an output is not finite.
void run_scan_bench_report(const ScanBenchConfig& config, std::FILE* out);

}  // namespace umamba::cuda
