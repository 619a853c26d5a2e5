// PNG, JPEG and BMP through OpenCV imgcodecs (builds with UMAMBA_OPENCV=ON).
//
// Method: before decoding, the file's own header is parsed here for its width and height (PNG
// IHDR, BMP info header, JPEG SOFn marker) so that an absurd size is refused before OpenCV
// allocates; the pixels are then decoded by cv::imdecode with IMREAD_UNCHANGED (8 or 16 bits, grey,
// grey+alpha, colour, colour+alpha; no EXIF rotation, as scikit-image and tifffile do not rotate
// either) and OpenCV's BGR(A) order is turned into RGB(A), stored [C,1,Y,X]. Writing encodes with
// cv::imencode into memory and writes the bytes atomically.
//
// Limits: the whole image is decoded on the first read (region reads crop it); OpenCV turns
// palette PNGs into RGB and low-bit PNGs into 8 bits; JPEG output is lossy (quality 95). Without
// OpenCV every call throws Unsupported saying this build lacks it.
#include <cstring>
#include <fstream>
#include <mutex>
#include <vector>

#include "core/error.h"
#include "core/memory.h"
#include "io/atomic_file.h"
#include "io/formats.h"

#ifdef UMAMBA_WITH_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#endif

namespace umamba::io {
namespace fs = std::filesystem;

#ifndef UMAMBA_WITH_OPENCV

std::unique_ptr<ImageReader> open_opencv(const fs::path& path, Format format) {
  throw Unsupported(
      fmt::format("{}: reading {} needs OpenCV, which this build lacks (rebuild with "
                  "-DUMAMBA_OPENCV=ON, or convert the image to TIFF)",
                  path.string(), format_name(format)));
}

void write_opencv(const fs::path& path, const Image&, Format format, const WriteOptions&) {
  throw Unsupported(
      fmt::format("{}: writing {} needs OpenCV, which this build lacks (rebuild with "
                  "-DUMAMBA_OPENCV=ON, or write .tif)",
                  path.string(), format_name(format)));
}

#else

namespace {

std::vector<uint8_t> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FileError(path.string(), "cannot open");
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  if (ec) throw FileError(path.string(), "cannot get the file size: " + ec.message());
  std::vector<uint8_t> bytes(checked_allocation_size(size, 1, path.string()));
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size));
  if (static_cast<uint64_t>(in.gcount()) != size) throw FileError(path.string(), "read failed");
  return bytes;
}

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
uint16_t be16(const uint8_t* p) {
  return static_cast<uint16_t>((p[0] << 8) | p[1]);
}
int32_t le32(const uint8_t* p) {
  return static_cast<int32_t>(uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) |
                              (uint32_t{p[3]} << 24));
}

// Width and height as the file's header declares them; throws FileError when unreadable.
std::pair<int64_t, int64_t> header_size(const std::string& name, const std::vector<uint8_t>& b,
                                        Format format) {
  const size_t n = b.size();
  if (format == Format::Png) {
    if (n < 24 || std::memcmp(b.data() + 12, "IHDR", 4) != 0) {
      throw FileError(name, "PNG without an IHDR header");
    }
    return {be32(b.data() + 16), be32(b.data() + 20)};
  }
  if (format == Format::Bmp) {
    if (n < 26) throw FileError(name, "BMP shorter than its header");
    const uint32_t header_bytes = static_cast<uint32_t>(le32(b.data() + 14));
    if (header_bytes == 12) {  // OS/2 BITMAPCOREHEADER: 16-bit sizes
      return {b[18] | (b[19] << 8), b[20] | (b[21] << 8)};
    }
    int64_t h = le32(b.data() + 22);
    return {le32(b.data() + 18), h < 0 ? -h : h};
  }
  // JPEG: walk the markers to the first start-of-frame.
  size_t i = 2;
  while (i + 4 <= n) {
    if (b[i] != 0xFF) throw FileError(name, fmt::format("JPEG marker expected at byte {}", i));
    const uint8_t m = b[i + 1];
    if (m == 0xFF) {
      ++i;
      continue;
    }
    const size_t length = be16(b.data() + i + 2);
    const bool sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
    if (sof) {
      if (i + 9 > n) break;
      return {be16(b.data() + i + 7), be16(b.data() + i + 5)};
    }
    if (length < 2) throw FileError(name, "JPEG segment with an invalid length");
    i += 2 + length;
  }
  throw FileError(name, "JPEG without a frame header (truncated or corrupt)");
}

class OpenCvReader final : public ImageReader {
 public:
  OpenCvReader(const fs::path& path, Format format) : path_(path) {
    const std::string name = path.string();
    bytes_ = read_file(path);
    const auto [w, h] = header_size(name, bytes_, format);
    if (w <= 0 || h <= 0) throw FileError(name, fmt::format("image size {}x{} is invalid", w, h));
    // Worst case of what OpenCV will allocate: 4 channels of 16 bits.
    checked_allocation_size(static_cast<uint64_t>(w) * static_cast<uint64_t>(h) * 4, 2,
                            name + ": decoded image");
    info_.format = format_name(format);
    info_.shape = Shape{0, 1, h, w};  // channels are known once decoded
    info_.metadata["source.path"] = name;
  }

  const ImageInfo& info() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    decode();
    return info_;
  }

  Image read() override {
    std::lock_guard<std::mutex> lock(mutex_);
    decode();
    return image_.clone();
  }

  Image read_region(const Box& box) override {
    std::lock_guard<std::mutex> lock(mutex_);
    decode();
    check_box(path_, info_.shape, box);
    Image out = image_.region(box).clone();
    out.geometry() = region_geometry(info_.geometry, box);
    return out;
  }

 private:
  void decode() const {
    if (!image_.empty()) return;
    const std::string name = path_.string();
    cv::Mat mat;
    try {
      mat = cv::imdecode(
          cv::Mat(1, static_cast<int>(bytes_.size()), CV_8U, const_cast<uint8_t*>(bytes_.data())),
          cv::IMREAD_UNCHANGED);
    } catch (const cv::Exception& e) {
      throw FileError(name, std::string("cannot be decoded: ") + e.what());
    }
    if (mat.empty()) throw FileError(name, "cannot be decoded (corrupt, truncated or unsupported)");
    if (mat.rows != info_.shape.y || mat.cols != info_.shape.x) {
      throw FileError(name, fmt::format("decoded {}x{} pixels where the header says {}x{}",
                                        mat.cols, mat.rows, info_.shape.x, info_.shape.y));
    }
    DType dtype;
    switch (mat.depth()) {
      case CV_8U:
        dtype = DType::U8;
        break;
      case CV_16U:
        dtype = DType::U16;
        break;
      default:
        throw FileError(name, fmt::format("decoded to OpenCV depth {}, not 8 or 16 bits unsigned",
                                          mat.depth()));
    }
    const int channels = mat.channels();
    Image img = Image::zeros(dtype, Shape{channels, 1, mat.rows, mat.cols});
    // OpenCV stores BGR(A); channel k of ours is OpenCV's channel order[k].
    const int order3[3] = {2, 1, 0};
    const int order4[4] = {2, 1, 0, 3};
    const size_t elem = dtype_size(dtype);
    for (int c = 0; c < channels; ++c) {
      const int src_c = channels == 3 ? order3[c] : channels == 4 ? order4[c] : c;
      for (int y = 0; y < mat.rows; ++y) {
        const uint8_t* row = mat.ptr<uint8_t>(y);
        uint8_t* dst = static_cast<uint8_t*>(img.data()) +
                       (static_cast<size_t>(c) * mat.rows + y) * mat.cols * elem;
        if (channels == 1) {
          std::memcpy(dst, row, mat.cols * elem);
        } else if (elem == 1) {
          for (int x = 0; x < mat.cols; ++x) dst[x] = row[x * channels + src_c];
        } else {
          const auto* r16 = reinterpret_cast<const uint16_t*>(row);
          auto* d16 = reinterpret_cast<uint16_t*>(dst);
          for (int x = 0; x < mat.cols; ++x) d16[x] = r16[x * channels + src_c];
        }
      }
    }
    info_.shape.c = channels;
    info_.dtype = dtype;
    img.metadata() = info_.metadata;
    image_ = img;
    bytes_.clear();
    bytes_.shrink_to_fit();
  }

  fs::path path_;
  mutable std::vector<uint8_t> bytes_;  // the file, until decoded
  mutable ImageInfo info_;
  mutable Image image_;
  mutable std::mutex mutex_;
};

}  // namespace

std::unique_ptr<ImageReader> open_opencv(const fs::path& path, Format format) {
  return std::make_unique<OpenCvReader>(path, format);
}

void write_opencv(const fs::path& path, const Image& image, Format format,
                  const WriteOptions& options) {
  const std::string name = path.string();
  const Shape s = image.shape();
  UMAMBA_CHECK(s.z == 1, "{}: {} holds 2D images; this one has {} slices (write .tif)", name,
               format_name(format), s.z);
  UMAMBA_CHECK(s.c == 1 || s.c == 3 || s.c == 4,
               "{}: {} holds 1, 3 or 4 channels; this image has {}", name, format_name(format),
               s.c);
  const bool png = format == Format::Png;
  UMAMBA_CHECK(image.dtype() == DType::U8 || (png && image.dtype() == DType::U16),
               "{}: {} holds {}; this image is {} (cast it first, or write .tif)", name,
               format_name(format), png ? "u8 or u16" : "u8", dtype_name(image.dtype()));
  UMAMBA_CHECK(s.x <= INT32_MAX && s.y <= INT32_MAX, "{}: too large for OpenCV", name);
  const int depth = image.dtype() == DType::U8 ? CV_8U : CV_16U;
  cv::Mat mat(static_cast<int>(s.y), static_cast<int>(s.x),
              CV_MAKETYPE(depth, static_cast<int>(s.c)));
  const int order3[3] = {2, 1, 0};
  const int order4[4] = {2, 1, 0, 3};
  visit_dtype(image.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, uint8_t> || std::is_same_v<T, uint16_t>) {
      for (int64_t y = 0; y < s.y; ++y) {
        T* row = mat.ptr<T>(static_cast<int>(y));
        for (int64_t c = 0; c < s.c; ++c) {
          const int64_t dst_c = s.c == 3 ? order3[c] : s.c == 4 ? order4[c] : c;
          for (int64_t x = 0; x < s.x; ++x) row[x * s.c + dst_c] = image.at<T>(c, 0, y, x);
        }
      }
    }
  });
  std::vector<uint8_t> encoded;
  const std::string ext = png ? ".png" : format == Format::Jpeg ? ".jpg" : ".bmp";
  std::vector<int> params;
  if (png) params = {cv::IMWRITE_PNG_COMPRESSION, 6};
  if (format == Format::Jpeg) params = {cv::IMWRITE_JPEG_QUALITY, 95};
  bool ok = false;
  try {
    ok = cv::imencode(ext, mat, encoded, params);
  } catch (const cv::Exception& e) {
    fail("{}: encoding failed: {}", name, e.what());
  }
  if (!ok) fail("{}: encoding as {} failed", name, format_name(format));
  AtomicOutput out(path, options.overwrite);
  {
    std::ofstream f(out.temporary_path(), std::ios::binary);
    f.write(reinterpret_cast<const char*>(encoded.data()),
            static_cast<std::streamsize>(encoded.size()));
    f.flush();
    if (!f) fail("{}: writing {} failed", name, out.temporary_path().string());
  }
  out.commit();
}

#endif

}  // namespace umamba::io
