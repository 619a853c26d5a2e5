// NIfTI-1 reading and writing (.nii, .nii.gz).
//
// Method: the 348-byte header is read through zlib (which reads plain and gzip files alike),
// byte-swapped with nifticlib's swap_nifti_header when needed, and validated by us before any
// voxel is allocated: dimensions, datatype/bitpix agreement, vox_offset, and the voxel bytes
// against the file's size (for .gz: against deflate's 1032:1 worst-case expansion). nifticlib's
// own file functions are not used, so nothing it prints or exits on is reached; its matrix code
// (nifti_quatern_to_mat44, nifti_mat44_to_quatern) converts quaternions. Reference: the NIfTI-1
// header definition nifti1.h (Cox et al., NIfTI DFWG, 2004).
//
// Conventions (core/image.h): world = NIfTI's RAS+ millimetres; the affine is the sform when
// sform_code > 0, else the qform when qform_code > 0, else diag(pixdim) (nibabel's and ITK's
// choice). origin = the affine's translation (world x,y,z of voxel 0); direction column j = the
// affine's column j normalised, for index axes i,j,k = our X,Y,Z; spacing = |pixdim[1..3]|
// (nibabel's zooms). Spatial units: mm as stored, meters converted to mm, micrometres kept as
// "um"; unknown units are taken as mm, as ITK and nibabel do, and noted in the metadata.
// Data order x fastest, then y, z, then dim[4] which we read as channels: [C,Z,Y,X].
// Scaling: when scl_slope is finite and not 0, and (slope, inter) != (1, 0), voxels are returned
// scaled, as nibabel and nnU-Net (SimpleITK) do: f32, or f64 for 32/64-bit integer and f64
// sources. Label files written by us have slope 1, inter 0.
//
// Limits: NIfTI-1 single files only (no .hdr/.img pairs, no ANALYZE 7.5, no NIfTI-2); dim[5..7]
// must be 1; complex, float128 and 1-bit data are refused; header extensions are skipped on read
// and not written. Region reads decode the whole volume once (kept by the reader) and crop.
#include <nifti1_io.h>
#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>

#include "core/error.h"
#include "core/log.h"
#include "core/memory.h"
#include "io/atomic_file.h"
#include "io/formats.h"

namespace umamba::io {
namespace {

namespace fs = std::filesystem;

static_assert(sizeof(nifti_1_header) == 348, "nifti_1_header must be 348 bytes");

struct NiftiType {
  DType dtype;
  int channels;  // 3 for RGB24, 4 for RGBA32
};

std::optional<NiftiType> nifti_type(int datatype) {
  switch (datatype) {
    case DT_UINT8:
      return NiftiType{DType::U8, 1};
    case DT_INT8:
      return NiftiType{DType::I8, 1};
    case DT_UINT16:
      return NiftiType{DType::U16, 1};
    case DT_INT16:
      return NiftiType{DType::I16, 1};
    case DT_UINT32:
      return NiftiType{DType::U32, 1};
    case DT_INT32:
      return NiftiType{DType::I32, 1};
    case DT_UINT64:
      return NiftiType{DType::U64, 1};
    case DT_INT64:
      return NiftiType{DType::I64, 1};
    case DT_FLOAT32:
      return NiftiType{DType::F32, 1};
    case DT_FLOAT64:
      return NiftiType{DType::F64, 1};
    case DT_RGB24:
      return NiftiType{DType::U8, 3};
    case DT_RGBA32:
      return NiftiType{DType::U8, 4};
    default:
      return std::nullopt;
  }
}

int nifti_datatype(DType t) {
  switch (t) {
    case DType::U8:
      return DT_UINT8;
    case DType::I8:
      return DT_INT8;
    case DType::U16:
      return DT_UINT16;
    case DType::I16:
      return DT_INT16;
    case DType::U32:
      return DT_UINT32;
    case DType::I32:
      return DT_INT32;
    case DType::U64:
      return DT_UINT64;
    case DType::I64:
      return DT_INT64;
    case DType::F32:
      return DT_FLOAT32;
    case DType::F64:
      return DT_FLOAT64;
  }
  return DT_UNKNOWN;
}

// Scale from the file's spatial unit to the unit we report, and that unit's name.
std::pair<double, std::string> spatial_unit(int xyzt_units) {
  switch (XYZT_TO_SPACE(xyzt_units)) {
    case NIFTI_UNITS_METER:
      return {1000.0, "mm"};
    case NIFTI_UNITS_MICRON:
      return {1.0, "um"};
    default:  // NIFTI_UNITS_MM, and unknown (taken as mm)
      return {1.0, "mm"};
  }
}

bool is_gzip(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char b[2] = {};
  in.read(reinterpret_cast<char*>(b), 2);
  return in.gcount() == 2 && b[0] == 0x1f && b[1] == 0x8b;
}

// zlib file handle that closes itself.
struct GzFile {
  gzFile f = nullptr;
  GzFile(const fs::path& path, const char* mode) : f(gzopen(path.c_str(), mode)) {}
  ~GzFile() {
    if (f != nullptr) gzclose(f);
  }
  std::string error() const {
    int code = 0;
    const char* m = f ? gzerror(f, &code) : "cannot open";
    return m ? m : "";
  }
};

// Reads exactly `n` bytes; false when the stream ends early or fails.
bool gz_read_all(gzFile f, void* dst, size_t n) {
  auto* p = static_cast<uint8_t*>(dst);
  while (n > 0) {
    const unsigned chunk = static_cast<unsigned>(std::min<size_t>(n, 1u << 30));
    const int got = gzread(f, p, chunk);
    if (got <= 0) return false;
    p += got;
    n -= static_cast<size_t>(got);
  }
  return true;
}

void byte_swap(void* data, size_t count, size_t size) {
  auto* p = static_cast<uint8_t*>(data);
  for (size_t i = 0; i < count; ++i, p += size) std::reverse(p, p + size);
}

struct ParsedHeader {
  nifti_1_header h;  // native byte order
  bool swapped = false;
  bool gzip = false;
  NiftiType type;
  Shape shape;  // [C,Z,Y,X]
  uint64_t vox_offset = 352;
  uint64_t voxel_bytes = 0;
};

ParsedHeader read_header(const fs::path& path) {
  const std::string name = path.string();
  ParsedHeader p;
  p.gzip = is_gzip(path);
  GzFile in(path, "rb");
  if (in.f == nullptr) throw FileError(name, "cannot open");
  if (!gz_read_all(in.f, &p.h, sizeof p.h)) {
    throw FileError(name, "shorter than a NIfTI-1 header (348 bytes)" +
                              (p.gzip ? ": " + in.error() : std::string()));
  }
  if (p.h.sizeof_hdr != 348) {
    int32_t swapped = p.h.sizeof_hdr;
    byte_swap(&swapped, 1, 4);
    if (swapped == 348) {
      swap_nifti_header(&p.h, 1);
      p.swapped = true;
    } else if (p.h.sizeof_hdr == 540 || swapped == 540) {
      throw FileError(name, "NIfTI-2 files are not supported (convert to NIfTI-1)");
    } else {
      throw FileError(name, fmt::format("not a NIfTI-1 file (sizeof_hdr {})", p.h.sizeof_hdr));
    }
  }
  const std::string magic(p.h.magic, strnlen(p.h.magic, 4));
  if (magic != "n+1") {
    throw FileError(name, magic == "ni1" ? "a .hdr/.img NIfTI pair is not supported; use .nii"
                                         : "not NIfTI-1 (no 'n+1' magic; ANALYZE 7.5 is not "
                                           "supported)");
  }
  const auto& dim = p.h.dim;
  if (dim[0] < 1 || dim[0] > 7) throw FileError(name, fmt::format("dim[0] = {}", dim[0]));
  int64_t extent[8] = {0, 1, 1, 1, 1, 1, 1, 1};
  for (int i = 1; i <= dim[0]; ++i) {
    if (dim[i] < 1) {
      throw FileError(name,
                      fmt::format("dimension {} has size {} (must be at least 1)", i, dim[i]));
    }
    extent[i] = dim[i];
  }
  if (extent[5] * extent[6] * extent[7] != 1) {
    throw FileError(name, fmt::format("dimensions 5-7 ({}x{}x{}) are not supported", extent[5],
                                      extent[6], extent[7]));
  }
  const auto type = nifti_type(p.h.datatype);
  if (!type) {
    const char* what = nifti_datatype_string(p.h.datatype);
    throw FileError(name, fmt::format("datatype {} ({}) is not supported", p.h.datatype,
                                      what ? what : "unknown"));
  }
  p.type = *type;
  const int bitpix = static_cast<int>(dtype_size(type->dtype) * 8 * type->channels);
  if (p.h.bitpix != bitpix) {
    throw FileError(name, fmt::format("bitpix {} disagrees with datatype {} ({} bits)", p.h.bitpix,
                                      p.h.datatype, bitpix));
  }
  if (type->channels > 1 && extent[4] > 1) {
    throw FileError(name, "RGB voxels with a 4th dimension are not supported");
  }
  p.shape = Shape{type->channels > 1 ? type->channels : extent[4], extent[3], extent[2], extent[1]};
  const double off = p.h.vox_offset;
  if (!std::isfinite(off) || off < 0 || off > 1e12) {
    throw FileError(name, fmt::format("vox_offset {} is invalid", off));
  }
  p.vox_offset = off < 348 ? 352 : static_cast<uint64_t>(off);
  const unsigned __int128 bytes =
      static_cast<unsigned __int128>(extent[1]) * extent[2] * extent[3] * extent[4] * (bitpix / 8);
  const uint64_t file_size = fs::file_size(path);
  const double can_hold = p.gzip ? double(file_size) * 1032.0 + 65536.0 : double(file_size);
  if (double(p.vox_offset) + static_cast<double>(bytes) > can_hold) {
    throw FileError(name, fmt::format("declares {}x{}x{}x{} voxels of {} bits ({:.4g} bytes) "
                                      "after offset {}, more than the {}-byte file {}: truncated "
                                      "or corrupt",
                                      extent[1], extent[2], extent[3], extent[4], bitpix,
                                      static_cast<double>(bytes), p.vox_offset, file_size,
                                      p.gzip ? "can expand to" : "holds"));
  }
  p.voxel_bytes = static_cast<uint64_t>(bytes);
  return p;
}

mat44 chosen_affine(const nifti_1_header& h, std::string& which) {
  mat44 a{};
  if (h.sform_code > 0) {
    which = "sform";
    for (int j = 0; j < 4; ++j) {
      a.m[0][j] = h.srow_x[j];
      a.m[1][j] = h.srow_y[j];
      a.m[2][j] = h.srow_z[j];
    }
    a.m[3][3] = 1.0f;
  } else if (h.qform_code > 0) {
    which = "qform";
    const float qfac = h.pixdim[0] < 0 ? -1.0f : 1.0f;
    a = nifti_quatern_to_mat44(h.quatern_b, h.quatern_c, h.quatern_d, h.qoffset_x, h.qoffset_y,
                               h.qoffset_z, h.pixdim[1], h.pixdim[2], h.pixdim[3], qfac);
  } else {
    which = "pixdim";
    for (int i = 0; i < 3; ++i) a.m[i][i] = h.pixdim[i + 1] != 0 ? std::fabs(h.pixdim[i + 1]) : 1;
    a.m[3][3] = 1.0f;
  }
  return a;
}

Geometry geometry_from_header(const nifti_1_header& h, Image::Metadata& meta) {
  Geometry g;
  std::string which;
  const mat44 a = chosen_affine(h, which);
  const auto [scale, unit] = spatial_unit(h.xyzt_units);
  g.unit = unit;
  for (int axis = 0; axis < 3; ++axis) {  // index axes i, j, k = X, Y, Z
    double norm = 0;
    for (int r = 0; r < 3; ++r) norm += double(a.m[r][axis]) * a.m[r][axis];
    norm = std::sqrt(norm);
    const bool finite = std::isfinite(norm);
    for (int r = 0; r < 3; ++r) {
      g.direction[r * 3 + axis] =
          finite && norm > 0 ? a.m[r][axis] / norm : (r == axis ? 1.0 : 0.0);
    }
    double sp = std::fabs(double(h.pixdim[axis + 1]));
    if (!(sp > 0) || !std::isfinite(sp)) sp = finite && norm > 0 ? norm : 1.0;
    g.spacing[2 - axis] = sp * scale;
    const double o = a.m[axis][3];
    g.origin[axis] = std::isfinite(o) ? o * scale : 0.0;
  }
  meta["nifti.affine_source"] = which;
  meta["nifti.sform_code"] = std::to_string(h.sform_code);
  meta["nifti.qform_code"] = std::to_string(h.qform_code);
  const int space = XYZT_TO_SPACE(h.xyzt_units);
  meta["nifti.units"] = space == NIFTI_UNITS_MM       ? "mm"
                        : space == NIFTI_UNITS_METER  ? "m (converted to mm)"
                        : space == NIFTI_UNITS_MICRON ? "um"
                                                      : "unknown (mm assumed)";
  std::string affine;
  for (int r = 0; r < 3; ++r) {
    affine += fmt::format("{}[{:.6g}, {:.6g}, {:.6g}, {:.6g}]", r ? ", " : "", a.m[r][0], a.m[r][1],
                          a.m[r][2], a.m[r][3]);
  }
  meta["nifti.affine"] = "[" + affine + "]";
  return g;
}

bool has_scaling(const nifti_1_header& h) {
  const float s = h.scl_slope, i = h.scl_inter;
  if (!std::isfinite(s) || s == 0.0f) return false;
  const float inter = std::isfinite(i) ? i : 0.0f;
  return !(s == 1.0f && inter == 0.0f);
}

class NiftiReader final : public ImageReader {
 public:
  explicit NiftiReader(const fs::path& path) : path_(path), header_(read_header(path)) {
    const nifti_1_header& h = header_.h;
    info_.format = "nifti";
    info_.shape = header_.shape;
    info_.dtype = header_.type.dtype;
    scaled_ = has_scaling(h);
    if (scaled_) {
      const DType src = header_.type.dtype;
      const bool wide = src == DType::F64 || src == DType::I32 || src == DType::U32 ||
                        src == DType::I64 || src == DType::U64;
      info_.dtype = wide ? DType::F64 : DType::F32;
      info_.metadata["nifti.scaling"] =
          fmt::format("slope {} inter {} applied", h.scl_slope,
                      std::isfinite(h.scl_inter) ? h.scl_inter : 0.0f);
    }
    info_.geometry = geometry_from_header(h, info_.metadata);
    info_.metadata["source.path"] = path.string();
    info_.metadata["nifti.datatype"] = nifti_datatype_string(h.datatype);
    info_.metadata["nifti.compressed"] = header_.gzip ? "gzip" : "none";
    info_.metadata["nifti.byte_order"] = header_.swapped ? "swapped" : "native";
  }

  const ImageInfo& info() const override { return info_; }

  Image read() override {
    std::lock_guard<std::mutex> lock(mutex_);
    return load().clone();
  }

  Image read_region(const Box& box) override {
    check_box(path_, info_.shape, box);
    std::lock_guard<std::mutex> lock(mutex_);
    Image out = load().region(box).clone();
    out.geometry() = region_geometry(info_.geometry, box);
    return out;
  }

 private:
  const Image& load() {
    if (!volume_.empty()) return volume_;
    const std::string name = path_.string();
    const NiftiType& t = header_.type;
    const size_t elem = dtype_size(t.dtype);
    const uint64_t count = header_.voxel_bytes / elem;
    const size_t bytes = checked_allocation_size(count, elem, name + ": voxels");
    std::shared_ptr<uint8_t[]> raw(new uint8_t[bytes]);
    {
      GzFile in(path_, "rb");
      if (in.f == nullptr) throw FileError(name, "cannot reopen");
      gzbuffer(in.f, 1 << 17);
      if (gzseek(in.f, static_cast<z_off_t>(header_.vox_offset), SEEK_SET) < 0 ||
          !gz_read_all(in.f, raw.get(), bytes)) {
        throw FileError(name, fmt::format("voxel data ends early (needs {} bytes after offset "
                                          "{}): truncated or corrupt{}",
                                          bytes, header_.vox_offset,
                                          header_.gzip ? " (" + in.error() + ")" : ""));
      }
      if (header_.gzip) {
        // Read on to the end of the stream so that zlib checks the gzip trailer (CRC-32 and
        // length): a file cut inside it, or with damaged data, is an error, not silent.
        uint8_t rest[4096];
        int got = 0;
        while ((got = gzread(in.f, rest, sizeof rest)) > 0) {
        }
        const int rc = gzclose_r(in.f);
        in.f = nullptr;
        if (got < 0 || rc != Z_OK) {
          throw FileError(name, fmt::format("the gzip stream is damaged or cut short (zlib code "
                                            "{})",
                                            rc != Z_OK ? rc : got));
        }
      }
    }
    if (header_.swapped && elem > 1) byte_swap(raw.get(), count, elem);
    // File order: x fastest, then y, z, t (channels); RGB triples interleaved per voxel.
    const Shape s = header_.shape;
    Image file_order;
    if (t.channels > 1) {
      const Shape strides{1, s.y * s.x * t.channels, s.x * t.channels, t.channels};
      file_order = Image::wrap(raw.get(), t.dtype, s, strides, raw);
    } else {
      file_order = Image::wrap(raw.get(), t.dtype, s, Image::contiguous_strides(s), raw);
    }
    if (scaled_) {
      Image out = file_order.cast(info_.dtype);
      const double slope = header_.h.scl_slope;
      const double inter = std::isfinite(header_.h.scl_inter) ? header_.h.scl_inter : 0.0;
      visit_dtype(info_.dtype, [&](auto tag) {
        using T = decltype(tag);
        if constexpr (std::is_floating_point_v<T>) {
          T* p = out.data_as<T>();
          for (int64_t i = 0; i < out.element_count(); ++i) {
            p[i] = static_cast<T>(p[i] * slope + inter);
          }
        }
      });
      volume_ = out;
    } else {
      volume_ = file_order.contiguous();
    }
    volume_.geometry() = info_.geometry;
    volume_.metadata() = info_.metadata;
    return volume_;
  }

  fs::path path_;
  ParsedHeader header_;
  ImageInfo info_;
  bool scaled_ = false;
  Image volume_;  // decoded once, on the first read
  std::mutex mutex_;
};

// ---- writing -------------------------------------------------------------------------------

nifti_1_header header_from_geometry(const Image& image) {
  nifti_1_header h;
  std::memset(&h, 0, sizeof h);
  h.sizeof_hdr = 348;
  const Geometry& g = image.geometry();
  double scale = 1.0;  // our unit -> the file's unit
  if (g.unit == "um") {
    h.xyzt_units = NIFTI_UNITS_MICRON;
  } else if (g.unit == "nm") {
    h.xyzt_units = NIFTI_UNITS_MICRON;
    scale = 1e-3;
  } else if (g.unit == "cm") {
    h.xyzt_units = NIFTI_UNITS_MM;
    scale = 10.0;
  } else if (g.unit == "m") {
    h.xyzt_units = NIFTI_UNITS_MM;
    scale = 1000.0;
  } else {
    h.xyzt_units = g.unit == "mm" ? NIFTI_UNITS_MM : NIFTI_UNITS_UNKNOWN;
  }
  mat44 a{};
  const double sp[3] = {g.spacing[2] * scale, g.spacing[1] * scale, g.spacing[0] * scale};
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) a.m[r][c] = static_cast<float>(g.direction[r * 3 + c] * sp[c]);
    a.m[r][3] = static_cast<float>(g.origin[r] * scale);
  }
  a.m[3][3] = 1.0f;
  float qb, qc, qd, qx, qy, qz, dx, dy, dz, qfac;
  nifti_mat44_to_quatern(a, &qb, &qc, &qd, &qx, &qy, &qz, &dx, &dy, &dz, &qfac);
  h.quatern_b = qb;
  h.quatern_c = qc;
  h.quatern_d = qd;
  h.qoffset_x = qx;
  h.qoffset_y = qy;
  h.qoffset_z = qz;
  h.pixdim[0] = qfac;
  for (int i = 0; i < 3; ++i) h.pixdim[i + 1] = static_cast<float>(sp[i]);
  for (int j = 0; j < 4; ++j) {
    h.srow_x[j] = a.m[0][j];
    h.srow_y[j] = a.m[1][j];
    h.srow_z[j] = a.m[2][j];
  }
  h.qform_code = NIFTI_XFORM_SCANNER_ANAT;
  h.sform_code = NIFTI_XFORM_SCANNER_ANAT;
  std::strncpy(h.descrip, "umamba", sizeof h.descrip);
  return h;
}

}  // namespace

std::unique_ptr<ImageReader> open_nifti(const fs::path& path) {
  return std::make_unique<NiftiReader>(path);
}

void write_nifti(const fs::path& path, const Image& image, const WriteOptions& options) {
  const std::string name = path.string();
  const Shape s = image.shape();
  UMAMBA_CHECK(s.x <= 32767 && s.y <= 32767 && s.z <= 32767 && s.c <= 32767,
               "{}: {} is beyond NIfTI-1's 32767 voxels per axis", name, to_string(s));
  nifti_1_header h;
  if (!options.reference.empty()) {
    const ParsedHeader ref = read_header(options.reference);
    h = ref.h;
    UMAMBA_CHECK(ref.shape.x == s.x && ref.shape.y == s.y && ref.shape.z == s.z,
                 "{}: image {} does not match the reference {} ({}x{}x{} voxels)", name,
                 to_string(s), options.reference.string(), ref.shape.x, ref.shape.y, ref.shape.z);
  } else {
    h = header_from_geometry(image);
  }
  h.sizeof_hdr = 348;
  h.dim[0] = static_cast<short>(s.c > 1 ? 4 : 3);
  h.dim[1] = static_cast<short>(s.x);
  h.dim[2] = static_cast<short>(s.y);
  h.dim[3] = static_cast<short>(s.z);
  h.dim[4] = static_cast<short>(s.c);
  for (int i = 5; i < 8; ++i) h.dim[i] = 1;
  if (s.c == 1) h.pixdim[4] = h.pixdim[4] == 0 ? 1.0f : h.pixdim[4];
  h.datatype = static_cast<short>(nifti_datatype(image.dtype()));
  h.bitpix = static_cast<short>(dtype_size(image.dtype()) * 8);
  h.scl_slope = 1.0f;
  h.scl_inter = 0.0f;
  h.cal_min = h.cal_max = 0.0f;
  h.vox_offset = 352.0f;
  std::memcpy(h.magic, "n+1\0", 4);

  const Image data = image.contiguous();  // [C,Z,Y,X] = file order
  AtomicOutput out(path, options.overwrite);
  const std::string lower_name = [&] {
    std::string n = path.filename().string();
    for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return n;
  }();
  const bool gz = lower_name.size() > 3 && lower_name.compare(lower_name.size() - 3, 3, ".gz") == 0;
  const char extender[4] = {0, 0, 0, 0};  // no extensions
  {
    GzFile f(out.temporary_path(), gz ? "wb6" : "wbT");
    if (f.f == nullptr) fail("{}: cannot create {}", name, out.temporary_path().string());
    auto put = [&](const void* p, size_t n) {
      const auto* b = static_cast<const uint8_t*>(p);
      while (n > 0) {
        const unsigned chunk = static_cast<unsigned>(std::min<size_t>(n, 1u << 30));
        if (gzwrite(f.f, b, chunk) != static_cast<int>(chunk)) {
          fail("{}: writing failed: {}", name, f.error());
        }
        b += chunk;
        n -= chunk;
      }
    };
    put(&h, sizeof h);
    put(extender, sizeof extender);
    put(data.data(), data.byte_size());
    const int rc = gzclose(f.f);
    f.f = nullptr;
    if (rc != Z_OK) fail("{}: closing failed (zlib code {})", name, rc);
  }
  out.commit();
}

}  // namespace umamba::io
