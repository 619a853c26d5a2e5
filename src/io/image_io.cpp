// The format-neutral entry points: pick the format from the extension, check it against the
// file's first bytes, and dispatch; label writing (dtype choice) shared by every format.
#include "io/image_io.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <limits>

#include "core/error.h"
#include "core/fault_injection.h"
#include "core/log.h"
#include "io/formats.h"

namespace umamba::io {
namespace fs = std::filesystem;

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

std::string format_name(Format f) {
  switch (f) {
    case Format::Tiff:
      return "tiff";
    case Format::Nifti:
      return "nifti";
    case Format::Png:
      return "png";
    case Format::Jpeg:
      return "jpeg";
    case Format::Bmp:
      return "bmp";
    case Format::Unknown:
      break;
  }
  return "unknown";
}

Format format_from_extension(const fs::path& path) {
  const std::string name = lower(path.filename().string());
  auto ends_with = [&](const char* suffix) {
    const size_t n = std::strlen(suffix);
    return name.size() > n && name.compare(name.size() - n, n, suffix) == 0;
  };
  if (ends_with(".tif") || ends_with(".tiff") || ends_with(".btf") || ends_with(".tf8") ||
      ends_with(".tf2"))
    return Format::Tiff;
  if (ends_with(".nii") || ends_with(".nii.gz")) return Format::Nifti;
  if (ends_with(".png")) return Format::Png;
  if (ends_with(".jpg") || ends_with(".jpeg")) return Format::Jpeg;
  if (ends_with(".bmp")) return Format::Bmp;
  return Format::Unknown;
}

Format format_from_content(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char b[352] = {};
  in.read(reinterpret_cast<char*>(b), sizeof b);
  const auto n = in.gcount();
  if (n >= 4 && ((b[0] == 'I' && b[1] == 'I' && (b[2] == 42 || b[2] == 43) && b[3] == 0) ||
                 (b[0] == 'M' && b[1] == 'M' && b[2] == 0 && (b[3] == 42 || b[3] == 43))))
    return Format::Tiff;
  if (n >= 8 && std::memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0) return Format::Png;
  if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return Format::Jpeg;
  if (n >= 2 && b[0] == 'B' && b[1] == 'M') return Format::Bmp;
  if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b) return Format::Nifti;  // gzip: .nii.gz
  if (n >= 348 && (std::memcmp(b + 344, "n+1", 4) == 0 || std::memcmp(b + 344, "ni1", 4) == 0))
    return Format::Nifti;
  return Format::Unknown;
}

void check_box(const fs::path& path, const Shape& s, const Box& b) {
  const bool inside = b.dz >= 1 && b.dy >= 1 && b.dx >= 1 && b.z0 >= 0 && b.y0 >= 0 && b.x0 >= 0 &&
                      b.z0 <= s.z - b.dz && b.y0 <= s.y - b.dy && b.x0 <= s.x - b.dx;
  if (!inside) {
    fail("{}: region z {}+{}, y {}+{}, x {}+{} is empty or leaves the image {}", path.string(),
         b.z0, b.dz, b.y0, b.dy, b.x0, b.dx, to_string(s));
  }
}

Geometry region_geometry(const Geometry& g, const Box& box) {
  Geometry r = g;
  // Index offsets along (X, Y, Z) in world units; direction columns are the index axes.
  const double step[3] = {box.x0 * g.spacing[2], box.y0 * g.spacing[1], box.z0 * g.spacing[0]};
  for (int row = 0; row < 3; ++row) {
    for (int col = 0; col < 3; ++col) r.origin[row] += g.direction[row * 3 + col] * step[col];
  }
  return r;
}

std::unique_ptr<ImageReader> open_image(const fs::path& path) {
  if (fault::should_fail(fault::Kind::Read, path.native())) {  // test hook (core/fault_injection.h)
    throw FileError(path.string(), "cannot be read: injected fault (UMAMBA_FAULT_INJECT read)");
  }
  std::error_code ec;
  if (!fs::exists(path, ec)) throw FileError(path.string(), "no such file");
  if (!fs::is_regular_file(path, ec)) throw FileError(path.string(), "not a regular file");
  const Format by_name = format_from_extension(path);
  const Format by_content = format_from_content(path);
  Format format = by_name;
  if (by_content != Format::Unknown && by_content != by_name) {
    if (by_name != Format::Unknown) {
      log::warn("{}: the extension says {} but the content is {}; reading it as {}", path.string(),
                format_name(by_name), format_name(by_content), format_name(by_content));
    }
    format = by_content;
  }
  switch (format) {
    case Format::Tiff:
      return open_tiff(path);
    case Format::Nifti:
      return open_nifti(path);
    case Format::Png:
    case Format::Jpeg:
    case Format::Bmp:
      return open_opencv(path, format);
    case Format::Unknown:
      break;
  }
  throw FileError(path.string(),
                  "not a recognised image (expected .tif/.tiff, .nii/.nii.gz, .png, .jpg or .bmp "
                  "with matching content)");
}

Image read_image(const fs::path& path) {
  return open_image(path)->read();
}

bool is_supported_image(const fs::path& path) {
  switch (format_from_extension(path)) {
    case Format::Tiff:
    case Format::Nifti:
      return true;
    case Format::Png:
    case Format::Jpeg:
    case Format::Bmp:
#ifdef UMAMBA_WITH_OPENCV
      return true;
#else
      return false;
#endif
    case Format::Unknown:
      break;
  }
  return false;
}

Compression compression_from_name(const std::string& name) {
  const std::string n = lower(name);
  if (n == "none" || n == "raw") return Compression::None;
  if (n == "deflate" || n == "zlib" || n == "zip") return Compression::Deflate;
  if (n == "zstd") return Compression::Zstd;
  if (n == "lzw") return Compression::Lzw;
  fail("unknown compression '{}' (expected none, deflate, zstd or lzw)", name);
}

std::string compression_name(Compression c) {
  switch (c) {
    case Compression::None:
      return "none";
    case Compression::Deflate:
      return "deflate";
    case Compression::Zstd:
      return "zstd";
    case Compression::Lzw:
      return "lzw";
  }
  return "?";
}

void write_image(const fs::path& path, const Image& image, const WriteOptions& options) {
  UMAMBA_CHECK(!image.empty(), "{}: cannot write an empty image", path.string());
  const Format format = format_from_extension(path);
  switch (format) {
    case Format::Tiff:
      return write_tiff(path, image, options);
    case Format::Nifti:
      return write_nifti(path, image, options);
    case Format::Png:
    case Format::Jpeg:
    case Format::Bmp:
      return write_opencv(path, image, format, options);
    case Format::Unknown:
      break;
  }
  fail("{}: cannot tell the output format from the extension (use .tif, .nii.gz, .png, ...)",
       path.string());
}

namespace {

// Largest label, checking that every value is a non-negative integer.
uint64_t max_label(const fs::path& path, const Image& labels) {
  UMAMBA_CHECK(!dtype_is_float(labels.dtype()),
               "{}: labels must be integers, got {} (cast them first)", path.string(),
               dtype_name(labels.dtype()));
  const Image c = labels.contiguous();
  return visit_dtype(c.dtype(), [&](auto tag) -> uint64_t {
    using T = decltype(tag);
    const T* p = static_cast<const T*>(c.data());
    const int64_t n = c.element_count();
    T hi = 0, lo = 0;
    for (int64_t i = 0; i < n; ++i) {
      hi = std::max(hi, p[i]);
      lo = std::min(lo, p[i]);
    }
    if constexpr (std::is_signed_v<T>) {
      if (lo < 0)
        fail("{}: labels must not be negative (found {})", path.string(), static_cast<int64_t>(lo));
    }
    return static_cast<uint64_t>(hi);
  });
}

}  // namespace

void write_labels(const fs::path& path, const Image& labels, const WriteOptions& options) {
  UMAMBA_CHECK(!labels.empty(), "{}: cannot write an empty label image", path.string());
  const uint64_t hi = max_label(path, labels);
  const Format format = format_from_extension(path);
  DType target;
  if (format == Format::Nifti) {
    target = hi <= 255 ? DType::U8 : hi <= 65535 ? DType::U16 : DType::U32;
  } else {
    target = hi <= 65535 ? DType::U16 : DType::U32;
  }
  if (hi > std::numeric_limits<uint32_t>::max()) {
    fail("{}: largest label {} does not fit uint32", path.string(), hi);
  }
  if ((format == Format::Png || format == Format::Bmp || format == Format::Jpeg) &&
      target != DType::U16) {
    fail("{}: largest label {} does not fit a 16-bit {}; write labels as .tif", path.string(), hi,
         format_name(format));
  }
  UMAMBA_CHECK(format != Format::Jpeg && format != Format::Bmp,
               "{}: JPEG and BMP cannot hold 16-bit labels losslessly; use .tif or .png",
               path.string());
  if (labels.dtype() == target) return write_image(path, labels, options);
  Image converted = labels.cast(target);
  converted.geometry() = labels.geometry();
  converted.metadata() = labels.metadata();
  write_image(path, converted, options);
}

}  // namespace umamba::io
