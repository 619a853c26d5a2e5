// OpenCV's connected-component labelling (cv::connectedComponents, CCL_DEFAULT: Spaghetti for
// 8-connectivity, SAUF/Spaghetti4C for 4), kept as an independent peer for `umamba bench ccl` and
// the tests. Built when UMAMBA_OPENCV is on (libopencv-imgproc); otherwise available() is false
// and label() throws Unsupported.
#pragma once

#include <cstdint>

namespace umamba::postprocess::opencv_peer {

bool available();

// OpenCV's thread count (cv::setNumThreads) for the following label() calls. Changing it
// reconfigures OpenCV's pool, so benchmarks call it outside the timed region.
void set_threads(int threads);

// Labels a binary u8 image [height, width] (non-zero = foreground) with 4 or 8 connectivity.
// Writes int32 labels (0 background) and returns the number of components.
uint32_t label(const uint8_t* in, int64_t height, int64_t width, int connectivity, int32_t* out);

}  // namespace umamba::postprocess::opencv_peer
