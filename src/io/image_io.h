// Reading and writing images: one interface, the format chosen by extension and checked against
// the file's content (magic bytes win when they disagree with the extension).
//
//   .tif .tiff .btf .tf8   libtiff: 1-64 samples, 8-64 bit integers and floats, strips or tiles,
//                          every built-in compression, BigTIFF, multi-page stacks as Z, region
//                          reads that decode only the strips/tiles they touch
//   .nii .nii.gz           NIfTI-1 (nifticlib's header and matrix code): any datatype, spacing
//                          and orientation (sform, else qform), world = RAS
//   .png .jpg .jpeg .bmp   OpenCV imgcodecs (builds with UMAMBA_OPENCV=ON), RGB order
//
// Every reader validates what the file declares before allocating (shape, sample format, sizes
// against the file's length and the allocation limit of core/memory.h) and throws FileError
// naming the file and the problem. Every writer writes a temporary file in the target folder and
// renames it into place when complete (io/atomic_file.h). docs/io.md describes the conventions.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "core/image.h"

namespace umamba::io {

// What a reader knows from the header, before any pixel is decoded (PNG/JPEG/BMP are decoded
// once on the first call to info()).
struct ImageInfo {
  std::string format;  // "tiff", "nifti", "png", "jpeg", "bmp"
  Shape shape;         // [C,Z,Y,X]
  DType dtype = DType::U8;
  Geometry geometry;
  // e.g. "tiff.compression", "tiff.layout", "tiff.planar", "nifti.sform_code", "source.path"
  Image::Metadata metadata;
};

class ImageReader {
 public:
  virtual ~ImageReader() = default;
  virtual const ImageInfo& info() const = 0;
  // The whole image (geometry and metadata filled in).
  virtual Image read() = 0;
  // All channels of a box. TIFF decodes only the strips/tiles the box touches, in parallel (TBB,
  // one libtiff handle per thread); NIfTI and OpenCV formats decode the whole image once (kept by
  // the reader) and crop. Throws Error when the box leaves the image. Readers are thread-safe:
  // concurrent TIFF region reads run in parallel, other formats serialise.
  virtual Image read_region(const Box& box) = 0;
};

// Opens `path` by extension (and magic bytes); throws FileError when missing, unreadable, corrupt
// or unsupported, Unsupported when the format is compiled out of this build.
std::unique_ptr<ImageReader> open_image(const std::filesystem::path& path);

// open_image(path)->read().
Image read_image(const std::filesystem::path& path);

// True when this build reads and writes files with this extension.
bool is_supported_image(const std::filesystem::path& path);

enum class Compression { None, Deflate, Zstd, Lzw };
Compression compression_from_name(const std::string& name);  // "none", "deflate", "zstd", "lzw"
std::string compression_name(Compression c);

// TIFF differencing before compression. Auto: horizontal differencing for integers, the
// floating-point predictor for floats, none when uncompressed.
enum class Predictor { Auto, None, Horizontal, FloatingPoint };

struct WriteOptions {
  Compression compression = Compression::Deflate;  // TIFF only
  // Deflate 1-9 (default 6), zstd 1-22 (default 9); -1 chooses the default.
  int compression_level = -1;
  Predictor predictor = Predictor::Auto;  // TIFF only
  // TIFF tile edge in pixels (multiple of 16); 0 chooses: strips up to 4096×4096 pixels per
  // plane, 512×512 tiles above; -1 forces strips.
  int64_t tile_size = 0;
  bool planar = false;   // TIFF: channels as separate planes (PlanarConfiguration 2)
  bool bigtiff = false;  // TIFF: force BigTIFF (chosen automatically above ~3.5 GiB)
  // TIFF: compress the tiles of each tile row in parallel (TBB); the bytes are identical to the
  // one-thread path (false), which is libtiff's own TIFFWriteEncodedTile.
  bool parallel = true;
  bool overwrite = true;  // false: refuse to replace an existing file
  // NIfTI: the header of this file (typically the image the labels were predicted from) is kept
  // (qform/sform, pixdim, units, intent, description); only dimensions, datatype and scaling
  // change. Its X/Y/Z size must match the image. Empty: the header is built from the geometry.
  std::filesystem::path reference;
};

// Writes `image` atomically in the format of the extension. TIFF stacks (Z > 1) with one channel
// get ImageJ metadata with spacing when the dtype allows it (u8, u16, f32), the file is
// compressed and not BigTIFF; other TIFFs carry a JSON description (tifffile's "shaped" form) with
// spacing and unit.
void write_image(const std::filesystem::path& path, const Image& image,
                 const WriteOptions& options = {});

// Label images: integer labels written as uint16, or uint32 when the largest label exceeds 65,535
// (TIFF, PNG: uint16 only); NIfTI takes the smallest of uint8/uint16/uint32 that holds the largest
// label, as nnU-Net writes segmentations. Any integer input dtype; negative values and float
// inputs are an error.
void write_labels(const std::filesystem::path& path, const Image& labels,
                  const WriteOptions& options = {});

// Writes a TIFF too large for memory, band by band in order: Y bands of one slice (any heights;
// rows are buffered up to one tile or strip row), then the next Z slice. Memory stays
// proportional to one tile row. The file appears under its final name only after finish(); an
// unfinished writer removes its temporary when destroyed.
class TiffBandWriter {
 public:
  // `shape` and `dtype` of the whole image; `geometry` is written as resolution / ImageJ spacing.
  TiffBandWriter(const std::filesystem::path& path, const Shape& shape, DType dtype,
                 const Geometry& geometry = {}, const WriteOptions& options = {});
  ~TiffBandWriter();
  TiffBandWriter(const TiffBandWriter&) = delete;
  TiffBandWriter& operator=(const TiffBandWriter&) = delete;

  // Rows [next_row(), next_row() + band.height()) of slice next_slice(), all channels; band has
  // Z = 1, the image's width, channels and dtype.
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
