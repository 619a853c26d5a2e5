// Training datasets the planner reads: what dataset.json says and where each case's files are.
//
// Two layouts are recognised (reference: nnU-Net v2 documentation/dataset_format.md @ b00b41f2):
//  * nnU-Net raw: DATASET/dataset.json, imagesTr/<case>_<XXXX><file_ending> (XXXX = 4-digit channel
//    index), labelsTr/<case><file_ending>; or an explicit "dataset" map in dataset.json.
//  * NeurIPS 2022 cell challenge: DATASET/images/<name>.<png|bmp|jpg|jpeg|tif|tiff> beside
//    DATASET/labels/<name>_label.<tif|tiff|png>. Channel names are R, G, B when any image is RGB
//    (grey images are then replicated to three channels, as the challenge baseline and U-Mamba's
//    Dataset703 do), else "grey"; labels are U-Mamba's background / interior / boundary.
// Limits: region-based labels (lists in "labels") are counted as one label each; dataset.json's
// "modality" (old name of channel_names) is accepted.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace umamba::plan {

enum class DatasetLayout { NnUNetRaw, NeurIPSCells, FingerprintOnly };

struct Case {
  std::string id;
  std::vector<std::filesystem::path> images;  // one file per channel group, channel order
  std::filesystem::path label;
};

struct DatasetDescription {
  std::string name;  // folder name, e.g. Dataset703_NeurIPSCell
  DatasetLayout layout = DatasetLayout::NnUNetRaw;
  std::vector<std::string> channel_names;  // index order (dataset.json "channel_names")
  // Label name -> value, in dataset.json order ("labels"); includes background.
  std::vector<std::pair<std::string, int64_t>> labels;
  int64_t num_training = 0;             // dataset.json "numTraining"
  std::string file_ending;              // ".nii.gz", ".png", ... (mixed for NeurIPS: "")
  std::string image_reader_writer;      // nnU-Net's reader name for plans.json (informative)
  std::vector<Case> cases;              // sorted by id
  bool replicate_grey_to_rgb = false;   // NeurIPS layout with mixed grey / RGB images
  nlohmann::ordered_json dataset_json;  // what dataset.json holds (or what we made for it)
};

// Parses the fields of a dataset.json the planner uses; `origin` names it in errors.
DatasetDescription parse_dataset_json(const nlohmann::ordered_json& dataset_json,
                                      const std::string& origin);

// Finds the layout of `folder` and lists its training cases. Throws FileError when the folder is
// neither layout, when a case misses a channel or its label, or when nothing is found.
DatasetDescription discover_dataset(const std::filesystem::path& folder);

// nnU-Net's reader for a file ending (NaturalImage2DIO, SimpleITKIO, Tiff3DIO, ...).
std::string nnunet_reader_for_ending(const std::string& file_ending);

}  // namespace umamba::plan
