// TIFF writer over libtiff: whole images and band-by-band output for images larger than memory.
//
// Method: one IFD per Z slice (what ImageJ, tifffile and Bio-Formats expect of stacks). Rows given
// to write_band are buffered until a full strip or tile row is present, which is then encoded with
// TIFFWriteEncodedStrip/Tile, so memory stays at one tile row whatever the image size. Tiles of
// 512×512 above 4096×4096 pixels per plane, strips of about 256 KiB below. Deflate (level 6) by
// default with horizontal differencing for integers and the floating-point predictor (TIFF
// Technical Note 3) for floats. BigTIFF when the worst-case size passes 3.5 GiB. Metadata: ImageJ's
// description for compressed single-channel u8/u16/f32 stacks (unit and Z spacing; X/Y as
// resolution in pixels per unit), otherwise tifffile's JSON "shaped" description with our "spacing"
// and "unit" keys, plus resolution tags in pixels per centimetre when the unit is a length.
//
// Limits: the output is always little-endian; one compression for the whole file; the float
// resolution tags round spacing to ~7 digits (the JSON description keeps full precision).
#include <algorithm>
#include <cmath>
#include <cstring>

#include <tbb/parallel_for.h>
#include <nlohmann/json.hpp>

#include <cstdarg>
#include <cstdio>

#include "core/error.h"
#include "core/memory.h"
#include "io/atomic_file.h"
#include "io/formats.h"
#include "io/tiff_internal.h"

namespace umamba::io {
namespace {

constexpr double kBigTiffThreshold = 3.5 * double(uint64_t{1} << 30);

uint16_t tiff_compression(Compression c) {
  switch (c) {
    case Compression::None:
      return COMPRESSION_NONE;
    case Compression::Deflate:
      return COMPRESSION_ADOBE_DEFLATE;
    case Compression::Zstd:
      return COMPRESSION_ZSTD;
    case Compression::Lzw:
      return COMPRESSION_LZW;
  }
  return COMPRESSION_NONE;
}

// Upper bound of stored bytes per raw byte: LZW's 12-bit codes can grow incompressible data by
// half; deflate and zstd add well under 1%.
double worst_growth(Compression c) {
  switch (c) {
    case Compression::Lzw:
      return 1.5;
    case Compression::None:
      return 1.0;
    default:
      return 1.01;
  }
}

std::string axes_for(const Shape& s, bool planar) {
  std::string axes = s.z > 1 ? "Z" : "";
  if (s.c > 1 && planar) axes += "C";
  axes += "YX";
  if (s.c > 1 && !planar) axes += "S";
  return axes;
}

}  // namespace

struct TiffBandWriter::State {
  AtomicOutput out;  // declared first: destroyed after the handle has closed the file
  std::unique_ptr<tiff::Handle> handle;
  Shape shape;
  DType dtype;
  Geometry geometry;
  WriteOptions options;
  size_t bytes = 1;
  bool tiled = false;
  bool planar = false;
  bool imagej = false;
  bool bigtiff = false;
  uint16_t compression = COMPRESSION_ADOBE_DEFLATE;
  uint16_t predictor = PREDICTOR_NONE;
  uint32_t chunk_w = 0, chunk_h = 0;  // tile size, or (width, rows per strip)
  uint32_t across = 1, down = 1;
  std::string description;
  int64_t slice = 0, row = 0;    // the next row to receive
  std::vector<uint8_t> pending;  // [C][chunk_h][X] rows of the current chunk row
  int64_t pending_rows = 0;
  std::vector<uint8_t> chunk;  // one strip or tile, interleaved as stored
  bool finished = false;

  State(const std::filesystem::path& path, bool overwrite) : out(path, overwrite) {}

  void set_pixel_tags(TIFF* tif, uint32_t width, uint32_t height, uint16_t spp,
                      bool layout_planar) const;
  void begin_page();
  // Copies tile (plane s, column q) of the pending rows into `out`, interleaved as stored.
  void gather_chunk(int64_t s, int64_t q, uint8_t* out) const;
  void flush_chunk_row();
  // Parallel path: each tile of the row encoded by libtiff in a scratch in-memory TIFF on a TBB
  // worker, the compressed bytes then appended in order with TIFFWriteRawTile.
  void flush_tile_row_parallel(int64_t r);
};

// The tags that decide how pixels are encoded, for a TIFF of `width` × `height` with `spp` samples
// stored as `layout_planar`: used for the output file and for the scratch files that encode tiles
// on worker threads (which must produce the bytes libtiff would).
void TiffBandWriter::State::set_pixel_tags(TIFF* tif, uint32_t width, uint32_t height, uint16_t spp,
                                           bool layout_planar) const {
  TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, width);
  TIFFSetField(tif, TIFFTAG_IMAGELENGTH, height);
  TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, spp);
  TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, static_cast<uint16_t>(bytes * 8));
  TIFFSetField(tif, TIFFTAG_SAMPLEFORMAT,
               dtype_is_float(dtype)    ? SAMPLEFORMAT_IEEEFP
               : dtype_is_signed(dtype) ? SAMPLEFORMAT_INT
                                        : SAMPLEFORMAT_UINT);
  const bool rgb = (spp == 3 || spp == 4) && (dtype == DType::U8 || dtype == DType::U16);
  TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, rgb ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK);
  const uint16_t extra = static_cast<uint16_t>(spp - (rgb ? 3 : 1));
  if (extra > 0) {
    std::vector<uint16_t> kinds(extra, EXTRASAMPLE_UNSPECIFIED);
    if (rgb) kinds[0] = EXTRASAMPLE_UNASSALPHA;
    TIFFSetField(tif, TIFFTAG_EXTRASAMPLES, extra, kinds.data());
  }
  TIFFSetField(tif, TIFFTAG_PLANARCONFIG,
               layout_planar ? PLANARCONFIG_SEPARATE : PLANARCONFIG_CONTIG);
  TIFFSetField(tif, TIFFTAG_COMPRESSION, compression);
  if (compression != COMPRESSION_NONE) TIFFSetField(tif, TIFFTAG_PREDICTOR, predictor);
  if (compression == COMPRESSION_ADOBE_DEFLATE) {
    TIFFSetField(tif, TIFFTAG_ZIPQUALITY,
                 options.compression_level > 0 ? std::clamp(options.compression_level, 1, 9) : 6);
  } else if (compression == COMPRESSION_ZSTD) {
    TIFFSetField(tif, TIFFTAG_ZSTD_LEVEL,
                 options.compression_level > 0 ? std::clamp(options.compression_level, 1, 22) : 9);
  }
  if (tiled) {
    TIFFSetField(tif, TIFFTAG_TILEWIDTH, chunk_w);
    TIFFSetField(tif, TIFFTAG_TILELENGTH, chunk_h);
  } else {
    TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, chunk_h);
  }
}

void TiffBandWriter::State::begin_page() {
  TIFF* tif = handle->get();
  set_pixel_tags(tif, static_cast<uint32_t>(shape.x), static_cast<uint32_t>(shape.y),
                 static_cast<uint16_t>(shape.c), planar);
  // Resolution: pixels per centimetre for lengths, per unit otherwise (ImageJ: per its unit).
  const double um = tiff::unit_in_um(geometry.unit);
  const bool in_cm = um > 0 && !imagej;
  const double scale = in_cm ? 1e4 / um : 1.0;  // spacing in unit -> resolution in px per cm
  TIFFSetField(tif, TIFFTAG_RESOLUTIONUNIT, in_cm ? RESUNIT_CENTIMETER : RESUNIT_NONE);
  TIFFSetField(tif, TIFFTAG_XRESOLUTION, static_cast<float>(scale / geometry.spacing[2]));
  TIFFSetField(tif, TIFFTAG_YRESOLUTION, static_cast<float>(scale / geometry.spacing[1]));
  TIFFSetField(tif, TIFFTAG_SOFTWARE, "umamba");
  if (slice == 0 && !description.empty()) {
    TIFFSetField(tif, TIFFTAG_IMAGEDESCRIPTION, description.c_str());
  }
}

void TiffBandWriter::State::gather_chunk(int64_t s, int64_t q, uint8_t* out) const {
  const int64_t spc = planar ? 1 : shape.c;  // samples per chunk pixel
  const int64_t rows = tiled ? chunk_h : pending_rows;
  const int64_t plane_stride = int64_t{chunk_h} * shape.x;  // elements per channel in `pending`
  const int64_t x0 = q * chunk_w;
  const int64_t w = std::min<int64_t>(chunk_w, shape.x - x0);
  if (tiled) {  // edge tiles are padded with zeros
    std::fill(out, out + static_cast<size_t>(rows * chunk_w * spc) * bytes, uint8_t{0});
  }
  for (int64_t y = 0; y < pending_rows; ++y) {
    uint8_t* dst = out + static_cast<size_t>(y * chunk_w * spc) * bytes;
    if (spc == 1) {
      const uint8_t* src =
          pending.data() + static_cast<size_t>(s * plane_stride + y * shape.x + x0) * bytes;
      std::memcpy(dst, src, static_cast<size_t>(w) * bytes);
      continue;
    }
    auto interleave = [&](auto tag) {
      using T = decltype(tag);
      const T* src = reinterpret_cast<const T*>(pending.data()) + y * shape.x + x0;
      T* d = reinterpret_cast<T*>(dst);
      for (int64_t c = 0; c < spc; ++c) {
        const T* sc = src + c * plane_stride;
        for (int64_t i = 0; i < w; ++i) d[i * spc + c] = sc[i];
      }
    };
    switch (bytes) {
      case 1:
        interleave(uint8_t{});
        break;
      case 2:
        interleave(uint16_t{});
        break;
      case 4:
        interleave(uint32_t{});
        break;
      default:
        interleave(uint64_t{});
        break;
    }
  }
}

namespace {

// A growable in-memory file for libtiff's client I/O.
struct MemoryFile {
  std::vector<uint8_t> bytes;
  uint64_t pos = 0;
  std::string errors;
};

tmsize_t memory_read(thandle_t h, void* buf, tmsize_t n) {
  auto* f = static_cast<MemoryFile*>(h);
  const uint64_t available = f->pos < f->bytes.size() ? f->bytes.size() - f->pos : 0;
  const size_t k = std::min<uint64_t>(available, static_cast<uint64_t>(n));
  std::memcpy(buf, f->bytes.data() + f->pos, k);
  f->pos += k;
  return static_cast<tmsize_t>(k);
}
tmsize_t memory_write(thandle_t h, void* buf, tmsize_t n) {
  auto* f = static_cast<MemoryFile*>(h);
  const uint64_t end = f->pos + static_cast<uint64_t>(n);
  if (end > f->bytes.size()) f->bytes.resize(end);
  std::memcpy(f->bytes.data() + f->pos, buf, static_cast<size_t>(n));
  f->pos = end;
  return n;
}
toff_t memory_seek(thandle_t h, toff_t off, int whence) {
  auto* f = static_cast<MemoryFile*>(h);
  const uint64_t base = whence == SEEK_CUR ? f->pos : whence == SEEK_END ? f->bytes.size() : 0;
  f->pos = base + off;
  return f->pos;
}
int memory_close(thandle_t) {
  return 0;
}
toff_t memory_size(thandle_t h) {
  return static_cast<MemoryFile*>(h)->bytes.size();
}
int memory_map(thandle_t, void**, toff_t*) {
  return 0;
}
void memory_unmap(thandle_t, void*, toff_t) {}
int memory_error(TIFF*, void* user, const char* module, const char* fmt, va_list ap) {
  char buffer[512];
  std::vsnprintf(buffer, sizeof buffer, fmt, ap);
  auto* f = static_cast<MemoryFile*>(user);
  if (f->errors.size() < 1024)
    if (module != nullptr) f->errors.append(module).append(": ");
  f->errors.append(buffer).append("; ");
  return 1;
}
int memory_warning(TIFF*, void*, const char*, const char*, va_list) {
  return 1;
}

}  // namespace

void TiffBandWriter::State::flush_tile_row_parallel(int64_t r) {
  const int64_t planes = planar ? shape.c : 1;
  const int64_t spc = planar ? 1 : shape.c;
  const int64_t count = planes * across;
  const size_t tile_bytes = static_cast<size_t>(int64_t{chunk_w} * chunk_h * spc) * bytes;
  std::vector<std::vector<uint8_t>> encoded(static_cast<size_t>(count));
  std::vector<std::string> errors(static_cast<size_t>(count));
  tbb::parallel_for(int64_t{0}, count, [&](int64_t k) {
    const int64_t s = k / across, q = k % across;
    std::vector<uint8_t> pixels(tile_bytes);
    gather_chunk(s, q, pixels.data());
    MemoryFile file;
    TIFFOpenOptions* opts = TIFFOpenOptionsAlloc();
    TIFFOpenOptionsSetErrorHandlerExtR(opts, memory_error, &file);
    TIFFOpenOptionsSetWarningHandlerExtR(opts, memory_warning, &file);
    TIFF* mem = TIFFClientOpenExt("tile", "w", &file, memory_read, memory_write, memory_seek,
                                  memory_close, memory_size, memory_map, memory_unmap, opts);
    TIFFOpenOptionsFree(opts);
    if (mem == nullptr) {
      errors[k] = "cannot open an in-memory encoder: " + file.errors;
      return;
    }
    set_pixel_tags(mem, chunk_w, chunk_h, static_cast<uint16_t>(spc), false);
    if (TIFFWriteEncodedTile(mem, 0, pixels.data(), static_cast<tmsize_t>(tile_bytes)) < 0) {
      errors[k] = "encoding failed: " + file.errors;
    } else {
      const uint64_t offset = TIFFGetStrileOffset(mem, 0);
      const uint64_t size = TIFFGetStrileByteCount(mem, 0);
      if (offset + size <= file.bytes.size()) {
        encoded[k].assign(file.bytes.begin() + static_cast<int64_t>(offset),
                          file.bytes.begin() + static_cast<int64_t>(offset + size));
      } else {
        errors[k] = "the in-memory encoder lost its tile";
      }
    }
    TIFFClose(mem);
  });
  TIFF* tif = handle->get();
  for (int64_t k = 0; k < count; ++k) {
    const int64_t s = k / across, q = k % across;
    const uint32_t index = static_cast<uint32_t>((s * down + r) * across + q);
    if (!errors[k].empty()) {
      fail("{}: slice {}: tile {}: {}", handle->path(), slice, index, errors[k]);
    }
    handle->clear_errors();
    if (TIFFWriteRawTile(tif, index, encoded[k].data(), static_cast<tmsize_t>(encoded[k].size())) <
        0) {
      handle->fail_write(fmt::format("slice {}: writing tile {} failed", slice, index));
    }
  }
}

void TiffBandWriter::State::flush_chunk_row() {
  if (pending_rows == 0) return;
  const int64_t r = (row - pending_rows) / chunk_h;  // chunk row index within the slice
  if (tiled && options.parallel && compression != COMPRESSION_NONE &&
      (planar ? shape.c : 1) * across > 1) {
    flush_tile_row_parallel(r);
    pending_rows = 0;
    return;
  }
  TIFF* tif = handle->get();
  const int64_t planes = planar ? shape.c : 1;
  const int64_t spc = planar ? 1 : shape.c;
  const int64_t rows = tiled ? chunk_h : pending_rows;
  const size_t chunk_bytes = static_cast<size_t>(rows * chunk_w * spc) * bytes;
  for (int64_t s = 0; s < planes; ++s) {
    for (int64_t q = 0; q < across; ++q) {
      gather_chunk(s, q, chunk.data());
      const uint32_t index = static_cast<uint32_t>((s * down + r) * across + q);
      handle->clear_errors();
      const tmsize_t written =
          tiled
              ? TIFFWriteEncodedTile(tif, index, chunk.data(), static_cast<tmsize_t>(chunk_bytes))
              : TIFFWriteEncodedStrip(tif, index, chunk.data(), static_cast<tmsize_t>(chunk_bytes));
      if (written < 0) {
        handle->fail_write(
            fmt::format("slice {}: writing {} {} failed", slice, tiled ? "tile" : "strip", index));
      }
    }
  }
  pending_rows = 0;
}

TiffBandWriter::TiffBandWriter(const std::filesystem::path& path, const Shape& shape, DType dtype,
                               const Geometry& geometry, const WriteOptions& options)
    : state_(std::make_unique<State>(path, options.overwrite)) {
  State& st = *state_;
  UMAMBA_CHECK(shape.c >= 1 && shape.z >= 1 && shape.y >= 1 && shape.x >= 1,
               "{}: image shape {} must be positive on every axis", path.string(),
               to_string(shape));
  UMAMBA_CHECK(shape.c <= 64, "{}: {} channels; TIFF output takes 1 to 64", path.string(), shape.c);
  UMAMBA_CHECK(shape.x <= UINT32_MAX && shape.y <= UINT32_MAX,
               "{}: {}x{} pixels per slice is beyond TIFF's 32-bit width and height", path.string(),
               shape.x, shape.y);
  for (int i = 0; i < 3; ++i) {
    UMAMBA_CHECK(geometry.spacing[i] > 0 && std::isfinite(geometry.spacing[i]),
                 "{}: spacing {} on axis {} must be positive", path.string(), geometry.spacing[i],
                 "ZYX"[i]);
  }
  st.shape = shape;
  st.dtype = dtype;
  st.geometry = geometry;
  st.options = options;
  st.bytes = dtype_size(dtype);
  st.planar = options.planar && shape.c > 1;
  st.compression = tiff_compression(options.compression);
  switch (options.predictor) {
    case Predictor::Auto:
      st.predictor = options.compression == Compression::None ? PREDICTOR_NONE
                     : dtype_is_float(dtype)                  ? PREDICTOR_FLOATINGPOINT
                                                              : PREDICTOR_HORIZONTAL;
      break;
    case Predictor::None:
      st.predictor = PREDICTOR_NONE;
      break;
    case Predictor::Horizontal:
      st.predictor = PREDICTOR_HORIZONTAL;
      break;
    case Predictor::FloatingPoint:
      UMAMBA_CHECK(dtype_is_float(dtype), "{}: the floating-point predictor needs float pixels",
                   path.string());
      st.predictor = PREDICTOR_FLOATINGPOINT;
      break;
  }

  // Layout: tiles for large planes or when asked, strips of ~256 KiB otherwise.
  const int64_t plane_pixels = shape.y * shape.x;
  st.tiled = options.tile_size > 0 || (options.tile_size == 0 && plane_pixels > 4096 * 4096);
  const int64_t spc = st.planar ? 1 : shape.c;
  if (st.tiled) {
    const int64_t t = options.tile_size > 0 ? options.tile_size : 512;
    UMAMBA_CHECK(t % 16 == 0 && t <= 65536, "{}: tile size {} must be a multiple of 16",
                 path.string(), t);
    st.chunk_w = st.chunk_h = static_cast<uint32_t>(t);
  } else {
    const int64_t row_bytes = shape.x * spc * static_cast<int64_t>(st.bytes);
    st.chunk_w = static_cast<uint32_t>(shape.x);
    st.chunk_h = static_cast<uint32_t>(std::clamp<int64_t>((256 << 10) / row_bytes, 1, shape.y));
  }
  st.across = static_cast<uint32_t>((shape.x + st.chunk_w - 1) / st.chunk_w);
  st.down = static_cast<uint32_t>((shape.y + st.chunk_h - 1) / st.chunk_h);
  st.pending.resize(checked_allocation_size(
      static_cast<uint64_t>(shape.c) * st.chunk_h * static_cast<uint64_t>(shape.x), st.bytes,
      path.string() + ": one row of tiles"));
  st.chunk.resize(checked_allocation_size(uint64_t{st.chunk_w} * st.chunk_h * spc, st.bytes,
                                          path.string() + ": one tile"));

  // BigTIFF when the file could pass ~3.5 GiB (raw size times the codec's worst growth).
  const double raw = double(shape.elements()) * double(st.bytes);
  st.bigtiff = options.bigtiff || raw * worst_growth(options.compression) > kBigTiffThreshold;
  // Uncompressed ImageJ stacks must keep all pixel data in one contiguous block (tifffile reads
  // them so), which libtiff's page-by-page layout does not give: those get the JSON description.
  st.imagej = !st.bigtiff && shape.c == 1 && shape.z > 1 && st.compression != COMPRESSION_NONE &&
              (dtype == DType::U8 || dtype == DType::U16 || dtype == DType::F32);
  if (st.imagej) {
    st.description = tiff::format_imagej_description(shape.z, geometry.unit, geometry.spacing[0]);
  } else {
    nlohmann::json d;
    std::vector<int64_t> dims;
    if (shape.z > 1) dims.push_back(shape.z);
    if (shape.c > 1 && st.planar) dims.push_back(shape.c);
    dims.push_back(shape.y);
    dims.push_back(shape.x);
    if (shape.c > 1 && !st.planar) dims.push_back(shape.c);
    d["shape"] = dims;
    d["axes"] = axes_for(shape, st.planar);
    d["spacing"] = {geometry.spacing[0], geometry.spacing[1], geometry.spacing[2]};
    d["unit"] = geometry.unit;
    st.description = d.dump();
  }
  st.handle = std::make_unique<tiff::Handle>(st.out.temporary_path().string(),
                                             st.bigtiff ? "w8" : "w", path.string());
  st.begin_page();
}

TiffBandWriter::~TiffBandWriter() = default;

int64_t TiffBandWriter::next_row() const {
  return state_->row;
}
int64_t TiffBandWriter::next_slice() const {
  return state_->slice;
}

void TiffBandWriter::write_band(const Image& band) {
  State& st = *state_;
  const std::string name = st.out.final_path().string();
  UMAMBA_CHECK(!st.finished, "{}: write_band after finish()", name);
  UMAMBA_CHECK(st.slice < st.shape.z, "{}: every slice is already written", name);
  UMAMBA_CHECK(!band.empty() && band.dtype() == st.dtype,
               "{}: band of type {} where the file holds {}", name, dtype_name(band.dtype()),
               dtype_name(st.dtype));
  UMAMBA_CHECK(band.channels() == st.shape.c && band.depth() == 1 && band.width() == st.shape.x,
               "{}: band {} does not fit the image {} (needs {} channels, Z = 1, width {})", name,
               to_string(band.shape()), to_string(st.shape), st.shape.c, st.shape.x);
  UMAMBA_CHECK(st.row + band.height() <= st.shape.y,
               "{}: band of {} rows at row {} passes the image height {}", name, band.height(),
               st.row, st.shape.y);
  const Shape pending_shape{st.shape.c, 1, st.chunk_h, st.shape.x};
  Image pending = Image::wrap(st.pending.data(), st.dtype, pending_shape,
                              Image::contiguous_strides(pending_shape), nullptr);
  int64_t taken = 0;
  while (taken < band.height()) {
    const int64_t n = std::min<int64_t>(band.height() - taken, st.chunk_h - st.pending_rows);
    pending.region(Box{0, st.pending_rows, 0, 1, n, st.shape.x})
        .copy_from(band.region(Box{0, taken, 0, 1, n, st.shape.x}));
    st.pending_rows += n;
    st.row += n;
    taken += n;
    if (st.pending_rows == st.chunk_h || st.row == st.shape.y) st.flush_chunk_row();
    if (st.row == st.shape.y) {
      ++st.slice;
      st.row = 0;
      if (st.slice < st.shape.z) {
        st.handle->clear_errors();
        if (!TIFFWriteDirectory(st.handle->get())) {
          st.handle->fail_write(fmt::format("finishing slice {} failed", st.slice - 1));
        }
        st.begin_page();
      }
    }
  }
}

void TiffBandWriter::finish() {
  State& st = *state_;
  const std::string name = st.out.final_path().string();
  UMAMBA_CHECK(!st.finished, "{}: finish() called twice", name);
  UMAMBA_CHECK(st.slice == st.shape.z,
               "{}: finish() with slice {} row {} of {} slices x {} rows still to write", name,
               st.slice, st.row, st.shape.z, st.shape.y);
  st.handle->close_checked();
  st.out.commit();
  st.finished = true;
}

void write_tiff(const std::filesystem::path& path, const Image& image,
                const WriteOptions& options) {
  UMAMBA_CHECK(!image.empty(), "{}: cannot write an empty image", path.string());
  TiffBandWriter writer(path, image.shape(), image.dtype(), image.geometry(), options);
  for (int64_t z = 0; z < image.depth(); ++z) writer.write_band(image.slice(z));
  writer.finish();
}

}  // namespace umamba::io
