// A model folder (model/model_folder.h) as `umamba predict` uses it: what it is, without tensors
// (ModelInfo), and its networks loaded on a device as the engine's TileModel.
//
// Folds: one selected fold is run as it is; several are ensembled as nnU-Net v2 ensembles folds in
// predict_sliding_window_return_logits (every fold's logits for the same tile averaged before
// blending; Gaussian blending and mirroring are linear, so this equals averaging the folds' blended
// logits). Networks run without deep supervision (the full-resolution head only).
// Normalisation comes from plans.json (the model's configuration, nnU-Net's keys); a folder without
// plans gets z-score per channel, as nnU-Net's default. Mirroring TTA flips every spatial axis
// (nnU-Net's default allowed axes; the trainer's own list is not in the folder).
// Spacing: a 3D configuration's "spacing" (and the plans' "transpose_forward") are read into
// ModelInfo; `umamba predict` resamples volumes to that spacing and the prediction back (see
// predict.h), as nnU-Net does.
// Limits: 2D models are not resampled (inputs are taken at the training spacing, true for the 2D
// cell configurations; a 3D volume under a 2D model is predicted slice by slice at its own
// in-plane spacing); no cropping to the non-zero region.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/normalization.h"

namespace umamba::engine {
class TileModel;
}

namespace umamba::pipeline {

struct ModelInfo {
  std::string path;
  std::string architecture;        // "UMambaBot", ...
  std::string configuration;       // "2d", "3d_fullres", ... ("" when the folder does not say)
  std::vector<std::string> folds;  // selected folds, ensembled when several
  std::vector<std::string> available_folds;
  int64_t in_channels = 1;
  int64_t num_classes = 2;
  std::vector<int64_t> patch_size;  // [Y, X] or [Z, Y, X]
  std::string hash;                 // SHA-256 of metadata.json (it lists every fold's SHA-256)
  nlohmann::json fold_sha256;       // {"0": "<hex>", ...} of the selected folds
  nlohmann::json labels;            // dataset.json "labels" (null when absent)
  // 3D configurations: the plans' target spacing [Z,Y,X] after transpose_forward (empty: none
  // given, no resampling) and the axis order the network was trained in.
  std::vector<double> spacing;
  std::vector<int64_t> transpose_forward{0, 1, 2};
  engine::Normalization normalization;
  std::string normalization_source;  // "plans.json" or "default z-score"
  int spatial_dims() const { return static_cast<int>(patch_size.size()); }
};

// Reads and checks the folder (network.json, metadata.json, plans/dataset when present).
// `folds`: comma-separated fold names; empty = every fold in the folder. Throws Error naming the
// file or fold at fault; Unsupported in builds without LibTorch.
ModelInfo inspect_model(const std::string& dir, const std::string& folds);

// "auto" (cuda:0 when a GPU is visible, else cpu), "cpu", "cuda" (= cuda:0), "cuda:N", or "all"
// (every visible GPU; the CPU when there is none). Throws Error for a GPU that is not visible.
std::vector<std::string> resolve_devices(const std::string& spec);

// Loads the selected folds' networks on `device` (weights checked against their SHA-256) as one
// TileModel. Throws Error / FileError.
std::shared_ptr<engine::TileModel> load_tile_model(const ModelInfo& info,
                                                   const std::string& device);

// LibTorch's intra-op threads (CPU inference); n <= 0 leaves LibTorch's default.
void set_inference_threads(int n);

// "libtorch <version>" and the CUDA runtime, for manifests.
nlohmann::json inference_runtime();

}  // namespace umamba::pipeline
