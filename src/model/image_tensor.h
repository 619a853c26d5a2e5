// Images as tensors and back, without copying where the memory allows it.
//
// to_tensor: an Image [C, Z, Y, X] becomes a CPU tensor of the same element type, shaped
// [C, Z, Y, X] (or [C, Y, X] with `drop_z` for 2D images), sharing the Image's memory through
// torch::from_blob with strides in elements; the tensor's deleter holds a copy of the Image, so
// the pixels stay alive as long as either exists. Unsigned 16/32/64-bit images have no LibTorch
// dtype before 2.3's limited support and are refused (cast them first).
// to_image: a CPU tensor of 3 ([C, Y, X]) or 4 ([C, Z, Y, X]) dims becomes an Image sharing the
// tensor's storage (the Image's owner holds the tensor); non-CPU tensors are copied to the CPU.
// Geometry is carried by the Image only: to_image takes it as an argument.
#pragma once

#include <torch/types.h>

#include "core/image.h"

namespace umamba::model {

torch::ScalarType to_scalar_type(DType dtype);  // throws Unsupported for u16/u32/u64
DType to_dtype(torch::ScalarType type);         // throws Unsupported for types Image lacks

torch::Tensor to_tensor(const Image& image, bool drop_z = false);
Image to_image(const torch::Tensor& tensor, const Geometry& geometry = {});

}  // namespace umamba::model
