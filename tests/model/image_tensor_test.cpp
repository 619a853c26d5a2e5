// Image ↔ tensor wrapping: shared memory both ways, lifetime, strided views, refused types.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.h"
#include "model/image_tensor.h"

namespace umamba::model {
namespace {

TEST(Model_ImageTensor, wraps_contiguous_image_without_copy) {
  Image img = Image::zeros(DType::F32, Shape{2, 3, 4, 5});
  float* p = img.data_as<float>();
  for (int64_t i = 0; i < img.element_count(); ++i) p[i] = static_cast<float>(i);
  torch::Tensor t = to_tensor(img);
  EXPECT_EQ(t.sizes().vec(), (std::vector<int64_t>{2, 3, 4, 5}));
  EXPECT_EQ(t.data_ptr(), img.data());
  EXPECT_EQ(t.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(t, torch::arange(120, torch::kFloat32).reshape({2, 3, 4, 5})));
  t.index_put_({1, 2, 3, 4}, -1.0f);  // writes through
  EXPECT_EQ(img.at<float>(1, 2, 3, 4), -1.0f);
}

TEST(Model_ImageTensor, tensor_keeps_pixels_alive) {
  torch::Tensor t;
  {
    Image img = Image::zeros(DType::U8, Shape{1, 1, 3, 3});
    img.data_as<uint8_t>()[4] = 7;
    t = to_tensor(img, /*drop_z=*/true);
  }
  EXPECT_EQ(t.sizes().vec(), (std::vector<int64_t>{1, 3, 3}));
  EXPECT_EQ(t.index({0, 1, 1}).item<int>(), 7);
}

TEST(Model_ImageTensor, strided_views_keep_their_strides) {
  Image img = Image::zeros(DType::I16, Shape{3, 1, 6, 8});
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < 6; ++y)
      for (int64_t x = 0; x < 8; ++x) img.at<int16_t>(c, 0, y, x) = int16_t(100 * c + 10 * y + x);
  const Image roi = img.region(Box{0, 1, 2, 1, 3, 4});
  ASSERT_FALSE(roi.is_contiguous());
  const torch::Tensor t = to_tensor(roi, true);
  EXPECT_EQ(t.sizes().vec(), (std::vector<int64_t>{3, 3, 4}));
  EXPECT_EQ(t.data_ptr(), roi.data());
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < 3; ++y)
      for (int64_t x = 0; x < 4; ++x)
        EXPECT_EQ(t.index({c, y, x}).item<int>(), 100 * c + 10 * (y + 1) + (x + 2));
}

TEST(Model_ImageTensor, to_image_shares_tensor_storage) {
  torch::Tensor t = torch::arange(24, torch::kFloat64).reshape({2, 3, 4});
  Geometry g;
  g.spacing = {1.0, 0.5, 0.25};
  Image img = to_image(t, g);
  EXPECT_EQ(img.shape(), (Shape{2, 1, 3, 4}));
  EXPECT_EQ(img.dtype(), DType::F64);
  EXPECT_EQ(img.data(), t.data_ptr());
  EXPECT_EQ(img.geometry().spacing[2], 0.25);
  t = torch::Tensor();  // the image keeps the storage
  EXPECT_EQ(img.at<double>(1, 0, 2, 3), 23.0);
  // A transposed tensor comes back with its strides.
  torch::Tensor u = torch::arange(12, torch::kInt32).reshape({1, 3, 4}).transpose(1, 2);
  Image v = to_image(u);
  EXPECT_EQ(v.shape(), (Shape{1, 1, 4, 3}));
  EXPECT_EQ(v.at<int32_t>(0, 0, 3, 1), 7);
  // Round trip.
  EXPECT_TRUE(torch::equal(to_tensor(v, true), u));
}

TEST(Model_ImageTensor, refuses_types_without_a_counterpart) {
  EXPECT_THROW(to_tensor(Image::zeros(DType::U16, Shape{1, 1, 2, 2})), Unsupported);
  EXPECT_THROW(to_image(torch::zeros({1, 2, 2}, torch::kHalf)), Unsupported);
  EXPECT_THROW(to_image(torch::zeros({2, 2})), Error);
  EXPECT_THROW(to_tensor(Image{}), Error);
}

}  // namespace
}  // namespace umamba::model
