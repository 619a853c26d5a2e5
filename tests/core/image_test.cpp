#include "core/image.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>

#include "core/memory.h"

namespace umamba {
namespace {

Image ramp_u16(const Shape& s) {
  Image img = Image::zeros(DType::U16, s);
  auto* p = img.data_as<uint16_t>();
  for (int64_t i = 0; i < s.elements(); ++i) p[i] = static_cast<uint16_t>(i * 7 + 3);
  return img;
}

TEST(Core_Image, zeros_is_contiguous_and_zeroed) {
  const Shape s{2, 3, 4, 5};
  Image img = Image::zeros(DType::F32, s);
  EXPECT_EQ(img.shape(), s);
  EXPECT_TRUE(img.is_contiguous());
  EXPECT_EQ(img.byte_size(), size_t{2 * 3 * 4 * 5 * 4});
  const Shape st = img.strides();
  EXPECT_EQ(st.c, 60);
  EXPECT_EQ(st.z, 20);
  EXPECT_EQ(st.y, 5);
  EXPECT_EQ(st.x, 1);
  for (int64_t i = 0; i < s.elements(); ++i) EXPECT_EQ(img.data_as<float>()[i], 0.0f);
}

TEST(Core_Image, rejects_non_positive_shapes) {
  EXPECT_THROW(Image::zeros(DType::U8, Shape{1, 1, 0, 4}), Error);
  EXPECT_THROW(Image::zeros(DType::U8, Shape{1, -1, 2, 4}), Error);
}

TEST(Core_Image, typed_access_checks_dtype) {
  Image img = Image::zeros(DType::U16, Shape{1, 1, 2, 2});
  EXPECT_NO_THROW(img.data_as<uint16_t>());
  EXPECT_THROW(img.data_as<float>(), Error);
}

TEST(Core_Image, views_share_memory_and_index_correctly) {
  const Shape s{2, 3, 4, 5};
  Image img = ramp_u16(s);
  Image ch1 = img.channel(1);
  EXPECT_EQ(ch1.shape(), (Shape{1, 3, 4, 5}));
  EXPECT_TRUE(ch1.is_contiguous());
  EXPECT_EQ(ch1.at<uint16_t>(0, 2, 3, 4), img.at<uint16_t>(1, 2, 3, 4));

  Image sl = img.slice(2);
  EXPECT_EQ(sl.shape(), (Shape{2, 1, 4, 5}));
  EXPECT_FALSE(sl.is_contiguous());  // channels are 3 slices apart
  EXPECT_EQ(sl.at<uint16_t>(1, 0, 1, 2), img.at<uint16_t>(1, 2, 1, 2));

  Image reg = img.region(Box{1, 1, 2, 2, 2, 3});
  EXPECT_EQ(reg.shape(), (Shape{2, 2, 2, 3}));
  for (int64_t c = 0; c < 2; ++c)
    for (int64_t z = 0; z < 2; ++z)
      for (int64_t y = 0; y < 2; ++y)
        for (int64_t x = 0; x < 3; ++x)
          EXPECT_EQ(reg.at<uint16_t>(c, z, y, x), img.at<uint16_t>(c, z + 1, y + 1, x + 2));

  // Writing through a view changes the parent.
  reg.at<uint16_t>(0, 0, 0, 0) = 9999;
  EXPECT_EQ(img.at<uint16_t>(0, 1, 1, 2), 9999);
}

TEST(Core_Image, view_outlives_parent_handle) {
  Image view;
  {
    Image img = ramp_u16(Shape{1, 1, 8, 8});
    view = img.region(Box{0, 2, 2, 1, 3, 3});
  }
  EXPECT_EQ(view.at<uint16_t>(0, 0, 0, 0), static_cast<uint16_t>((2 * 8 + 2) * 7 + 3));
}

TEST(Core_Image, region_bounds_are_checked) {
  Image img = Image::zeros(DType::U8, Shape{1, 1, 4, 4});
  EXPECT_THROW(img.region(Box{0, 3, 0, 1, 2, 1}), Error);
  EXPECT_THROW(img.region(Box{0, 0, -1, 1, 1, 1}), Error);
  EXPECT_THROW(img.slice(1), Error);
  EXPECT_THROW(img.channel(1), Error);
}

TEST(Core_Image, region_moves_origin_along_direction) {
  Geometry g;
  g.spacing = {2.0, 0.5, 0.25};                 // [Z,Y,X]
  g.origin = {10.0, 20.0, 30.0};                // world (x, y, z)
  g.direction = {-1, 0, 0, 0, -1, 0, 0, 0, 1};  // LPS-like flip of x and y
  Image img = Image::zeros(DType::U8, Shape{1, 4, 8, 8}, g);
  Image reg = img.region(Box{1, 2, 4, 1, 1, 1});
  EXPECT_DOUBLE_EQ(reg.geometry().origin[0], 10.0 - 4 * 0.25);
  EXPECT_DOUBLE_EQ(reg.geometry().origin[1], 20.0 - 2 * 0.5);
  EXPECT_DOUBLE_EQ(reg.geometry().origin[2], 30.0 + 1 * 2.0);
  EXPECT_EQ(reg.geometry().spacing, g.spacing);
}

TEST(Core_Image, clone_of_view_is_contiguous_deep_copy) {
  Image img = ramp_u16(Shape{2, 3, 4, 5});
  Image sl = img.slice(1);
  Image copy = sl.clone();
  EXPECT_TRUE(copy.is_contiguous());
  EXPECT_TRUE(copy.same_pixels(sl));
  copy.at<uint16_t>(0, 0, 0, 0) = 1;
  EXPECT_NE(img.at<uint16_t>(0, 1, 0, 0), 1);
}

TEST(Core_Image, contiguous_returns_same_storage_when_possible) {
  Image img = ramp_u16(Shape{1, 2, 3, 4});
  EXPECT_EQ(img.contiguous().data(), img.data());
  Image sl = img.region(Box{0, 0, 1, 2, 3, 2});
  EXPECT_NE(sl.contiguous().data(), sl.data());
}

TEST(Core_Image, cast_clamps_and_rounds) {
  Image f = Image::zeros(DType::F32, Shape{1, 1, 1, 6});
  float* p = f.data_as<float>();
  p[0] = -5.0f;
  p[1] = 1.4f;
  p[2] = 1.6f;
  p[3] = 300.0f;
  p[4] = std::numeric_limits<float>::quiet_NaN();
  p[5] = 254.5f;  // nearbyint: ties to even
  Image u = f.cast(DType::U8);
  const uint8_t* q = u.data_as<uint8_t>();
  EXPECT_EQ(q[0], 0);
  EXPECT_EQ(q[1], 1);
  EXPECT_EQ(q[2], 2);
  EXPECT_EQ(q[3], 255);
  EXPECT_EQ(q[4], 0);
  EXPECT_EQ(q[5], 254);

  Image i = Image::zeros(DType::I32, Shape{1, 1, 1, 4});
  int32_t* ip = i.data_as<int32_t>();
  ip[0] = -1;
  ip[1] = 70000;
  ip[2] = 65535;
  ip[3] = -40000;
  Image u16 = i.cast(DType::U16);
  EXPECT_EQ(u16.data_as<uint16_t>()[0], 0);
  EXPECT_EQ(u16.data_as<uint16_t>()[1], 65535);
  EXPECT_EQ(u16.data_as<uint16_t>()[2], 65535);
  Image i16 = i.cast(DType::I16);
  EXPECT_EQ(i16.data_as<int16_t>()[1], 32767);
  EXPECT_EQ(i16.data_as<int16_t>()[3], -32768);

  Image big = Image::zeros(DType::U64, Shape{1, 1, 1, 1});
  big.data_as<uint64_t>()[0] = std::numeric_limits<uint64_t>::max();
  EXPECT_EQ(big.cast(DType::I64).data_as<int64_t>()[0], std::numeric_limits<int64_t>::max());
}

// Reference for the strided copy: element-by-element through at<>.
TEST(Core_Image, copy_from_matches_elementwise_reference_on_random_views) {
  std::mt19937 rng(42);
  Image src = Image::zeros(DType::I16, Shape{3, 5, 7, 9});
  auto* p = src.data_as<int16_t>();
  for (int64_t i = 0; i < src.element_count(); ++i)
    p[i] = static_cast<int16_t>(rng() % 2001) - 1000;
  for (int trial = 0; trial < 50; ++trial) {
    Box b{int64_t(rng() % 5), int64_t(rng() % 7), int64_t(rng() % 9), 1, 1, 1};
    b.dz = 1 + rng() % (5 - b.z0);
    b.dy = 1 + rng() % (7 - b.y0);
    b.dx = 1 + rng() % (9 - b.x0);
    Image view = src.region(b);
    Image as_f64 = view.cast(DType::F64);
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t z = 0; z < b.dz; ++z)
        for (int64_t y = 0; y < b.dy; ++y)
          for (int64_t x = 0; x < b.dx; ++x)
            ASSERT_EQ(as_f64.at<double>(c, z, y, x),
                      double(src.at<int16_t>(c, z + b.z0, y + b.y0, x + b.x0)));
  }
}

TEST(Core_Image, same_pixels_ignores_strides_but_not_dtype) {
  Image a = ramp_u16(Shape{1, 2, 3, 4});
  Image b = a.slice(1).clone();
  EXPECT_TRUE(a.slice(1).same_pixels(b));
  EXPECT_FALSE(a.slice(0).same_pixels(b));
  EXPECT_FALSE(b.same_pixels(b.cast(DType::U32)));
}

TEST(Core_DType, names_round_trip) {
  for (DType t : {DType::U8, DType::I8, DType::U16, DType::I16, DType::U32, DType::I32, DType::U64,
                  DType::I64, DType::F32, DType::F64}) {
    EXPECT_EQ(dtype_from_name(dtype_name(t)), t);
  }
  EXPECT_EQ(dtype_from_name("uint16"), DType::U16);
  EXPECT_THROW(dtype_from_name("float16"), Error);
  EXPECT_EQ(dtype_size(DType::F64), 8u);
  EXPECT_TRUE(dtype_is_signed(DType::F32));
  EXPECT_FALSE(dtype_is_signed(DType::U32));
}

}  // namespace
}  // namespace umamba
