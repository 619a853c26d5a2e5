// The per-format entry points behind image_io.h (internal). Each throws FileError for a bad input
// file, Error for a bad request, Unsupported for what this build cannot do.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "io/image_io.h"

namespace umamba::io {

enum class Format { Unknown, Tiff, Nifti, Png, Jpeg, Bmp };

std::string format_name(Format f);  // "tiff", "nifti", "png", "jpeg", "bmp"
// By extension only (case-insensitive; ".nii.gz" included).
Format format_from_extension(const std::filesystem::path& path);
// By the first bytes of the file; Unknown when unrecognised or unreadable.
Format format_from_content(const std::filesystem::path& path);

std::unique_ptr<ImageReader> open_tiff(const std::filesystem::path& path);
std::unique_ptr<ImageReader> open_nifti(const std::filesystem::path& path);
std::unique_ptr<ImageReader> open_opencv(const std::filesystem::path& path, Format format);

void write_tiff(const std::filesystem::path& path, const Image& image, const WriteOptions& options);
void write_nifti(const std::filesystem::path& path, const Image& image,
                 const WriteOptions& options);
void write_opencv(const std::filesystem::path& path, const Image& image, Format format,
                  const WriteOptions& options);

// Checks that `box` is non-empty and inside `shape` (throws Error naming `path` otherwise).
void check_box(const std::filesystem::path& path, const Shape& shape, const Box& box);
// The geometry of a region: same spacing and direction, origin moved to the box's first voxel.
Geometry region_geometry(const Geometry& g, const Box& box);

}  // namespace umamba::io
