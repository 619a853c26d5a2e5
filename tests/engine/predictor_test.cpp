// The tiling engine against a plain sliding-window reference, against whole-image inference, and
// against itself streamed in bands (tests/engine/engine_test_util.h holds the reference).
#include "engine/predictor.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <iostream>

#include "core/error.h"
#include "engine/tile_model.h"
#include "engine_test_util.h"

namespace umamba::engine {
namespace {

using test::make_tiny_conv;
using test::random_image;

// CT normalisation with fixed statistics: the reference can apply it with the same double
// operations, so inputs to the network agree bit for bit.
Normalization fixed_ct() {
  ChannelNormalization ch;
  ch.scheme = NormScheme::CT;
  ch.dataset = {100.0, 40.0, 20.0, 230.0};
  Normalization n;
  n.channels = {ch};
  return n;
}
torch::Tensor apply_fixed_ct(const torch::Tensor& f64) {
  return ((f64.clamp(20.0, 230.0) - 100.0) / 40.0).to(torch::kFloat32);
}

torch::Tensor gaussian_tensor(const std::vector<int64_t>& patch) {
  const std::array<int64_t, 3> p3 = patch.size() == 3
                                        ? std::array<int64_t, 3>{patch[0], patch[1], patch[2]}
                                        : std::array<int64_t, 3>{1, patch[0], patch[1]};
  auto g = gaussian_importance_map(p3);
  return torch::from_blob(g.data(), patch, torch::kFloat32).clone();
}

bool bit_equal(const Image& a, const Image& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.contiguous().data(), b.contiguous().data(), a.byte_size()) == 0;
}

float max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat32) - b.to(torch::kFloat32)).abs().max().item<float>();
}

torch::Tensor as_tensor(const Image& img) {
  return test::to_tensor(img).to(torch::kFloat32);
}

struct Case {
  const char* name;
  int dims;
  Shape shape;
  std::vector<int64_t> patch;
  std::vector<int> mirror;
  double step;
};

class ReferenceTest : public ::testing::TestWithParam<Case> {};

// Batch size 1 and the same normalisation: every tile sees the same input and network call as in
// the reference, and accumulation happens in the same order, so the blended logits agree to
// rounding. They are usually identical bit for bit, but not always: LibTorch's CPU convolution may
// take a differently vectorised path for a buffer at another alignment (seen in CI under load on
// the zero-padded case, max |diff| 1.8e-5, and on the 2-core dev VM under a parallel build on the
// 3d case, 3.2e-5 with max |logit| 1.41), so the check allows float rounding of the network itself:
// 1e-4 of the largest logit, three orders of magnitude below what a wrong tile offset, weight or
// blend produces (1e-1 and more).
TEST_P(ReferenceTest, logits_equal_plain_reference) {
  const Case& c = GetParam();
  const int64_t K = 3;
  auto net = make_tiny_conv(c.dims, c.shape.c, K, 3, 7);
  ModuleTileModel model(net, {c.shape.c, K, c.patch});
  const Image img = random_image(DType::U8, c.shape, 0, 255, 11);
  EngineOptions o;
  o.batch_size = 1;
  o.tile_step = c.step;
  o.mirror_axes = c.mirror;
  o.outputs = kLogits | kProbabilities | kClasses;
  const Prediction p = predict_image(img, model, fixed_ct(), o);

  torch::NoGradGuard ng;
  const torch::Tensor x = apply_fixed_ct(test::to_tensor(img));
  const torch::Tensor ref = test::reference_predict(
      x, [&](const torch::Tensor& t) { return net->forward(t); }, c.patch, c.step,
      gaussian_tensor(c.patch), c.mirror, K);
  const float scale = std::max(1.0f, ref.abs().max().item<float>());
  const float logit_diff = max_abs_diff(as_tensor(p.logits), ref);
  EXPECT_LE(logit_diff, 1e-4f * scale) << c.name << ": max |diff| " << logit_diff;
  if (!bit_equal(p.logits, test::to_image(ref)))
    std::cout << c.name << ": logits differ from the reference by rounding (max |diff| "
              << logit_diff << ")\n";
  // Softmax and argmax as nnU-Net's export does them.
  const torch::Tensor prob = torch::softmax(ref, 0);
  EXPECT_LT(max_abs_diff(as_tensor(p.probabilities), prob), 1e-6 + 2 * logit_diff) << c.name;
  // Classes equal wherever the reference's two best classes are further apart than the rounding.
  const torch::Tensor cls = as_tensor(p.classes)[0].to(torch::kLong);
  const torch::Tensor ref_cls = prob.argmax(0);
  const torch::Tensor top2 = std::get<0>(ref.topk(2, 0));
  const torch::Tensor clear = (top2[0] - top2[1]) > 4 * logit_diff;
  const int64_t differ = ((cls != ref_cls) & clear).sum().item<int64_t>();
  EXPECT_EQ(differ, 0) << c.name;
  EXPECT_EQ(p.stats.tiles, p.stats.batches);
}

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}

INSTANTIATE_TEST_SUITE_P(
    Engine_Predictor, ReferenceTest,
    ::testing::Values(Case{"2d", 2, Shape{1, 1, 70, 93}, {32, 48}, {}, 0.5},
                      Case{"2d_rgb_mirror", 2, Shape{3, 1, 41, 57}, {24, 32}, {0, 1}, 0.5},
                      Case{"2d_smaller_than_patch", 2, Shape{1, 1, 13, 50}, {32, 32}, {1}, 0.5},
                      Case{"2d_step_033", 2, Shape{1, 1, 61, 61}, {20, 28}, {}, 0.33},
                      Case{"2d_over_3d", 2, Shape{1, 4, 37, 45}, {16, 24}, {0}, 0.5},
                      Case{"3d", 3, Shape{1, 11, 29, 34}, {8, 16, 16}, {}, 0.5},
                      Case{"3d_padded_mirror", 3, Shape{2, 5, 20, 9}, {8, 12, 12}, {0, 2}, 0.5}),
    [](const auto& info) { return std::string(info.param.name); });

// With an edge margin at least the network's receptive radius, every weighted voxel of a tile was
// computed with its full context, so tiling reproduces one forward pass over the whole image.
TEST(Engine_Predictor, tiled_equals_whole_image_when_receptive_field_fits_the_overlap) {
  for (int dims : {2, 3}) {
    const int64_t K = 2;
    auto net = make_tiny_conv(dims, 1, K, 3, 3);  // receptive field 5: radius 2
    const Shape shape = dims == 2 ? Shape{1, 1, 90, 111} : Shape{1, 26, 30, 33};
    const std::vector<int64_t> patch =
        dims == 2 ? std::vector<int64_t>{32, 32} : std::vector<int64_t>{12, 16, 16};
    ModuleTileModel model(net, {1, K, patch});
    const Image img = random_image(DType::U8, shape, 0, 255, 5);
    EngineOptions o;
    o.edge_margin = 2;
    o.batch_size = 5;
    o.outputs = kLogits;
    const Prediction p = predict_image(img, model, fixed_ct(), o);
    torch::NoGradGuard ng;
    torch::Tensor x = apply_fixed_ct(test::to_tensor(img));  // [1, Z, Y, X]
    torch::Tensor whole;
    if (dims == 2) {
      whole = net->forward(x.permute({1, 0, 2, 3})).permute({1, 0, 2, 3});  // slices as batch
    } else {
      whole = net->forward(x.unsqueeze(0))[0];
    }
    const float diff = max_abs_diff(as_tensor(p.logits), whole);
    EXPECT_LT(diff, 2e-5) << dims << "D";
    // Without the margin (nnU-Net's blending) tile borders leak zero padding into the result.
    o.edge_margin = 0;
    const Prediction q = predict_image(img, model, fixed_ct(), o);
    EXPECT_GT(max_abs_diff(as_tensor(q.logits), whole), 1e-3) << dims << "D";
  }
}

// A pointwise network has no context: tiling equals the whole-image pass in nnU-Net's mode too.
TEST(Engine_Predictor, pointwise_model_is_tiling_invariant) {
  auto net = make_tiny_conv(2, 2, 4, 1, 9);
  ModuleTileModel model(net, {2, 4, {16, 20}});
  const Image img = random_image(DType::U16, Shape{2, 2, 50, 47}, 0, 400, 2);
  EngineOptions o;
  o.outputs = kLogits;
  o.batch_size = 7;
  const Prediction p = predict_image(img, model, fixed_ct(), o);
  torch::NoGradGuard ng;
  const torch::Tensor x = apply_fixed_ct(test::to_tensor(img));
  const torch::Tensor whole = net->forward(x.permute({1, 0, 2, 3})).permute({1, 0, 2, 3});
  EXPECT_LT(max_abs_diff(as_tensor(p.logits), whole), 1e-5);
}

// Blending invariant: the weights are normalised, so a constant prediction comes back unchanged.
TEST(Engine_Predictor, constant_logits_survive_blending) {
  const std::vector<float> values{0.25f, -1.5f, 3.0f};
  for (int dims : {2, 3}) {
    const std::vector<int64_t> patch =
        dims == 2 ? std::vector<int64_t>{16, 24} : std::vector<int64_t>{6, 10, 12};
    FunctionTileModel model(
        [&](const torch::Tensor& x) {
          std::vector<int64_t> shape = x.sizes().vec();
          shape[1] = 3;
          auto out = torch::empty(shape, torch::kFloat32);
          for (int k = 0; k < 3; ++k) out.select(1, k).fill_(values[k]);
          return out;
        },
        {1, 3, patch});
    const Image img = random_image(DType::U8, Shape{1, 9, 40, 37}, 0, 255, 4);
    for (int64_t margin : {0, 1}) {
      EngineOptions o;
      o.outputs = kLogits | kProbabilities;
      o.edge_margin = margin;
      o.mirror_axes = {0};
      const Prediction p = predict_image(img, model, fixed_ct(), o);
      const torch::Tensor l = as_tensor(p.logits);
      for (int k = 0; k < 3; ++k) {
        // A few float ulps of the value: sum(c * g_i) / sum(g_i) rounds each term.
        EXPECT_LT((l[k] - values[k]).abs().max().item<float>(), 2e-6f * std::abs(values[k]))
            << dims << "D";
      }
      const torch::Tensor pr = as_tensor(p.probabilities);
      EXPECT_LT((pr.sum(0) - 1.0).abs().max().item<float>(), 1e-6f);
    }
  }
}

// Mirroring equals the explicit average of the flipped predictions, blended separately.
TEST(Engine_Predictor, mirroring_equals_explicit_average) {
  auto net = make_tiny_conv(2, 1, 3, 3, 21);
  const std::vector<int64_t> patch{24, 24};
  const Image img = random_image(DType::U8, Shape{1, 1, 50, 61}, 0, 255, 8);
  EngineOptions o;
  o.outputs = kLogits;
  o.mirror_axes = {0, 1};
  ModuleTileModel model(net, {1, 3, patch});
  const Prediction tta = predict_image(img, model, fixed_ct(), o);
  EXPECT_EQ(tta.stats.model_calls, 4 * tta.stats.batches);
  o.mirror_axes = {};
  torch::Tensor sum;
  for (const std::vector<int64_t>& dims : {std::vector<int64_t>{}, {2}, {3}, {2, 3}}) {
    FunctionTileModel flipped(
        [&](const torch::Tensor& x) {
          return dims.empty() ? net->forward(x) : net->forward(x.flip(dims)).flip(dims);
        },
        {1, 3, patch});
    const torch::Tensor l = as_tensor(predict_image(img, flipped, fixed_ct(), o).logits);
    sum = sum.defined() ? sum + l : l;
  }
  EXPECT_LT(max_abs_diff(as_tensor(tta.logits), sum / 4.0), 1e-5);
  // And mirroring changes something for this network (it is not flip-equivariant).
  EXPECT_GT(max_abs_diff(as_tensor(tta.logits),
                         as_tensor(predict_image(img, model, fixed_ct(), o).logits)),
            1e-4);
}

// A source that serves regions only and remembers what it was asked for.
class RegionOnlySource : public RegionSource {
 public:
  explicit RegionOnlySource(Image image) : image_(std::move(image)) {}
  Shape shape() const override { return image_.shape(); }
  DType dtype() const override { return image_.dtype(); }
  Image read(const Box& box) override {
    ++reads;
    max_rows = std::max(max_rows, box.dy * box.dz);
    return image_.region(box).clone();  // a copy, as a decoder would return
  }
  int64_t reads = 0, max_rows = 0;

 private:
  Image image_;
};

// Streamed band by band (regions in, rows of 16 out, as a tiled TIFF writer takes them) the result
// is identical, bit for bit, to the in-memory prediction, and memory follows the band.
TEST(Engine_Predictor, band_streamed_output_equals_in_memory_bit_for_bit) {
  for (int dims : {2, 3}) {
    const int64_t K = 3;
    auto net = make_tiny_conv(dims, 1, K, 3, 13);
    const std::vector<int64_t> patch =
        dims == 2 ? std::vector<int64_t>{32, 32} : std::vector<int64_t>{4, 16, 16};
    const Shape shape = dims == 2 ? Shape{1, 2, 301, 77} : Shape{1, 40, 33, 35};
    ModuleTileModel model(net, {1, K, patch});
    const Image img = random_image(DType::U16, shape, 0, 1000, 17);
    EngineOptions o;
    o.batch_size = 3;
    o.max_batches_in_flight = 3;
    o.mirror_axes = {1};
    o.outputs = kClasses | kProbabilities;
    Normalization zscore;  // per-image statistics: a pre-pass over the regions
    const Prediction whole = predict_image(img, model, zscore, o);

    RegionOnlySource source(img);
    Image classes = Image::zeros(DType::U8, Shape{1, shape.z, shape.y, shape.x});
    Image probs = Image::zeros(DType::F32, Shape{K, shape.z, shape.y, shape.x});
    int64_t chunks = 0, bands = 0;
    bool saw_last = false;
    RowRebander rebander(16, shape.y, kClasses, [&](const Image& rows, int64_t z, int64_t y0) {
      EXPECT_TRUE(rows.height() == 16 || y0 + rows.height() == shape.y);
      EXPECT_EQ(y0 % 16, 0);
      classes.region(Box{z, y0, 0, 1, rows.height(), shape.x}).copy_from(rows);
      ++chunks;
    });
    const EngineStats st = predict_bands(source, model, zscore, o, [&](const Band& b) {
      EXPECT_FALSE(saw_last);
      saw_last = b.last;
      ++bands;
      rebander.add(b);
      probs.region(Box{b.z0, b.y0, 0, b.dz, b.dy, shape.x}).copy_from(b.probabilities);
    });
    EXPECT_TRUE(saw_last);
    EXPECT_GT(bands, 2);
    EXPECT_EQ(chunks, shape.z * ((shape.y + 15) / 16));
    EXPECT_TRUE(bit_equal(classes, whole.classes)) << dims << "D";
    EXPECT_TRUE(bit_equal(probs, whole.probabilities)) << dims << "D";
    // Memory: at most one patch plus one batch worth of lines, never the whole image.
    const int64_t patch_lines = patch[0];  // 2D: rows of the patch; 3D: its slices
    const int64_t image_lines = dims == 2 ? shape.z * shape.y : shape.z;
    EXPECT_LE(st.peak_input_lines, patch_lines + 3 * patch_lines);
    EXPECT_LE(st.peak_accumulator_lines, 2 * patch_lines + 3 * patch_lines);
    EXPECT_LT(st.peak_accumulator_lines, image_lines / 2);
    EXPECT_GT(source.reads, 2);
  }
}

TEST(Engine_Predictor, bad_inputs_and_options_are_errors) {
  auto net = make_tiny_conv(2, 1, 2, 3, 1);
  ModuleTileModel model(net, {1, 2, {16, 16}});
  const Image rgb = random_image(DType::U8, Shape{3, 1, 20, 20}, 0, 255, 1);
  EXPECT_THROW(predict_image(rgb, model, Normalization{}, {}), Error);  // channels
  const Image grey = random_image(DType::U8, Shape{1, 1, 20, 20}, 0, 255, 1);
  EngineOptions o;
  o.edge_margin = 6;  // tiles at 0 and 4: 2 * 6 >= 16 - 4 leaves voxels without weight
  EXPECT_THROW(predict_image(grey, model, Normalization{}, o), Error);
  o = {};
  o.mirror_axes = {2};
  EXPECT_THROW(predict_image(grey, model, Normalization{}, o), Error);
  o = {};
  o.tile_step = 0.0;
  EXPECT_THROW(predict_image(grey, model, Normalization{}, o), Error);
  // A network that returns the wrong number of classes.
  ModuleTileModel wrong(net, {1, 5, {16, 16}});
  EXPECT_THROW(predict_image(grey, wrong, Normalization{}, {}), Error);
  // The callback's exceptions reach the caller.
  ImageSource src(grey);
  EXPECT_THROW(
      predict_bands(src, model, Normalization{}, {}, [](const Band&) { throw Error("disk full"); }),
      Error);
  // Non-finite logits are refused, as nnU-Net refuses inf.
  FunctionTileModel inf_model(
      [](const torch::Tensor& x) {
        auto out = torch::zeros({x.size(0), 2, x.size(2), x.size(3)});
        out.select(1, 1).fill_(std::numeric_limits<float>::infinity());
        return out;
      },
      {1, 2, {16, 16}});
  EXPECT_THROW(predict_image(grey, inf_model, Normalization{}, {}), Error);
}

}  // namespace
}  // namespace umamba::engine
