// The selective-scan and causal-conv1d kernels compiled as C++ for the SIMT emulator: the same
// launchers as cuda/selective_scan_{fp32,bf16,fp16}.cu and cuda/causal_conv1d.cu, with every launch
// run by tests/cuda/simt. The emulator's header first: it takes over the device vocabulary for the
// kernels' header.
#include "cuda/simt/simt.h"

#include "cuda/causal_conv1d_kernels.cuh"
#include "cuda/selective_scan_kernels.cuh"

namespace umamba::cuda::detail {

int launch_forward_fp32(const FwdParams& p, Stream stream) {
  return launch_forward<float>(p, stream);
}
int launch_backward_fp32(const BwdParams& p, Stream stream) {
  return launch_backward<float>(p, stream);
}
int launch_forward_bf16(const FwdParams& p, Stream stream) {
  return launch_forward<__nv_bfloat16>(p, stream);
}
int launch_backward_bf16(const BwdParams& p, Stream stream) {
  return launch_backward<__nv_bfloat16>(p, stream);
}
int launch_forward_fp16(const FwdParams& p, Stream stream) {
  return launch_forward<__half>(p, stream);
}
int launch_backward_fp16(const BwdParams& p, Stream stream) {
  return launch_backward<__half>(p, stream);
}

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
