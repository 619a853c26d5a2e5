// Outputs appear only when complete: temporaries, refusals, failures leave nothing behind.
#include <gtest/gtest.h>

#include <fstream>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/image_io.h"
#include "io_test_util.h"

namespace umamba::io {
namespace {

using test::TempDir;

TEST(Io_Atomic, uncommitted_output_leaves_nothing) {
  TempDir dir;
  {
    AtomicOutput out(dir / "a.txt");
    std::ofstream(out.temporary_path()) << "half";
    EXPECT_EQ(out.temporary_path().parent_path(), dir.path());
    EXPECT_FALSE(std::filesystem::exists(dir / "a.txt"));
  }
  EXPECT_TRUE(dir.files().empty());
  {
    AtomicOutput out(dir / "a.txt");
    std::ofstream(out.temporary_path()) << "whole";
    out.commit();
  }
  EXPECT_EQ(dir.files(), std::vector<std::string>{"a.txt"});
}

TEST(Io_Atomic, overwrite_false_refuses_and_keeps_the_old_file) {
  TempDir dir;
  const Image a = Image::zeros(DType::U8, Shape{1, 1, 2, 2});
  write_image(dir / "a.tif", a);
  const auto before = test::read_bytes(dir / "a.tif");
  WriteOptions opt;
  opt.overwrite = false;
  Image b = a.clone();
  b.at<uint8_t>(0, 0, 0, 0) = 9;
  EXPECT_THROW(write_image(dir / "a.tif", b, opt), Error);
  EXPECT_NO_THROW(write_image(dir / "a.nii.gz", b, opt)) << "a new file is fine";
  EXPECT_EQ(test::read_bytes(dir / "a.tif"), before);
  opt.overwrite = true;
  write_image(dir / "a.tif", b, opt);
  EXPECT_EQ(read_image(dir / "a.tif").at<uint8_t>(0, 0, 0, 0), 9);
}

TEST(Io_Atomic, failed_and_unfinished_writes_leave_nothing) {
  TempDir dir;
  const Image img = Image::zeros(DType::U16, Shape{1, 2, 40, 40});
  WriteOptions bad;
  bad.tile_size = 24;  // not a multiple of 16
  EXPECT_THROW(write_image(dir / "a.tif", img, bad), Error);
  {
    TiffBandWriter w(dir / "b.tif", img.shape(), DType::U16);
    w.write_band(img.region(Box{0, 0, 0, 1, 30, 40}));
  }  // destroyed unfinished
  WriteOptions ref;
  ref.reference = dir / "absent.nii";
  EXPECT_THROW(write_image(dir / "c.nii", img, ref), FileError);
  EXPECT_TRUE(dir.files().empty()) << dir.files().front();
}

}  // namespace
}  // namespace umamba::io
