// Causal-conv1d kernels instantiated for fp32, bf16 and fp16 inputs (causal_conv1d_kernels.cuh).
#include "cuda/causal_conv1d_kernels.cuh"

namespace umamba::cuda::detail {

int launch_conv_forward_fp32(const ConvParams& p, Stream stream) {
  return launch_conv_forward<float>(p, stream);
}
int launch_conv_forward_bf16(const ConvParams& p, Stream stream) {
  return launch_conv_forward<__nv_bfloat16>(p, stream);
}
int launch_conv_forward_fp16(const ConvParams& p, Stream stream) {
  return launch_conv_forward<__half>(p, stream);
}
int launch_conv_backward_fp32(const ConvParams& p, Stream stream) {
  return launch_conv_backward<float>(p, stream);
}
int launch_conv_backward_bf16(const ConvParams& p, Stream stream) {
  return launch_conv_backward<__nv_bfloat16>(p, stream);
}
int launch_conv_backward_fp16(const ConvParams& p, Stream stream) {
  return launch_conv_backward<__half>(p, stream);
}

}  // namespace umamba::cuda::detail
