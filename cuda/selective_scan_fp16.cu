// Selective-scan kernels instantiated for fp16 inputs (one translation unit per dtype, so the three
// compile in parallel). The kernels are in selective_scan_kernels.cuh.
#include "cuda/selective_scan_kernels.cuh"

namespace umamba::cuda::detail {

int launch_forward_fp16(const FwdParams& p, Stream stream) {
  return launch_forward<__half>(p, stream);
}

int launch_backward_fp16(const BwdParams& p, Stream stream) {
  return launch_backward<__half>(p, stream);
}

}  // namespace umamba::cuda::detail
