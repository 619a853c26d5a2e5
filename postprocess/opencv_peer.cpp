// OpenCV peer for benchmarks and tests (see opencv_peer.h).
#include "postprocess/opencv_peer.h"

#include "core/error.h"

#ifdef UMAMBA_POSTPROCESS_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#endif

namespace umamba::postprocess::opencv_peer {

#ifdef UMAMBA_POSTPROCESS_OPENCV

bool available() {
  return true;
}

void set_threads(int threads) {
  cv::setNumThreads(threads);
}

uint32_t label(const uint8_t* in, int64_t height, int64_t width, int connectivity, int32_t* out) {
  UMAMBA_CHECK(connectivity == 4 || connectivity == 8,
               "OpenCV connected components: connectivity 4 or 8, got {}", connectivity);
  UMAMBA_CHECK(height < INT32_MAX && width < INT32_MAX, "OpenCV: image {}x{} too large", height,
               width);
  const cv::Mat src(static_cast<int>(height), static_cast<int>(width), CV_8U,
                    const_cast<uint8_t*>(in));
  cv::Mat labels(static_cast<int>(height), static_cast<int>(width), CV_32S, out);
  const int n = cv::connectedComponents(src, labels, connectivity, CV_32S);
  UMAMBA_CHECK(labels.data == reinterpret_cast<uchar*>(out),
               "OpenCV connected components reallocated its output");
  return static_cast<uint32_t>(n - 1);
}

#else

bool available() {
  return false;
}

void set_threads(int) {}

uint32_t label(const uint8_t*, int64_t, int64_t, int, int32_t*) {
  throw Unsupported("OpenCV's connected components: this build has no OpenCV (UMAMBA_OPENCV=OFF)");
}

#endif

}  // namespace umamba::postprocess::opencv_peer
