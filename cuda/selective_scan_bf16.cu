// Selective-scan kernels instantiated for bf16 inputs (one translation unit per dtype, so the three
// compile in parallel). The kernels are in selective_scan_kernels.cuh.
#include "cuda/selective_scan_kernels.cuh"

namespace umamba::cuda::detail {

int launch_forward_bf16(const FwdParams& p, Stream stream) {
  return launch_forward<__nv_bfloat16>(p, stream);
}

int launch_backward_bf16(const BwdParams& p, Stream stream) {
  return launch_backward<__nv_bfloat16>(p, stream);
}

}  // namespace umamba::cuda::detail
