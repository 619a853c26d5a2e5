// Internal to src/model's LibTorch glue over the CUDA kernels (selective_scan_cuda.cpp,
// causal_conv1d.cpp): the kernels' dtype for a tensor's and the current CUDA stream. Include only
// where the kernels are built and LibTorch has CUDA (c10/cuda headers).
#pragma once

#include <c10/core/ScalarType.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/types.h>

#include <string>

#include "core/error.h"
#include "cuda/selective_scan.h"  // ScanDtype, Stream

namespace umamba::model::detail {

// The kernels' storage dtype for `t`; `what` names the op and the tensor in the error
// ("selective_scan_cuda: u").
inline cuda::ScanDtype kernel_dtype(c10::ScalarType t, const char* what) {
  switch (t) {
    case torch::kFloat:
      return cuda::ScanDtype::F32;
    case torch::kBFloat16:
      return cuda::ScanDtype::BF16;
    case torch::kHalf:
      return cuda::ScanDtype::F16;
    default:
      fail("{} has dtype {}; the kernels take float32, bfloat16 or float16", what,
           std::string(c10::toString(t)));
  }
}

// The current CUDA stream of t's device, as the kernels' host APIs take it.
inline cuda::Stream current_stream(const torch::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}

}  // namespace umamba::model::detail
