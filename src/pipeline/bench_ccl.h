// `umamba bench ccl`: connected-component labelling speed on random-blob images, ours beside
// OpenCV's connectedComponents (2D, same process) and scipy.ndimage.label (through Python), all
// measured in the same run on the same pixels.
//
// Inputs (as in the project's reference measurements): uniform white noise, Gaussian blur
// (sigma 4 px in 2D, 2 voxels in 3D), thresholded at its median (50% foreground). Timings are the
// median of `repeats` runs of labelling alone (output buffers allocated once; SciPy allocates its
// own output); Mvoxels/s = pixels / median time.
#pragma once

#include <cstdint>
#include <string>

namespace umamba::pipeline {

struct BenchCclOptions {
  int64_t size_2d = 4096;  // the 2D image is size_2d²
  int64_t size_3d = 256;   // the volume is size_3d³
  int repeats = 5;
  int threads = 2;     // the parallel rows use this many threads
  std::string python;  // interpreter with numpy and scipy; empty: no SciPy peer
  uint64_t seed = 1;
};

// Runs the benchmark and returns the report (a table and the machine line).
std::string run_bench_ccl(const BenchCclOptions& options);

}  // namespace umamba::pipeline
