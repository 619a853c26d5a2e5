// The SIMT emulator itself: the built-in variables, shuffles against PTX's rules (segments of
// `width` lanes, out-of-segment sources), barriers ordering shared-memory traffic, the random
// order of the threads between barriers, and the errors it reports for what would hang or be
// undefined on a GPU (a barrier some threads never reach, lanes of a warp at different kinds of
// warp operation, a full-mask shuffle after a lane exited).
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

// Last: the emulator's macros take over the device vocabulary (threadIdx, __shared__, ...).
#include "cuda/simt/simt.h"

namespace {

namespace simt = umamba::simt;

struct Ids {
  int* out;  // [grid * block][4]
};
void ids_kernel(const Ids p) {
  const unsigned g = blockIdx.x * blockDim.x + threadIdx.x;
  p.out[4 * g + 0] = static_cast<int>(threadIdx.x);
  p.out[4 * g + 1] = static_cast<int>(blockIdx.x);
  p.out[4 * g + 2] = static_cast<int>(blockDim.x);
  p.out[4 * g + 3] = static_cast<int>(gridDim.x);
}

TEST(Cuda_Simt, built_in_variables) {
  std::vector<int> out(3 * 70 * 4, -1);
  ASSERT_TRUE(simt::launch(ids_kernel, 3, 70, 0, Ids{out.data()})) << simt::last_error();
  for (int b = 0; b < 3; ++b)
    for (int t = 0; t < 70; ++t) {
      const int* r = &out[static_cast<std::size_t>(4 * (b * 70 + t))];
      EXPECT_EQ(r[0], t);
      EXPECT_EQ(r[1], b);
      EXPECT_EQ(r[2], 70);
      EXPECT_EQ(r[3], 3);
    }
}

struct Shuffles {
  int width;
  int arg;
  int* out;  // [4][64]: index, up, down, xor
};
void shuffle_kernel(const Shuffles p) {
  const int v = 1000 + static_cast<int>(threadIdx.x);
  const int t = static_cast<int>(threadIdx.x);
  const int n = static_cast<int>(blockDim.x);
  p.out[t] = __shfl_sync(0xffffffffu, v, p.arg, p.width);
  p.out[n + t] = __shfl_up_sync(0xffffffffu, v, static_cast<unsigned>(p.arg), p.width);
  p.out[2 * n + t] = __shfl_down_sync(0xffffffffu, v, static_cast<unsigned>(p.arg), p.width);
  p.out[3 * n + t] = __shfl_xor_sync(0xffffffffu, v, p.arg, p.width);
}

// PTX shfl.sync, written out per lane (ISA: "shfl.sync", the clamp/segment rules for each mode).
int expected_shuffle(int mode, int lane, int arg, int width) {
  const int seg = lane / width * width;
  int src = lane;
  if (mode == 0) src = seg + arg % width;
  if (mode == 1) src = lane - seg >= arg ? lane - arg : lane;
  if (mode == 2) src = lane - seg + arg < width ? lane + arg : lane;
  if (mode == 3) src = ((lane ^ arg) / width) > (lane / width) ? lane : (lane ^ arg);
  return 1000 + src;
}

TEST(Cuda_Simt, shuffles_follow_ptx_segments) {
  for (int width : {32, 16, 8, 4, 2, 1})
    for (int arg : {0, 1, 2, 3, 5, 16, 31}) {
      std::vector<int> out(4 * 64, -1);
      ASSERT_TRUE(simt::launch(shuffle_kernel, 1, 64, 0, Shuffles{width, arg, out.data()}))
          << simt::last_error();
      for (int mode = 0; mode < 4; ++mode)
        for (int lane = 0; lane < 64; ++lane)
          EXPECT_EQ(out[static_cast<std::size_t>(mode * 64 + lane)],
                    expected_shuffle(mode, lane % 32, arg, width) + lane / 32 * 32)
              << "mode " << mode << " width " << width << " arg " << arg << " lane " << lane;
    }
}

// Each thread writes shared memory, waits at the barrier, and reads its neighbour's value: correct
// whatever order the threads run in.
struct Neighbour {
  int* out;
};
void neighbour_kernel(const Neighbour p) {
  __shared__ int s[256];
  const int t = static_cast<int>(threadIdx.x);
  s[t] = 10 * t;
  __syncthreads();
  p.out[t] = s[(t + 1) % 256];
  __syncthreads();
  s[t] = -1;  // reused only after every thread read (the second barrier)
}

TEST(Cuda_Simt, barriers_order_shared_memory) {
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    simt::set_seed(seed);
    std::vector<int> out(256, -7);
    ASSERT_TRUE(simt::launch(neighbour_kernel, 2, 256, 0, Neighbour{out.data()}))
        << simt::last_error();
    for (int t = 0; t < 256; ++t) EXPECT_EQ(out[static_cast<std::size_t>(t)], 10 * ((t + 1) % 256));
  }
}

// A race: thread 0 reads what thread 1 writes, with no barrier between. Which value it sees
// depends on the order the scheduler runs them in, which follows the seed.
struct Race {
  int* out;
};
void race_kernel(const Race p) {
  __shared__ int s[1];
  if (threadIdx.x == 0) s[0] = 0;
  __syncthreads();
  if (threadIdx.x == 1) s[0] = 1;
  if (threadIdx.x == 0) p.out[0] = s[0];
}

TEST(Cuda_Simt, unsynchronised_reads_see_orders_that_change_with_the_seed) {
  std::set<int> seen;
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    simt::set_seed(seed);
    int out = -1;
    ASSERT_TRUE(simt::launch(race_kernel, 1, 64, 0, Race{&out})) << simt::last_error();
    seen.insert(out);
  }
  EXPECT_EQ(seen, (std::set<int>{0, 1}));
}

struct Flag {
  int mode;
};
void misuse_kernel(const Flag p) {
  const int t = static_cast<int>(threadIdx.x);
  if (p.mode == 0) {  // thread 3 skips the barrier but stays alive at a warp operation
    if (t != 3) __syncthreads();
    __syncwarp();
  } else if (p.mode == 1) {  // half of warp 0 at a shuffle, the other half at __syncwarp
    if (t < 16) {
      (void)__shfl_sync(0xffffffffu, t, 0);
    } else if (t < 32) {
      __syncwarp();
    }
  } else if (p.mode == 2) {  // lane 5 exited before the warp's shuffle
    if (t == 5) return;
    (void)__shfl_xor_sync(0xffffffffu, t, 1);
  } else if (p.mode == 3) {  // exited threads count as arrived at __syncthreads (as on the GPU)
    if (t >= 40) return;
    __syncthreads();
  }
}

TEST(Cuda_Simt, reports_what_would_hang_or_be_undefined_on_a_gpu) {
  EXPECT_FALSE(simt::launch(misuse_kernel, 1, 64, 0, Flag{0}));
  EXPECT_NE(simt::last_error().find("deadlock"), std::string::npos) << simt::last_error();
  EXPECT_FALSE(simt::launch(misuse_kernel, 1, 64, 0, Flag{1}));
  EXPECT_NE(simt::last_error().find("different kinds of warp operation"), std::string::npos)
      << simt::last_error();
  EXPECT_FALSE(simt::launch(misuse_kernel, 1, 64, 0, Flag{2}));
  EXPECT_NE(simt::last_error().find("after some of its lanes exited"), std::string::npos)
      << simt::last_error();
  EXPECT_TRUE(simt::launch(misuse_kernel, 1, 64, 0, Flag{3})) << simt::last_error();
  EXPECT_FALSE(simt::launch(misuse_kernel, 1, 2000, 0, Flag{3}));  // over 1024 threads
  EXPECT_NE(simt::last_error().find("out of range"), std::string::npos) << simt::last_error();
  // A failed launch leaves the emulator usable.
  std::vector<int> out(4 * 32, -1);
  EXPECT_TRUE(simt::launch(ids_kernel, 1, 32, 0, Ids{out.data()})) << simt::last_error();
  EXPECT_EQ(out[4 * 31], 31);
}

struct Dynamic {
  float* out;  // [2][block]: the poisoned value first read, then the value written
};
void dynamic_kernel(const Dynamic p) {
  auto* smem = static_cast<float*>(simt::dynamic_shared());
  const int t = static_cast<int>(threadIdx.x);
  const int n = static_cast<int>(blockDim.x);
  p.out[t] = smem[t];  // not written yet in this block: NaN
  __syncthreads();
  smem[t] = static_cast<float>(t);
  __syncthreads();
  p.out[n + t] = smem[n - 1 - t];
}

TEST(Cuda_Simt, dynamic_shared_memory_is_poisoned_per_block) {
  std::vector<float> out(2 * 48, 0.f);
  for (int rep = 0; rep < 2; ++rep) {  // the second launch sees NaN again, not the first's values
    ASSERT_TRUE(simt::launch(dynamic_kernel, 1, 48, 48 * sizeof(float), Dynamic{out.data()}))
        << simt::last_error();
    for (int t = 0; t < 48; ++t) {
      EXPECT_TRUE(std::isnan(out[static_cast<std::size_t>(t)])) << t;
      EXPECT_EQ(out[static_cast<std::size_t>(48 + t)], static_cast<float>(47 - t));
    }
  }
}

}  // namespace
