// umamba_io_tool: the bridge between our readers/writers and the independent Python readers of the
// cross-check tests (tests/python/io_crosscheck.py). Test helper only, not installed.
//
//   umamba_io_tool read IN OUT_PREFIX [--region z0,y0,x0,dz,dy,dx]
//       reads IN with open_image and writes OUT_PREFIX.npy ([C,Z,Y,X], C order, little-endian)
//       and OUT_PREFIX.json (format, shape, dtype, spacing, unit, origin, direction, metadata)
//   umamba_io_tool write IN.npy OUT [--labels] [--compression C] [--level N]
//       [--predictor auto|none|horizontal|float] [--tile N] [--planar] [--bigtiff]
//       [--spacing z,y,x] [--unit U] [--origin x,y,z] [--reference REF] [--band-rows N]
//       writes a [C,Z,Y,X] array with write_image (write_labels with --labels; the band writer
//       with --band-rows)
//   umamba_io_tool check IN
//       reads IN fully; exit 0 when it reads, 3 for FileError, 4 for Unsupported, 5 for Error,
//       printing the message
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/image_info.h"
#include "io/image_io.h"

namespace {

using umamba::DType;
using umamba::Image;
using umamba::Shape;

std::string npy_descr(DType t) {
  switch (t) {
    case DType::U8:
      return "|u1";
    case DType::I8:
      return "|i1";
    case DType::U16:
      return "<u2";
    case DType::I16:
      return "<i2";
    case DType::U32:
      return "<u4";
    case DType::I32:
      return "<i4";
    case DType::U64:
      return "<u8";
    case DType::I64:
      return "<i8";
    case DType::F32:
      return "<f4";
    case DType::F64:
      return "<f8";
  }
  return "";
}

void write_npy(const std::string& path, const Image& image) {
  const Image c = image.contiguous();
  const Shape s = c.shape();
  std::string header = "{'descr': '" + npy_descr(c.dtype()) + "', 'fortran_order': False, " +
                       "'shape': (" + std::to_string(s.c) + ", " + std::to_string(s.z) + ", " +
                       std::to_string(s.y) + ", " + std::to_string(s.x) + "), }";
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  out.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  out.put(static_cast<char>(len & 0xff));
  out.put(static_cast<char>(len >> 8));
  out << header;
  out.write(static_cast<const char*>(c.data()), static_cast<std::streamsize>(c.byte_size()));
  if (!out) throw umamba::Error("cannot write " + path);
}

Image read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[8];
  in.read(magic, 8);
  if (!in || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw umamba::Error(path + ": not .npy");
  uint32_t len = 0;
  if (magic[6] == 1) {
    unsigned char b[2];
    in.read(reinterpret_cast<char*>(b), 2);
    len = b[0] | (b[1] << 8);
  } else {
    unsigned char b[4];
    in.read(reinterpret_cast<char*>(b), 4);
    len = b[0] | (b[1] << 8) | (b[2] << 16) | (uint32_t{b[3]} << 24);
  }
  std::string header(len, '\0');
  in.read(header.data(), len);
  auto field = [&](const std::string& key) {
    const auto at = header.find("'" + key + "'");
    if (at == std::string::npos) throw umamba::Error(path + ": npy header lacks " + key);
    return header.substr(header.find(':', at) + 1);
  };
  std::string descr = field("descr");
  descr = descr.substr(descr.find('\'') + 1);
  descr = descr.substr(0, descr.find('\''));
  if (field("fortran_order").find("False") > 2) throw umamba::Error(path + ": Fortran order");
  DType dtype = DType::U8;
  bool found = false;
  for (DType t : {DType::U8, DType::I8, DType::U16, DType::I16, DType::U32, DType::I32, DType::U64,
                  DType::I64, DType::F32, DType::F64}) {
    const std::string d = npy_descr(t);
    if (descr == d || (d[0] == '|' && descr.substr(1) == d.substr(1)) ||
        (d[0] == '<' && descr == "=" + d.substr(1))) {
      dtype = t;
      found = true;
    }
  }
  if (!found) throw umamba::Error(path + ": unsupported npy dtype " + descr);
  std::string shape_text = field("shape");
  shape_text = shape_text.substr(shape_text.find('(') + 1);
  shape_text = shape_text.substr(0, shape_text.find(')'));
  std::vector<int64_t> dims;
  std::stringstream ss(shape_text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.find_first_of("0123456789") != std::string::npos) dims.push_back(std::stoll(item));
  }
  if (dims.size() != 4) throw umamba::Error(path + ": expected a [C,Z,Y,X] array");
  Image img = Image::zeros(dtype, Shape{dims[0], dims[1], dims[2], dims[3]});
  in.read(static_cast<char*>(img.data()), static_cast<std::streamsize>(img.byte_size()));
  if (!in) throw umamba::Error(path + ": npy data ends early");
  return img;
}

std::vector<double> numbers(const std::string& text) {
  std::vector<double> v;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) v.push_back(std::stod(item));
  return v;
}

int usage() {
  std::cerr << "usage: umamba_io_tool read IN OUT_PREFIX [--region z0,y0,x0,dz,dy,dx]\n"
               "       umamba_io_tool write IN.npy OUT [options]\n"
               "       umamba_io_tool check IN\n";
  return 2;
}

int run(int argc, char** argv) {
  if (argc < 3) return usage();
  const std::string cmd = argv[1];
  if (cmd == "check") {
    try {
      const Image img = umamba::io::read_image(argv[2]);
      std::cout << "ok " << umamba::to_string(img.shape()) << "\n";
      return 0;
    } catch (const umamba::FileError& e) {
      std::cout << "FileError: " << e.what() << "\n";
      return 3;
    } catch (const umamba::Unsupported& e) {
      std::cout << "Unsupported: " << e.what() << "\n";
      return 4;
    } catch (const umamba::Error& e) {
      std::cout << "Error: " << e.what() << "\n";
      return 5;
    }
  }
  if (cmd == "selfcheck") {
    // What the fuzz targets check: one reader, a full read, then a region read that must equal
    // the crop of the full read.
    auto reader = umamba::io::open_image(argv[2]);
    const Image full = reader->read();
    const Shape s = reader->info().shape;
    const umamba::Box b{s.z / 2, s.y / 3, s.x / 4, 1, s.y - s.y / 3, (s.x + 1) / 2};
    const Image region = reader->read_region(b);
    const bool same = region.same_pixels(full.region(b).clone());
    std::cout << (same ? "same" : "DIFFERENT") << "\n";
    if (!same) {
      write_npy("selfcheck_full.npy", full);
      write_npy("selfcheck_region.npy", region);
    }
    return same ? 0 : 6;
  }
  if (cmd == "read") {
    if (argc < 4) return usage();
    auto reader = umamba::io::open_image(argv[2]);
    Image img;
    if (argc >= 6 && std::string(argv[4]) == "--region") {
      const auto v = numbers(argv[5]);
      if (v.size() != 6) return usage();
      img = reader->read_region(umamba::Box{int64_t(v[0]), int64_t(v[1]), int64_t(v[2]),
                                            int64_t(v[3]), int64_t(v[4]), int64_t(v[5])});
    } else {
      img = reader->read();
    }
    const std::string prefix = argv[3];
    write_npy(prefix + ".npy", img);
    umamba::io::ImageInfo info = reader->info();
    info.geometry = img.geometry();  // the region's origin
    std::ofstream(prefix + ".json") << umamba::io::image_info_json(argv[2], info).dump(2) << "\n";
    return 0;
  }
  if (cmd == "write") {
    if (argc < 4) return usage();
    Image img = read_npy(argv[2]);
    const std::string out = argv[3];
    umamba::io::WriteOptions opt;
    bool labels = false;
    int64_t band_rows = 0;
    for (int i = 4; i < argc; ++i) {
      const std::string a = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw umamba::Error(a + " needs a value");
        return argv[++i];
      };
      if (a == "--labels") {
        labels = true;
      } else if (a == "--compression") {
        opt.compression = umamba::io::compression_from_name(next());
      } else if (a == "--level") {
        opt.compression_level = std::stoi(next());
      } else if (a == "--predictor") {
        const std::string p = next();
        opt.predictor = p == "none"         ? umamba::io::Predictor::None
                        : p == "horizontal" ? umamba::io::Predictor::Horizontal
                        : p == "float"      ? umamba::io::Predictor::FloatingPoint
                                            : umamba::io::Predictor::Auto;
      } else if (a == "--tile") {
        opt.tile_size = std::stoll(next());
      } else if (a == "--planar") {
        opt.planar = true;
      } else if (a == "--bigtiff") {
        opt.bigtiff = true;
      } else if (a == "--spacing") {
        const auto v = numbers(next());
        for (size_t k = 0; k < 3 && k < v.size(); ++k) img.geometry().spacing[k] = v[k];
      } else if (a == "--unit") {
        img.geometry().unit = next();
      } else if (a == "--origin") {
        const auto v = numbers(next());
        for (size_t k = 0; k < 3 && k < v.size(); ++k) img.geometry().origin[k] = v[k];
      } else if (a == "--reference") {
        opt.reference = next();
      } else if (a == "--band-rows") {
        band_rows = std::stoll(next());
      } else {
        return usage();
      }
    }
    if (band_rows > 0) {
      umamba::io::TiffBandWriter w(out, img.shape(), img.dtype(), img.geometry(), opt);
      for (int64_t z = 0; z < img.depth(); ++z) {
        for (int64_t y = 0; y < img.height(); y += band_rows) {
          const int64_t n = std::min(band_rows, img.height() - y);
          w.write_band(img.region(umamba::Box{z, y, 0, 1, n, img.width()}));
        }
      }
      w.finish();
    } else if (labels) {
      umamba::io::write_labels(out, img, opt);
    } else {
      umamba::io::write_image(out, img, opt);
    }
    return 0;
  }
  return usage();
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "umamba_io_tool: " << e.what() << "\n";
    return 1;
  }
}
