// Reading and writing images: one interface, the format chosen by extension and checked against
// the file's content.
//
//   .tif .tiff .btf .tf8   libtiff: 1-4 samples, 8-64 bit integers and floats, strips or tiles,
//   every
//                          built-in compression, BigTIFF, multi-page stacks as Z, region reads
//   .nii .nii.gz           nifticlib: any datatype, spacing and orientation (qform/sform)
//   .png .jpg .jpeg .bmp   OpenCV imgcodecs (builds with UMAMBA_OPENCV=ON), RGB order
//
// Every reader validates what the file declares before allocating (shape, sample format, sizes
// against the file's length and the allocation limit of core/memory.h) and throws FileError
// naming the file and the problem. Every writer writes a temporary file in the target folder and
// renames it into place when complete (io/atomic_file.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "core/image.h"

namespace umamba::io {

// What a reader knows from the header, before any pixel is decoded.
struct ImageInfo {
  std::string format;  // "tiff", "nifti", "png", "jpeg", "bmp"
  Shape shape;         // [C,Z,Y,X]
  DType dtype = DType::U8;
  Geometry geometry;
  Image::Metadata metadata;  // e.g. "tiff.compression", "tiff.tiled", "nifti.sform_code"
};

class ImageReader {
 public:
  virtual ~ImageReader() = default;
  virtual const ImageInfo& info() const = 0;
  // The whole image (geometry and metadata filled in).
  virtual Image read() = 0;
  // All channels of a box. Formats with strips or tiles decode only the ones the box touches;
  // others decode the whole image once and crop. Throws Error when the box leaves the image.
  virtual Image read_region(const Box& box) = 0;
};

// Opens `path` by extension (and magic bytes); throws FileError when missing, unreadable or
// unsupported, Unsupported when the format is compiled out of this build.
std::unique_ptr<ImageReader> open_image(const std::filesystem::path& path);

// open_image(path)->read().
Image read_image(const std::filesystem::path& path);

// True when this build reads and writes files with this extension.
bool is_supported_image(const std::filesystem::path& path);

enum class Compression { None, Deflate, Zstd, Lzw };
Compression compression_from_name(const std::string& name);  // "none", "deflate", "zstd", "lzw"

struct WriteOptions {
  Compression compression = Compression::Deflate;  // TIFF only
  // TIFF tile edge in pixels (multiple of 16); 0 chooses: strips up to 4096×4096 pixels per
  // plane, 512×512 tiles above.
  int64_t tile_size = 0;
  bool overwrite = true;  // false: refuse to replace an existing file
  // NIfTI: the header of this file (typically the image the labels were predicted from) is kept
  // (qform/sform, pixdim, units); only datatype and scaling change. Empty: built from geometry.
  std::filesystem::path reference;
};

// Writes `image` atomically in the format of the extension. TIFF stacks (Z > 1) get ImageJ
// metadata with spacing when the dtype allows it (u8, u16, f32); BigTIFF when the file needs it.
void write_image(const std::filesystem::path& path, const Image& image,
                 const WriteOptions& options = {});

// Label images: integer labels written as uint16, or uint32 when the largest label exceeds
// 65,535 (any integer input dtype; negative values are an error).
void write_labels(const std::filesystem::path& path, const Image& labels,
                  const WriteOptions& options = {});

// Writes a TIFF too large for memory, band by band in order: Y bands of a 2D image (each band a
// multiple of the tile height, except the last), then the next Z slice. Memory stays proportional
// to one band. The file appears under its final name only after finish(); an unfinished writer
// removes its temporary when destroyed.
class TiffBandWriter {
 public:
  // `shape` and `dtype` of the whole image; `geometry` is written as resolution / ImageJ spacing.
  TiffBandWriter(const std::filesystem::path& path, const Shape& shape, DType dtype,
                 const Geometry& geometry = {}, const WriteOptions& options = {});
  ~TiffBandWriter();
  TiffBandWriter(const TiffBandWriter&) = delete;
  TiffBandWriter& operator=(const TiffBandWriter&) = delete;

  // Rows [next_row(), next_row() + band.height()) of slice next_slice(), all channels.
  void write_band(const Image& band);
  int64_t next_row() const;
  int64_t next_slice() const;
  // Checks that every row was written, closes the file and renames it into place.
  void finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace umamba::io
