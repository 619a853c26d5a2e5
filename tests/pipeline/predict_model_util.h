// Test helpers for `umamba predict`: a tiny random-initialised model folder written through the
// model library, synthetic cell images, and the in-process prediction the CLI's output must equal.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/image.h"
#include "engine/predictor.h"
#include "engine/tile_model.h"
#include "io/image_io.h"
#include "model/model_folder.h"
#include "model/model_io.h"
#include "model/networks.h"
#include "postprocess/targets.h"

namespace umamba::pipeline::test {

namespace fs = std::filesystem;

// nnU-Net's PlainConvUNet, 2 stages (4, 8 features), 3x3 kernels, patch 32x32, 3 classes
// (background, interior, boundary): a few hundred parameters, fast on a CPU.
// With dims = 3: 3x3x3 kernels, patch 16x16x16.
inline model::NetworkConfig tiny_config(int dims = 2, int in_channels = 1) {
  model::NetworkConfig c;
  c.architecture = model::Architecture::PlainConvUNet;
  c.input_channels = in_channels;
  c.num_classes = 3;
  c.features_per_stage = {4, 8};
  if (dims == 3) {
    c.kernel_sizes = {{3, 3, 3}, {3, 3, 3}};
    c.strides = {{1, 1, 1}, {2, 2, 2}};
    c.patch_size = {16, 16, 16};
  } else {
    c.kernel_sizes = {{3, 3}, {3, 3}};
    c.strides = {{1, 1}, {2, 2}};
    c.patch_size = {32, 32};
  }
  c.n_conv_per_stage_encoder = {1, 1};
  c.n_conv_per_stage_decoder = {1};
  c.deep_supervision = false;
  return c;
}

// Synthetic cells: bright disks of radius 3-7 on a noisy background, u16, [1,1,h,w].
inline Image cell_image(int64_t h, int64_t w, uint32_t seed) {
  Image img = Image::zeros(DType::U16, {1, 1, h, w});
  std::mt19937 rng(seed);
  std::normal_distribution<double> noise(200.0, 40.0);
  uint16_t* p = img.data_as<uint16_t>();
  for (int64_t i = 0; i < h * w; ++i) p[i] = static_cast<uint16_t>(std::max(0.0, noise(rng)));
  std::uniform_int_distribution<int64_t> ry(0, h - 1), rx(0, w - 1);
  std::uniform_int_distribution<int> rr(3, 7);
  const int64_t cells = std::max<int64_t>(1, h * w / 300);
  for (int64_t k = 0; k < cells; ++k) {
    const int64_t cy = ry(rng), cx = rx(rng);
    const int r = rr(rng);
    for (int64_t y = std::max<int64_t>(0, cy - r); y <= std::min(h - 1, cy + r); ++y) {
      for (int64_t x = std::max<int64_t>(0, cx - r); x <= std::min(w - 1, cx + r); ++x) {
        if ((y - cy) * (y - cy) + (x - cx) * (x - cx) <= r * r) p[y * w + x] = 1500;
      }
    }
  }
  return img;
}

// Synthetic nuclei in 3D: bright balls of radius 2-4 on noise, u16, [1,d,h,w].
inline Image cell_volume(int64_t d, int64_t h, int64_t w, uint32_t seed) {
  Image img = Image::zeros(DType::U16, {1, d, h, w});
  std::mt19937 rng(seed);
  std::normal_distribution<double> noise(200.0, 40.0);
  uint16_t* p = img.data_as<uint16_t>();
  for (int64_t i = 0; i < d * h * w; ++i) p[i] = static_cast<uint16_t>(std::max(0.0, noise(rng)));
  std::uniform_int_distribution<int64_t> rz(0, d - 1), ry(0, h - 1), rx(0, w - 1);
  std::uniform_int_distribution<int> rr(2, 4);
  for (int64_t k = 0; k < std::max<int64_t>(1, d * h * w / 800); ++k) {
    const int64_t cz = rz(rng), cy = ry(rng), cx = rx(rng);
    const int r = rr(rng);
    for (int64_t z = std::max<int64_t>(0, cz - r); z <= std::min(d - 1, cz + r); ++z)
      for (int64_t y = std::max<int64_t>(0, cy - r); y <= std::min(h - 1, cy + r); ++y)
        for (int64_t x = std::max<int64_t>(0, cx - r); x <= std::min(w - 1, cx + r); ++x)
          if ((z - cz) * (z - cz) + (y - cy) * (y - cy) + (x - cx) * (x - cx) <= r * r)
            p[(z * h + y) * w + x] = 1500;
  }
  return img;
}

// Shifts the full-resolution head's bias so that each class's mean logit over a random input is
// zero: a random network then predicts all three classes, not one. With `interior_fraction` > 0,
// the interior class is then lowered until about that fraction of a random input is interior
// (3D volumes at a third interior percolate into one object).
inline void balance_classes(model::SegmentationNetwork& net, double interior_fraction = 0) {
  torch::NoGradGuard guard;
  net.eval();
  std::vector<int64_t> shape = {1, net.layout().config.input_channels};
  for (int p : net.layout().config.patch_size) shape.push_back(2 * p);
  const torch::Tensor logits = net.forward(torch::randn(shape)).front();  // [1, 3, ...]
  std::vector<int64_t> axes = {0};
  for (int64_t a = 2; a < logits.dim(); ++a) axes.push_back(a);
  torch::Tensor mean = logits.mean(axes);
  if (interior_fraction > 0) {
    std::vector<int64_t> per_class(static_cast<size_t>(logits.dim()), 1);
    per_class[1] = 3;
    const torch::Tensor l = logits - mean.view(per_class);
    const torch::Tensor margin =
        (l.select(1, 1) - torch::max(l.select(1, 0), l.select(1, 2))).flatten();
    const double shift = torch::quantile(margin, 1.0 - interior_fraction).item<double>();
    mean = mean.clone();
    mean[1] += shift;
  }
  const std::string head =
      "seg_layers." + std::to_string(net.layout().config.n_stages() - 2) + ".bias";
  bool found = false;
  for (auto& p : net.named_parameters()) {
    const std::string& key = p.key();
    if (key.size() >= head.size() &&
        key.compare(key.size() - head.size(), head.size(), head) == 0) {
      p.value().sub_(mean);
      found = true;
    }
  }
  if (!found) throw std::runtime_error("balance_classes: no parameter ending in " + head);
}

// Writes a model folder with `folds` folds ("0", "1", ...), each its own random network.
inline void make_tiny_model(const fs::path& dir, int folds = 2, uint64_t seed = 7, int dims = 2,
                            int in_channels = 1, double interior_fraction = 0) {
  const model::NetworkConfig config = tiny_config(dims, in_channels);
  std::vector<std::shared_ptr<model::SegmentationNetwork>> nets;
  std::map<std::string, const model::SegmentationNetwork*> by_fold;
  for (int f = 0; f < folds; ++f) {
    torch::manual_seed(seed + static_cast<uint64_t>(f));
    nets.push_back(model::make_network(config));
    balance_classes(*nets.back(), interior_fraction);
    by_fold[std::to_string(f)] = nets.back().get();
  }
  const nlohmann::json dataset = {{"channel_names", {{"0", "cells"}}},
                                  {"labels", {{"background", 0}, {"interior", 1}, {"boundary", 2}}},
                                  {"file_ending", ".tif"}};
  model::write_model_folder(dir.string(), config, by_fold, nullptr, dataset,
                            {{"configuration", dims == 3 ? "3d_fullres" : "2d"},
                             {"source", {{"kind", "test: random init"}}}});
}

// What `umamba predict` must produce for `image` with that model folder: every fold's logits
// averaged, z-score normalisation (no plans.json), then reclaim instances or the class map.
inline Image reference_labels(const fs::path& model_dir, const Image& image, bool mirror,
                              postprocess::InstanceMode mode, bool instances = true,
                              int64_t batch_size = 4) {
  torch::InferenceMode guard;
  const model::ModelFolder folder = model::read_model_folder(model_dir.string());
  std::vector<std::shared_ptr<model::SegmentationNetwork>> nets;
  for (const auto& f : folder.folds) {
    nets.push_back(model::load_network(folder, f));
    nets.back()->set_deep_supervision(false);
    nets.back()->eval();
  }
  engine::FunctionTileModel tm(
      [&](const torch::Tensor& x) {
        torch::Tensor sum;
        for (auto& n : nets) {
          torch::Tensor l = n->forward(x).front().to(torch::kFloat);
          sum = sum.defined() ? sum + l : l;
        }
        return nets.size() > 1 ? sum / static_cast<double>(nets.size()) : sum;
      },
      {1, 3, {32, 32}});
  engine::EngineOptions eo;
  eo.batch_size = batch_size;
  if (mirror) eo.mirror_axes = {0, 1};
  const auto pred = engine::predict_image(image, tm, engine::Normalization{}, eo);
  if (!instances) return pred.classes;
  postprocess::InstanceOptions opt;
  opt.mode = mode;
  return postprocess::classes_to_instances(pred.classes, opt);
}

}  // namespace umamba::pipeline::test
