// The `umamba synth` job: generates `count` synthetic images with instance labels (src/synth) and
// writes them as a dataset folder in the NeurIPS 2022 Cell Segmentation layout or the nnU-Net v2
// raw layout, with a manifest of how they were made.
//
//   neurips: OUT/images/<name>.tif, OUT/labels/<name>_label.tiff
//   nnunet:  OUT/imagesTr/<name>_<channel:04>.tif (one file per channel),
//            OUT/labelsTr/<name>.tif, OUT/dataset.json; 3D files get a <file>.json sidecar with
//            {"spacing": [z, y, x]} (nnU-Net's Tiff3DIO convention)
//   both:    OUT/synth.json: generator version, effective parameters, and per image its seed and
//            the cells requested / placed / in touching clusters
//
// Names are <prefix>_<index> with the index zero-padded to 4 digits (more when count > 10,000).
// Image i uses seed + i, so any single image can be regenerated on its own. Labels are instance
// labels (0 background, 1..N), uint16 or uint32 by count; dataset.json marks them "label_kind":
// "instance". With nnunet_labels = Classes, labelsTr holds instead the NeurIPS organisers'
// three-class maps (u8: 0 background, 1 interior, 2 boundary; postprocess::instances_to_classes,
// the recipe U-Mamba's Dataset703 was trained on), dataset.json declares those classes, and the
// instances go to OUT/instancesTr/<name>.tif for instance scoring.
// 2D images above `stream_pixels` elements are rendered and written band by band (memory stays
// proportional to one band; not with three-class labels, which need the whole image); every file
// appears under its final name only when complete.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "io/image_io.h"
#include "synth/synth.h"

namespace umamba::pipeline {

enum class SynthLayout { Neurips, Nnunet };
enum class NnunetLabels { Instances, Classes };

// "neurips" or "nnunet"; throws Error otherwise.
SynthLayout synth_layout_from_name(const std::string& name);

// "instances" or "classes"; throws Error otherwise.
NnunetLabels nnunet_labels_from_name(const std::string& name);

// "512x512" (Y×X) or "64x256x256" (Z×Y×X) into params.depth/height/width; throws Error naming
// the text when it is not 2 or 3 positive integers joined by 'x'.
void parse_synth_size(const std::string& text, synth::SynthParams& params);

struct SynthJob {
  std::filesystem::path output;  // the dataset folder (created)
  int64_t count = 1;             // images
  synth::SynthParams params;     // params.seed: the first image's seed
  SynthLayout layout = SynthLayout::Neurips;
  NnunetLabels nnunet_labels = NnunetLabels::Instances;  // nnunet layout only
  std::string prefix = "synth";
  std::string dataset_name = "umamba_synth";  // dataset.json "name" (nnunet)
  io::Compression compression = io::Compression::Deflate;
  int64_t stream_pixels = int64_t{1} << 26;  // 2D images with more elements stream in bands
};

struct SynthImageRecord {
  std::string name;
  uint64_t seed = 0;
  int64_t cells_requested = 0, cells_placed = 0, cells_clustered = 0;
  std::vector<std::filesystem::path> images;  // one per file written (per channel for nnunet)
  std::filesystem::path labels;
  std::filesystem::path instances;  // nnunet with Classes: the instance labels; else empty
};

// Runs the job; returns what it wrote, in order.
std::vector<SynthImageRecord> run_synth(const SynthJob& job);

}  // namespace umamba::pipeline
