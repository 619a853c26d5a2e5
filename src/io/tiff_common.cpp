// libtiff handle with captured messages, and the TIFF metadata conventions (ImageJ description,
// tifffile JSON description, units). See tiff_internal.h.
#include <nlohmann/json.hpp>

#include <cctype>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <map>
#include <mutex>
#include <sstream>

#include "core/error.h"
#include "core/log.h"
#include "core/memory.h"
#include "io/tiff_internal.h"

namespace umamba::io::tiff {

struct Handle::Context {
  std::string path;
  std::vector<std::string> errors;
};

namespace {

std::string format_message(const char* module, const char* fmt, va_list ap) {
  char buffer[1024];
  std::vsnprintf(buffer, sizeof buffer, fmt, ap);
  std::string message = buffer;
  if (module != nullptr && *module != '\0') message = std::string(module) + ": " + message;
  return message;
}

int on_error(TIFF*, void* user_data, const char* module, const char* fmt, va_list ap) {
  auto* ctx = static_cast<Handle::Context*>(user_data);
  std::string message = format_message(module, fmt, ap);
  log::debug("libtiff error ({}): {}", ctx->path, message);
  if (ctx->errors.size() < 8) ctx->errors.push_back(std::move(message));
  return 1;  // handled: libtiff's global handler (stderr) is not called
}

int on_warning(TIFF*, void* user_data, const char* module, const char* fmt, va_list ap) {
  auto* ctx = static_cast<Handle::Context*>(user_data);
  log::debug("libtiff warning ({}): {}", ctx->path, format_message(module, fmt, ap));
  return 1;
}

// Messages libtiff emits without a handle (a few code paths in 4.5 still do) go to the debug log
// instead of stderr.
void global_error(const char* module, const char* fmt, va_list ap) {
  log::debug("libtiff: {}", format_message(module, fmt, ap));
}

void install_global_handlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    TIFFSetErrorHandler(global_error);
    TIFFSetWarningHandler(global_error);
  });
}

}  // namespace

Handle::Handle(const std::string& path, const char* mode, const std::string& display_path)
    : ctx_(std::make_unique<Context>()) {
  install_global_handlers();
  ctx_->path = display_path.empty() ? path : display_path;
  TIFFOpenOptions* opts = TIFFOpenOptionsAlloc();
  TIFFOpenOptionsSetErrorHandlerExtR(opts, on_error, ctx_.get());
  TIFFOpenOptionsSetWarningHandlerExtR(opts, on_warning, ctx_.get());
  // libtiff refuses single allocations above our limit (a crafted tag array, a huge strip).
  const size_t limit = allocation_limit();
  TIFFOpenOptionsSetMaxSingleMemAlloc(
      opts, static_cast<tmsize_t>(std::min<size_t>(limit, size_t{1} << 62)));
  // "m": no memory mapping, so a file cut short under us gives an error, not SIGBUS, and mapped
  // pages do not count as our resident memory.
  const std::string full_mode = std::string(mode) + (mode[0] == 'r' ? "m" : "");
  tif_ = TIFFOpenExt(path.c_str(), full_mode.c_str(), opts);
  TIFFOpenOptionsFree(opts);
  if (tif_ == nullptr) {
    const std::string why = errors().empty() ? "cannot open" : errors();
    if (mode[0] == 'r') throw FileError(ctx_->path, "not a readable TIFF: " + why);
    fail("{}: cannot create the TIFF file: {}", ctx_->path, why);
  }
}

Handle::~Handle() {
  if (tif_ != nullptr) TIFFClose(tif_);
}

const std::string& Handle::path() const {
  return ctx_->path;
}

std::string Handle::errors() const {
  std::string joined;
  for (const auto& e : ctx_->errors) {
    if (!joined.empty()) joined += "; ";
    joined += e;
  }
  return joined;
}

void Handle::clear_errors() {
  ctx_->errors.clear();
}

void Handle::fail_read(const std::string& what) const {
  const std::string why = errors();
  throw FileError(ctx_->path, why.empty() ? what : what + ": " + why);
}

void Handle::fail_write(const std::string& what) const {
  const std::string why = errors();
  fail("{}: {}{}", ctx_->path, what, why.empty() ? "" : ": " + why);
}

void Handle::close_checked() {
  if (tif_ == nullptr) return;
  const int flushed = TIFFFlush(tif_);
  TIFFClose(tif_);
  tif_ = nullptr;
  if (flushed != 1 || !ctx_->errors.empty()) fail_write("writing failed");
}

// ---- units ---------------------------------------------------------------------------------

std::string normalise_unit(const std::string& raw) {
  std::string u;
  for (char ch : raw) {
    if (ch != ' ' && ch != '\t' && ch != '\r')
      u += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  }
  if (u == "um" || u == "micron" || u == "microns" || u == "micrometer" || u == "micrometre" ||
      u == "µm" || u == "\xb5m" || u == "\\u00b5m" || u == "μm" || u == "micrometers")
    return "um";
  if (u == "nm" || u == "nanometer" || u == "nanometre") return "nm";
  if (u == "mm" || u == "millimeter" || u == "millimetre") return "mm";
  if (u == "cm" || u == "centimeter" || u == "centimetre") return "cm";
  if (u == "m" || u == "meter" || u == "metre") return "m";
  return "";
}

double unit_in_um(const std::string& unit) {
  if (unit == "um") return 1.0;
  if (unit == "nm") return 1e-3;
  if (unit == "mm") return 1e3;
  if (unit == "cm") return 1e4;
  if (unit == "m") return 1e6;
  return 0.0;
}

// ---- ImageJ description ------------------------------------------------------------------------

namespace {

std::optional<double> parse_number(const std::string& s) {
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::optional<int64_t> parse_count(const std::string& s) {
  const auto v = parse_number(s);
  if (!v || *v < 1 || *v > 1e12 || std::floor(*v) != *v) return std::nullopt;
  return static_cast<int64_t>(*v);
}

}  // namespace

std::optional<ImageJInfo> parse_imagej_description(const std::string& text) {
  if (text.rfind("ImageJ=", 0) != 0) return std::nullopt;
  ImageJInfo info;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    const auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = line.substr(0, eq);
    std::string value = line.substr(eq + 1);
    while (!value.empty() && (value.back() == '\r' || value.back() == ' ')) value.pop_back();
    if (key == "images") {
      if (auto v = parse_count(value)) info.images = *v;
    } else if (key == "channels") {
      if (auto v = parse_count(value)) info.channels = *v;
    } else if (key == "slices") {
      if (auto v = parse_count(value)) info.slices = *v;
    } else if (key == "frames") {
      if (auto v = parse_count(value)) info.frames = *v;
    } else if (key == "unit") {
      info.unit = normalise_unit(value);
    } else if (key == "spacing") {
      if (auto v = parse_number(value); v && *v > 0) info.spacing = v;
    }
  }
  return info;
}

std::string format_imagej_description(int64_t slices, const std::string& unit, double z_spacing) {
  std::string text = fmt::format("ImageJ=1.11a\nimages={}\n", slices);
  if (slices > 1) text += fmt::format("slices={}\n", slices);
  if (unit == "um") {
    text += "unit=micron\n";
  } else if (!unit.empty()) {
    text += fmt::format("unit={}\n", unit);
  }
  if (slices > 1) text += fmt::format("spacing={}\n", z_spacing);
  text += "loop=false\n";
  return text;
}

// ---- JSON description --------------------------------------------------------------------------

std::optional<JsonDescription> parse_json_description(const std::string& text) {
  if (text.empty() || text.front() != '{') return std::nullopt;
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  JsonDescription d;
  if (auto it = j.find("shape"); it != j.end() && it->is_array()) {
    for (const auto& v : *it) {
      if (!v.is_number_integer()) return std::nullopt;
      d.shape.push_back(v.get<int64_t>());
    }
  }
  auto read_spacing = [&](const nlohmann::json& a) -> std::optional<std::array<double, 3>> {
    if (!a.is_array() || (a.size() != 2 && a.size() != 3)) return std::nullopt;
    std::array<double, 3> s{1.0, 1.0, 1.0};
    const size_t first = 3 - a.size();
    for (size_t i = 0; i < a.size(); ++i) {
      if (!a[i].is_number()) return std::nullopt;
      const double v = a[i].get<double>();
      if (!(v > 0) || !std::isfinite(v)) return std::nullopt;
      s[first + i] = v;
    }
    return s;
  };
  if (auto it = j.find("spacing"); it != j.end()) {
    d.spacing = read_spacing(*it);
    if (auto u = j.find("unit"); u != j.end() && u->is_string())
      d.unit = normalise_unit(u->get<std::string>());
  } else if (auto e = j.find("element_size_um_zyx"); e != j.end()) {
    d.spacing = read_spacing(*e);
    if (d.spacing) d.unit = "um";
  } else if (auto e2 = j.find("element_size_um"); e2 != j.end()) {
    d.spacing = read_spacing(*e2);
    if (d.spacing) d.unit = "um";
  }
  return d;
}

// ---- OME-XML ------------------------------------------------------------------------------------

namespace {

// The attributes of the first element named `name` (any namespace prefix), or nullopt.
std::optional<std::map<std::string, std::string>> element_attributes(const std::string& text,
                                                                     const std::string& name,
                                                                     size_t from = 0) {
  size_t at = from;
  while ((at = text.find(name, at)) != std::string::npos) {
    const bool start = at > 0 && (text[at - 1] == '<' || text[at - 1] == ':');
    const size_t after = at + name.size();
    if (start && after < text.size() &&
        (std::isspace(static_cast<unsigned char>(text[after])) || text[after] == '>' ||
         text[after] == '/')) {
      break;
    }
    at = after;
  }
  if (at == std::string::npos) return std::nullopt;
  const size_t end = text.find('>', at);
  if (end == std::string::npos) return std::nullopt;
  std::map<std::string, std::string> attrs;
  size_t i = at + name.size();
  while (i < end) {
    while (i < end && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    const size_t eq = text.find('=', i);
    if (eq == std::string::npos || eq >= end) break;
    std::string key = text.substr(i, eq - i);
    while (!key.empty() && std::isspace(static_cast<unsigned char>(key.back()))) key.pop_back();
    size_t q = eq + 1;
    while (q < end && std::isspace(static_cast<unsigned char>(text[q]))) ++q;
    if (q >= end || (text[q] != '"' && text[q] != '\'')) break;
    const size_t close = text.find(text[q], q + 1);
    if (close == std::string::npos || close > end) break;
    attrs[key] = text.substr(q + 1, close - q - 1);
    i = close + 1;
  }
  return attrs;
}

}  // namespace

std::optional<OmeInfo> parse_ome_description(const std::string& text) {
  if (text.find("<OME") == std::string::npos && text.find(":OME") == std::string::npos) {
    return std::nullopt;
  }
  const auto pixels = element_attributes(text, "Pixels");
  if (!pixels) return std::nullopt;
  OmeInfo o;
  auto get = [&](const char* key) -> std::string {
    auto it = pixels->find(key);
    return it == pixels->end() ? std::string() : it->second;
  };
  o.dimension_order = get("DimensionOrder");
  auto count = [&](const char* key, int64_t fallback) {
    const auto v = parse_count(get(key));
    return v ? *v : fallback;
  };
  o.size_x = count("SizeX", 0);
  o.size_y = count("SizeY", 0);
  o.size_z = count("SizeZ", 1);
  o.size_c = count("SizeC", 1);
  o.size_t_ = count("SizeT", 1);
  auto physical = [&](const char* key, const char* unit_key) -> std::optional<double> {
    const auto v = parse_number(get(key));
    if (!v || !(*v > 0)) return std::nullopt;
    const std::string unit = get(unit_key);
    const double scale = unit.empty() ? 1.0 : unit_in_um(normalise_unit(unit));
    if (scale <= 0) return std::nullopt;
    return *v * scale;
  };
  o.um_x = physical("PhysicalSizeX", "PhysicalSizeXUnit");
  o.um_y = physical("PhysicalSizeY", "PhysicalSizeYUnit");
  o.um_z = physical("PhysicalSizeZ", "PhysicalSizeZUnit");
  // One <TiffData> without IFD/FirstZ/... offsets other than 0, and no UUID file references.
  size_t n_tiffdata = 0;
  for (size_t at = 0; (at = text.find("TiffData", at)) != std::string::npos; at += 8) {
    if (at > 0 && (text[at - 1] == '<' || text[at - 1] == ':')) ++n_tiffdata;
  }
  if (n_tiffdata > 1 || text.find("<UUID") != std::string::npos ||
      text.find(":UUID") != std::string::npos) {
    o.single_tiffdata = false;
  }
  if (const auto td = element_attributes(text, "TiffData")) {
    for (const char* key : {"IFD", "FirstZ", "FirstC", "FirstT"}) {
      auto it = td->find(key);
      if (it != td->end() && it->second != "0") o.single_tiffdata = false;
    }
  }
  return o;
}

std::string compression_label(uint16_t scheme) {
  switch (scheme) {
    case COMPRESSION_NONE:
      return "none";
    case COMPRESSION_LZW:
      return "lzw";
    case COMPRESSION_ADOBE_DEFLATE:
    case COMPRESSION_DEFLATE:
      return "deflate";
    case COMPRESSION_ZSTD:
      return "zstd";
    case COMPRESSION_PACKBITS:
      return "packbits";
    case COMPRESSION_JPEG:
      return "jpeg";
    case COMPRESSION_OJPEG:
      return "old-jpeg";
    case COMPRESSION_LZMA:
      return "lzma";
    case COMPRESSION_WEBP:
      return "webp";
    case COMPRESSION_LERC:
      return "lerc";
    case COMPRESSION_JBIG:
      return "jbig";
    case COMPRESSION_CCITTRLE:
    case COMPRESSION_CCITTRLEW:
    case COMPRESSION_CCITTFAX3:
    case COMPRESSION_CCITTFAX4:
      return "ccitt";
    case COMPRESSION_PIXARLOG:
      return "pixarlog";
    default:
      return fmt::format("scheme {}", scheme);
  }
}

}  // namespace umamba::io::tiff
