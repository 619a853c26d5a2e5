// The engine under faults: out-of-memory in a model call (injected through UMAMBA_FAULT_INJECT's
// "alloc" kind, and raised by a model that cannot take more than one tile) is retried with fewer
// tiles and gives the same result as an unfaulted run; at one tile it is reported as
// DeviceOutOfMemory; NaN or infinite logits are refused (NonFiniteOutput); the buffer estimate
// bounds what the run held and is checked against the allocation limit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/fault_injection.h"
#include "core/memory.h"
#include "engine/engine_test_util.h"
#include "engine/predictor.h"
#include "engine/tile_model.h"

namespace umamba::engine {
namespace {

struct Plan {
  explicit Plan(const std::string& spec) { fault::configure(spec); }
  ~Plan() { fault::configure(""); }
};

bool bit_equal(const Image& a, const Image& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.contiguous().data(), b.contiguous().data(), a.byte_size()) == 0;
}

struct EngineCase {
  test::TinyConv net = test::make_tiny_conv(2, 1, 3, 3, 5);
  ModuleTileModel model{net, TileModelSpec{1, 3, {24, 24}}};
  Image image = test::random_image(DType::U16, {1, 2, 70, 83}, 0, 1000, 3);
  EngineOptions options() const {
    EngineOptions o;
    o.batch_size = 4;
    o.mirror_axes = {0, 1};
    o.outputs = kClasses | kLogits;
    return o;
  }
};

TEST(Reliability_EngineOom, injected_oom_is_retried_with_fewer_tiles_same_result) {
  EngineCase s;
  const Prediction clean = predict_image(s.image, s.model, Normalization{}, s.options());
  EXPECT_EQ(clean.stats.oom_retries, 0);
  EXPECT_EQ(clean.stats.tiles_per_call, 4);
  // The first call (4 tiles) and the retry with 2 fail; the run goes on with 1 tile per call.
  Plan p("alloc:1-2");
  const Prediction faulted = predict_image(s.image, s.model, Normalization{}, s.options());
  EXPECT_EQ(faulted.stats.oom_retries, 2);
  EXPECT_EQ(faulted.stats.tiles_per_call, 1);
  EXPECT_EQ(faulted.stats.tiles, clean.stats.tiles);
  EXPECT_TRUE(bit_equal(faulted.classes, clean.classes));
  // One-tile calls give logits equal to batched calls up to float rounding in the convolution.
  const float* a = faulted.logits.data_as<float>();
  const float* b = clean.logits.data_as<float>();
  float worst = 0;
  for (int64_t i = 0; i < clean.logits.shape().elements(); ++i)
    worst = std::max(worst, std::abs(a[i] - b[i]));
  EXPECT_LT(worst, 1e-5f);
}

// A model that really cannot take more than `most` tiles at once, as a GPU with little memory.
TEST(Reliability_EngineOom, model_oom_above_one_tile_matches_the_clean_run) {
  EngineCase s;
  int64_t calls = 0, refused = 0;
  FunctionTileModel small(
      [&](const torch::Tensor& x) {
        ++calls;
        if (x.size(0) > 1) {
          ++refused;
          TORCH_CHECK_WITH(OutOfMemoryError, false, "CUDA out of memory. Tried to allocate 2 GiB");
        }
        return s.net->forward(x);
      },
      TileModelSpec{1, 3, {24, 24}});
  const Prediction clean = predict_image(s.image, s.model, Normalization{}, s.options());
  const Prediction got = predict_image(s.image, small, Normalization{}, s.options());
  EXPECT_TRUE(bit_equal(got.classes, clean.classes));
  EXPECT_EQ(refused, 2);  // 4 tiles, then 2; every later call has one tile
  EXPECT_EQ(got.stats.tiles_per_call, 1);
  EXPECT_GT(calls, got.stats.tiles);  // every tile (and its mirrors) went through one by one
}

TEST(Reliability_EngineOom, oom_at_one_tile_is_a_device_out_of_memory_error) {
  EngineCase s;
  Plan p("alloc:1+");
  try {
    predict_image(s.image, s.model, Normalization{}, s.options());
    ADD_FAILURE() << "no error";
  } catch (const DeviceOutOfMemory& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("out of memory on cpu even with one tile"), std::string::npos) << msg;
    EXPECT_NE(msg.find("24x24"), std::string::npos) << msg;
  }
  EXPECT_EQ(fault::calls(fault::Kind::Alloc), 3);  // 4 tiles, 2, 1
}

TEST(Reliability_EngineNaN, non_finite_logits_never_become_classes) {
  EngineCase s;
  for (const double bad : {std::nan(""), double(INFINITY)}) {
    int64_t bands = 0;
    FunctionTileModel broken(
        [&](const torch::Tensor& x) {
          torch::Tensor y = s.net->forward(x);
          y.index_put_({0, 1, 5, 7}, bad);  // one logit of the first tile of each batch
          return y;
        },
        TileModelSpec{1, 3, {24, 24}});
    EngineOptions o = s.options();
    o.mirror_axes.clear();
    try {
      ImageSource source(s.image);
      predict_bands(source, broken, Normalization{}, o, [&](const Band&) { ++bands; });
      ADD_FAILURE() << "no error for " << bad;
    } catch (const NonFiniteOutput& e) {
      EXPECT_NE(std::string(e.what()).find("non-finite logit"), std::string::npos) << e.what();
    }
    // The first tile's lines never finish: no band reached the callback.
    EXPECT_EQ(bands, 0) << bad;
  }
}

TEST(Reliability_EngineLimits, buffer_estimate_bounds_the_run_and_meets_the_limit) {
  EngineCase s;
  for (const int64_t batch : {1, 4, 16}) {
    EngineOptions o = s.options();
    o.batch_size = batch;
    const uint64_t est = predict_memory_bytes(s.image.shape(), s.model, o);
    const Prediction p = predict_image(s.image, s.model, Normalization{}, o);
    const uint64_t held =
        static_cast<uint64_t>(p.stats.peak_input_lines) * 1 * p.stats.line_pixels * 4 +
        static_cast<uint64_t>(p.stats.peak_accumulator_lines) * 3 * p.stats.line_pixels * 4;
    EXPECT_GE(est, held) << "batch " << batch;
    EXPECT_LT(est, uint64_t{64} << 20) << "batch " << batch;  // a sane size for a small image
  }
  const size_t before = allocation_limit();
  // Below the estimate (a few hundred KB here) the run is refused before it allocates.
  set_allocation_limit(64 * 1024);
  int64_t bands = 0;
  try {
    ImageSource source(s.image);
    predict_bands(source, s.model, Normalization{}, s.options(), [&](const Band&) { ++bands; });
    ADD_FAILURE() << "no error under a 64 KB limit";
  } catch (const Unsupported& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("UMAMBA_MAX_ALLOC_BYTES"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--batch-size"), std::string::npos) << msg;
  }
  set_allocation_limit(before);
  EXPECT_EQ(bands, 0);
}

// A source that declares a shape (as a crafted header would) and must never be read.
class DeclaredOnly : public RegionSource {
 public:
  explicit DeclaredOnly(Shape s) : s_(s) {}
  Shape shape() const override { return s_; }
  DType dtype() const override { return DType::U8; }
  Image read(const Box&) override { throw std::logic_error("read before the limits were checked"); }

 private:
  Shape s_;
};

TEST(Reliability_EngineLimits, declared_sizes_are_checked_before_allocation) {
  EngineCase s;
  const size_t before = allocation_limit();
  set_allocation_limit(size_t{1} << 30);
  struct Case {
    Shape shape;
    const char* must_say;
  };
  for (const Case& c : {Case{{1, 1, int64_t{1} << 40, int64_t{1} << 40}, "tiles"},
                        Case{{1, 1, 16, int64_t{1} << 36}, "UMAMBA_MAX_ALLOC_BYTES"}}) {
    DeclaredOnly src(c.shape);
    try {
      predict_bands(src, s.model, Normalization{}, s.options(), [](const Band&) {});
      ADD_FAILURE() << to_string(c.shape) << " accepted";
    } catch (const Unsupported& e) {
      EXPECT_NE(std::string(e.what()).find(c.must_say), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(to_string(c.shape)), std::string::npos) << e.what();
    }
  }
  // A plausible image but batches too large for the limit: refused before the first read.
  {
    EngineOptions o = s.options();
    o.batch_size = int64_t{1} << 20;
    DeclaredOnly src({1, 1, 4096, 4096});
    try {
      predict_bands(src, s.model, Normalization{}, o, [](const Band&) {});
      ADD_FAILURE() << "huge batches accepted";
    } catch (const Unsupported& e) {
      EXPECT_NE(std::string(e.what()).find("lower --batch-size"), std::string::npos) << e.what();
    }
  }
  set_allocation_limit(before);
}

}  // namespace
}  // namespace umamba::engine
