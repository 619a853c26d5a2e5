// Tensor side of the model folder (model_folder.h): weights files and networks.
#pragma once

#include <torch/types.h>

#include <map>
#include <memory>
#include <string>

#include "model/model_folder.h"
#include "model/networks.h"

namespace umamba::model {

// Writes `net`'s weights under the official state_dict keys (aliases included, sharing storage)
// in torch.save's format (torch_file.h); the file is complete or absent (temporary, then rename).
void save_weights(const torch::nn::Module& net, const std::string& path);

// Reads a weights file written by save_weights (or any torch.save'd dict of str → tensor).
std::map<std::string, torch::Tensor> read_weights(const std::string& path);

// Writes a model folder (see model_folder.h) holding `folds` (fold name → network built from
// `config`). `extra` is merged into metadata.json (e.g. {"source": ...}). `dir` must not exist or
// be empty. Returns the metadata written.
nlohmann::json write_model_folder(const std::string& dir, const NetworkConfig& config,
                                  const std::map<std::string, const SegmentationNetwork*>& folds,
                                  const nlohmann::json& plans, const nlohmann::json& dataset,
                                  const nlohmann::json& extra = {});

// Builds the folder's network and loads one fold's weights (checking its SHA-256 against
// metadata.json), on `device`. An empty fold takes the first listed.
std::shared_ptr<SegmentationNetwork> load_network(const ModelFolder& folder,
                                                  const std::string& fold = "",
                                                  torch::Device device = torch::kCPU);

}  // namespace umamba::model
