// `umamba convert`: batch conversions between instance labels and three-class maps, and
// per-object measurements, over files and folders.
//
//   to-classes    instance labels -> 0 background / 1 interior / 2 boundary (postprocess/targets.h)
//   to-instances  three-class maps or class probabilities [3,Z,Y,X] -> instance labels (reclaim
//                 or the paper's plain mode), written as uint16, or uint32 above 65,535 objects
//   measure       label images -> <stem>_objects.csv (regionprops_table columns); 2D also
//                 <stem>.geojson (QuPath detections) and, with an image, <stem>_overlay.png
//
// Inputs: files, and folders (their supported images, not recursive, sorted, hidden files
// skipped). Outputs go to a folder under the input's file name (with --suffix before and --ext
// replacing the extension), or to a file when there is exactly one input file and -o names an
// image file. Every output is written atomically (temporary name, renamed when complete). A file
// that fails is reported with its name and the reason and the batch goes on; the summary counts
// failures, and the command exits non-zero when any file failed. The folder also receives
// umamba_convert.json: version, operation, parameters, and each file's outcome.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "postprocess/targets.h"

namespace umamba::pipeline {

enum class ConvertOperation { ToClasses, ToInstances, Measure };

struct ConvertOptions {
  ConvertOperation operation = ConvertOperation::ToClasses;
  std::vector<std::filesystem::path> inputs;
  std::filesystem::path output;
  std::string suffix;     // appended to each output's stem
  std::string extension;  // output extension (".tif", ".png", ".nii.gz"); empty: the input's
  bool overwrite = true;  // false: a file whose output exists fails instead of replacing it
  postprocess::ClassTargetOptions classes;
  postprocess::InstanceOptions instances;
  // measure: folder of intensity images paired by name ("<stem>" or "<stem>" without a trailing
  // "_label"/"_labels"/"_mask"), for intensity columns and overlays; empty: labels only.
  std::filesystem::path images;
  bool geojson = true;  // measure: 2D outlines as GeoJSON
  bool overlay = true;  // measure: outlines over the image as PNG (needs images and OpenCV)
};

struct ConvertFileResult {
  std::filesystem::path input;
  std::vector<std::filesystem::path> outputs;
  bool ok = false;
  std::string error;     // when !ok: the reason, naming the file
  uint32_t objects = 0;  // to-instances/measure: objects found
};

struct ConvertSummary {
  std::vector<ConvertFileResult> files;
  int64_t succeeded() const;
  int64_t failed() const;
};

// The input files, in order (folders expanded); missing paths are kept so they fail visibly.
std::vector<std::filesystem::path> expand_inputs(const std::vector<std::filesystem::path>& inputs);

// Runs the batch (never throws for a single file's fault; throws Error only for a bad setup,
// e.g. no inputs or an output that cannot be created).
ConvertSummary run_convert(const ConvertOptions& options);

std::string format_convert_summary(const ConvertSummary& summary);

}  // namespace umamba::pipeline
