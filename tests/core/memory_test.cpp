#include "core/memory.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "core/image.h"

namespace umamba {
namespace {

// Restores the process-wide limit when a test changes it.
struct LimitGuard {
  size_t saved = allocation_limit();
  ~LimitGuard() { set_allocation_limit(saved); }
};

TEST(Core_Memory, default_limit_is_positive) {
  EXPECT_GT(allocation_limit(), size_t{1} << 20);
}

TEST(Core_Memory, checked_size_rejects_overflow_and_limit) {
  LimitGuard guard;
  set_allocation_limit(size_t{1} << 20);
  EXPECT_EQ(checked_allocation_size(1000, 4, "x"), 4000u);
  EXPECT_THROW(checked_allocation_size(1 << 20, 2, "x"), Unsupported);
  EXPECT_THROW(checked_allocation_size(std::numeric_limits<uint64_t>::max() / 2, 4, "x"),
               Unsupported);
}

TEST(Core_Memory, image_allocation_respects_limit) {
  LimitGuard guard;
  set_allocation_limit(size_t{1} << 20);
  // 10^12 pixels, as a crafted header could declare: refused before any allocation.
  try {
    Image::zeros(DType::U8, Shape{1, 1, 1000000, 1000000});
    FAIL() << "expected Unsupported";
  } catch (const Unsupported& e) {
    EXPECT_NE(std::string(e.what()).find("GiB"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(Image::zeros(DType::U8, Shape{1, 1, 512, 512}));
}

TEST(Core_Memory, peak_resident_grows_with_touched_memory) {
  const size_t before = peak_resident_bytes();
  ASSERT_GT(before, 0u) << "/proc/self/status has no VmHWM";
  std::vector<char> block(size_t{64} << 20);
  std::memset(block.data(), 1, block.size());
  EXPECT_GE(peak_resident_bytes(), size_t{64} << 20);
  EXPECT_GE(peak_resident_bytes(), before);
  EXPECT_GT(current_resident_bytes(), size_t{60} << 20);
}

}  // namespace
}  // namespace umamba
