// umamba's model folder, and the import of nnU-Net / U-Mamba results folders into it. This header
// is free of LibTorch (the pipeline and the CLI include it); model_io.h has the tensor side.
//
// Layout of a model folder (format "umamba-model", version 1):
//   network.json          NetworkConfig (network_config.h) the weights belong to
//   plans.json            the nnU-Net plans the network was configured from (when known)
//   dataset.json          labels and channels (when known)
//   fold_<f>/weights.pt   one per fold: a dict {official state_dict key: tensor} in torch.save's
//                         format (Python: torch.load(path, weights_only=True))
//   metadata.json         versions (umamba, git revision, LibTorch), creation time, architecture,
//                         configuration, every fold's weights file with its SHA-256 and parameter
//                         count, the effective hyperparameters, and where it came from
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "model/network_config.h"

namespace umamba::model {

struct ModelFolder {
  std::string path;
  NetworkConfig network;
  nlohmann::json metadata;
  nlohmann::json plans;            // null when absent
  nlohmann::json dataset;          // null when absent
  std::vector<std::string> folds;  // "0", "1", "all", ... as listed in metadata.json

  std::string weights_path(const std::string& fold) const;
};

// Reads and checks network.json, metadata.json (and plans/dataset when present); no tensors.
// Throws FileError naming the file at fault.
ModelFolder read_model_folder(const std::string& dir);

struct ImportOptions {
  std::string architecture;        // "" = from the checkpoint's trainer_name or the folder name
  std::string configuration;       // "" = from the checkpoint's init_args or the folder name
  std::vector<std::string> folds;  // "" = every fold_* with a checkpoint
  std::string checkpoint = "checkpoint_final.pth";
};

// Converts RESULTS_DIR (plans.json, dataset.json, fold_*/<checkpoint> with 'network_weights')
// into a model folder at `out_dir`, which must not exist or be empty. Each fold's weights are
// loaded strictly into the network built from the plans (every parameter present with its shape,
// the official alias keys equal to their originals, nothing left over) before they are written.
// Returns the metadata written. Throws on any mismatch, naming file and key.
nlohmann::json import_nnunet_results(const std::string& results_dir, const std::string& out_dir,
                                     const ImportOptions& options = {});

// Removes a file or a folder tree (POSIX nftw, no symlink following); a missing path is not an
// error. Use it instead of std::filesystem::remove_all in programs that link the torch wheel,
// whose libtorch.so carries a crashing copy of remove_all. Throws FileError on failure.
void remove_tree(const std::string& path);

}  // namespace umamba::model
