// Zero-copy Image ↔ tensor wrapping; see image_tensor.h.
#include "model/image_tensor.h"

#include <fmt/ranges.h>
#include <torch/torch.h>

#include "core/error.h"

namespace umamba::model {

torch::ScalarType to_scalar_type(DType t) {
  switch (t) {
    case DType::U8:
      return torch::kByte;
    case DType::I8:
      return torch::kChar;
    case DType::I16:
      return torch::kShort;
    case DType::I32:
      return torch::kInt;
    case DType::I64:
      return torch::kLong;
    case DType::F32:
      return torch::kFloat;
    case DType::F64:
      return torch::kDouble;
    case DType::U16:
    case DType::U32:
    case DType::U64:
      break;
  }
  throw Unsupported(fmt::format(
      "{} images cannot be wrapped as tensors; cast them first (e.g. to f32)", dtype_name(t)));
}

DType to_dtype(torch::ScalarType t) {
  switch (t) {
    case torch::kByte:
      return DType::U8;
    case torch::kChar:
      return DType::I8;
    case torch::kShort:
      return DType::I16;
    case torch::kInt:
      return DType::I32;
    case torch::kLong:
      return DType::I64;
    case torch::kFloat:
      return DType::F32;
    case torch::kDouble:
      return DType::F64;
    default:
      break;
  }
  throw Unsupported(fmt::format("tensors of {} have no image element type; convert to float first",
                                c10::toString(t)));
}

torch::Tensor to_tensor(const Image& image, bool drop_z) {
  UMAMBA_CHECK(!image.empty(), "to_tensor: the image is empty");
  UMAMBA_CHECK(!drop_z || image.depth() == 1, "to_tensor: drop_z on an image with {} slices",
               image.depth());
  const Shape& s = image.shape();
  const Shape& st = image.strides();
  std::vector<int64_t> sizes = {s.c, s.z, s.y, s.x};
  std::vector<int64_t> strides = {st.c, st.z, st.y, st.x};
  if (drop_z) {
    sizes.erase(sizes.begin() + 1);
    strides.erase(strides.begin() + 1);
  }
  auto* keep = new Image(image);  // shares the storage; released by the tensor's deleter
  return torch::from_blob(
      const_cast<void*>(image.data()), sizes, strides, [keep](void*) { delete keep; },
      torch::TensorOptions().dtype(to_scalar_type(image.dtype())));
}

Image to_image(const torch::Tensor& tensor_in, const Geometry& geometry) {
  UMAMBA_CHECK(tensor_in.dim() == 3 || tensor_in.dim() == 4,
               "to_image: tensor must be [C, Y, X] or [C, Z, Y, X], got [{}]",
               fmt::join(tensor_in.sizes(), ", "));
  torch::Tensor t = tensor_in.detach();
  if (!t.device().is_cpu()) t = t.cpu();
  const DType dtype = to_dtype(t.scalar_type());
  if (t.dim() == 3) t = t.unsqueeze(1);
  Shape shape{t.size(0), t.size(1), t.size(2), t.size(3)};
  Shape strides{t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
  for (int64_t v : {strides.c, strides.z, strides.y, strides.x}) {
    UMAMBA_CHECK(v >= 0, "to_image: negative strides are not supported");
  }
  auto owner = std::make_shared<torch::Tensor>(t);
  return Image::wrap(t.data_ptr(), dtype, shape, strides, std::shared_ptr<void>(owner, owner.get()),
                     geometry);
}

}  // namespace umamba::model
