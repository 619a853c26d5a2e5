// Internals shared by the TIFF reader and writer: a libtiff handle whose error and warning
// messages are captured (never printed) and thrown with the file's name, and the parsers of the
// metadata conventions we read and write (ImageJ's ImageDescription, tifffile's JSON "shaped"
// description, resolution tags). Not part of the public API; tests include it for the parsers.
#pragma once

#include <tiffio.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/image.h"
#include "io/image_io.h"

namespace umamba::io::tiff {

// One open TIFF file. libtiff's messages for this handle go to `errors()` / the debug log.
class Handle {
 public:
  // mode "r" (read, no memory mapping), "w" or "w8" (BigTIFF). Throws FileError (reading) or
  // Error (writing) with libtiff's message.
  Handle(const std::string& path, const char* mode, const std::string& display_path = "");
  ~Handle();
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  TIFF* get() const { return tif_; }
  const std::string& path() const;  // the name used in messages
  // Messages libtiff reported since the last clear_errors(), joined by "; ".
  std::string errors() const;
  void clear_errors();
  // Throws FileError(path, what + ": " + libtiff's messages).
  [[noreturn]] void fail_read(const std::string& what) const;
  // Throws Error("path: what: messages") for output files.
  [[noreturn]] void fail_write(const std::string& what) const;
  // Flushes and closes; throws fail_write when libtiff reported an error while writing.
  void close_checked();

  struct Context;

 private:
  TIFF* tif_ = nullptr;
  std::unique_ptr<Context> ctx_;
};

// Facts from an ImageJ ImageDescription ("ImageJ=1.x\nimages=..\nchannels=..\n...").
struct ImageJInfo {
  int64_t images = 0, channels = 1, slices = 1, frames = 1;
  std::string unit;  // normalised: "um", "nm", "mm", "cm", "m", or "" (pixel / unknown)
  std::optional<double> spacing;  // Z step in `unit`
};
std::optional<ImageJInfo> parse_imagej_description(const std::string& text);
std::string format_imagej_description(int64_t slices, const std::string& unit, double z_spacing);

// Spacing facts from a JSON description (tifffile's "shaped" form and our own keys):
// {"shape": [...], "spacing": [z, y, x] or [y, x], "unit": "um"} or {"element_size_um_zyx": [..]}.
struct JsonDescription {
  std::vector<int64_t> shape;
  std::optional<std::array<double, 3>> spacing;  // [Z,Y,X]; Z = 1 when the file gave Y,X only
  std::string unit;
};
std::optional<JsonDescription> parse_json_description(const std::string& text);

// Facts from the first <Pixels> element of an OME-XML ImageDescription (OME-TIFF).
struct OmeInfo {
  std::string dimension_order;  // "XYZCT", "XYCZT", ... (X, Y, then Z, C, T fastest first)
  int64_t size_x = 0, size_y = 0, size_z = 1, size_c = 1, size_t_ = 1;
  // Physical pixel sizes in micrometres (converted from their *Unit attributes, µm by default).
  std::optional<double> um_x, um_y, um_z;
  bool single_tiffdata = true;  // planes stored in order from IFD 0 (no multi-file references)
};
std::optional<OmeInfo> parse_ome_description(const std::string& text);

// "um", "mm", ... from free-form spellings ("micron", "µm", "\\u00B5m", "microns"); "" when
// unknown or "pixel".
std::string normalise_unit(const std::string& unit);
// Size of one `unit` in micrometres (1 for "um", 1000 for "mm"); 0 when unknown.
double unit_in_um(const std::string& unit);

std::string compression_label(uint16_t scheme);  // "deflate", "lzw", "jpeg", ... or "scheme N"

}  // namespace umamba::io::tiff
