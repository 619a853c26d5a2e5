// Input discovery for batch commands: files, folders (optionally recursive), glob patterns and list
// files become one sorted list of images, each with the relative path its outputs mirror.
//
// Rules:
//   file      kept as given, even when missing or of an unknown type, so that it fails visibly
//             and per file later; relative path = its file name.
//   folder    its images (io::is_supported_image), hidden entries (".name") skipped; with
//             `recursive` also those of its sub-folders; relative path = the path under the folder.
//   glob      a path with *, ? or [...] in it (fnmatch(3) rules per path component, hidden names
//             only when the pattern component starts with '.'); "**" as a whole component
//             matches any number of folders, zero included; relative path = the path under the
//             pattern's leading folders that hold no wildcard. Only images match.
//   list      a text file, one input (file, folder or glob) per line; empty lines and lines
//             starting with '#' are skipped; relative entries are resolved against the list
//             file's folder.
// Folders and globs skip files whose name (without extension) ends with one of
// `skip_stem_suffixes` (the command's own outputs, e.g. "_label"), and never enter `skip_dir`
// (the output folder when it lies inside an input folder).
// The result is sorted by relative path (bytewise), duplicates of the same file removed; two
// different files with the same relative path are an error, since their outputs would collide.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace umamba::pipeline {

struct InputFile {
  std::filesystem::path path;      // as found: relative to the working folder or absolute
  std::filesystem::path relative;  // mirrored under the output folder, e.g. "plate1/a.tif"
};

struct DiscoveryOptions {
  bool recursive = false;
  std::filesystem::path list_file;              // empty: none
  std::vector<std::string> skip_stem_suffixes;  // e.g. {"_label", "_prob"}
  std::filesystem::path skip_dir;               // empty: none
};

// Throws Error for a list file that cannot be read, a glob whose leading folder is missing, or
// colliding relative paths. An empty result is not an error here.
std::vector<InputFile> discover_inputs(const std::vector<std::string>& inputs,
                                       const DiscoveryOptions& options = {});

// True when `text` contains a glob wildcard (*, ? or [).
bool has_wildcard(const std::string& text);

// One path component against one fnmatch(3) pattern component (no "**" here).
bool match_component(const std::string& pattern, const std::string& name);

// "a/b/cell.nii.gz" -> {"cell", ".nii.gz"}; knows .nii.gz, .ome.tif and .ome.tiff.
std::pair<std::string, std::string> split_image_name(const std::filesystem::path& path);

}  // namespace umamba::pipeline
