// Command-line access to volumetric/resample.h for the SciPy / scikit-image cross-check
// (tests/volumetric/resample_crosscheck.py). Raw little-endian files, C order [C,Z,Y,X]:
//   resample_tool resize IN OUT C Z Y X  z y x ORDER           float32 in, float32 out
//   resample_tool data   IN OUT C Z Y X  z y x ORDER ORDER_Z AXIS   (AXIS -1: none)
//   resample_tool seg    IN OUT Z Y X    z y x ORDER AXIS       int32 in, int32 out
//   resample_tool shape  Z Y X  sz sy sx  tz ty tx  -> prints the target shape and the separate
//                        axis for (current spacing s, target spacing t)
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <string>
#include <vector>

#include "core/image.h"
#include "volumetric/resample.h"

namespace uv = umamba::volumetric;
using umamba::DType;
using umamba::Image;

namespace {

int64_t num(const char* s) {
  return std::strtoll(s, nullptr, 10);
}

Image read_raw(const std::string& path, DType t, const umamba::Shape& s) {
  Image img = Image::zeros(t, s);
  std::ifstream in(path, std::ios::binary);
  in.read(static_cast<char*>(img.data()), static_cast<std::streamsize>(img.byte_size()));
  if (!in) throw std::runtime_error(path + ": short read");
  return img;
}

void write_raw(const std::string& path, const Image& img) {
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(img.data()), static_cast<std::streamsize>(img.byte_size()));
  if (!out) throw std::runtime_error(path + ": write failed");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "resize" && argc == 12) {
      const Image in =
          read_raw(argv[2], DType::F32, {num(argv[4]), num(argv[5]), num(argv[6]), num(argv[7])});
      write_raw(argv[3],
                uv::resize(in, {num(argv[8]), num(argv[9]), num(argv[10])}, int(num(argv[11]))));
      return 0;
    }
    if (mode == "data" && argc == 14) {
      const Image in =
          read_raw(argv[2], DType::F32, {num(argv[4]), num(argv[5]), num(argv[6]), num(argv[7])});
      uv::ResampleOptions o;
      o.order = int(num(argv[11]));
      o.order_z = int(num(argv[12]));
      o.separate_axis = int(num(argv[13]));
      write_raw(argv[3], uv::resample_data(in, {num(argv[8]), num(argv[9]), num(argv[10])}, o));
      return 0;
    }
    if (mode == "seg" && argc == 12) {
      const Image in = read_raw(argv[2], DType::I32, {1, num(argv[4]), num(argv[5]), num(argv[6])});
      uv::ResampleOptions o;
      o.order = int(num(argv[10]));
      o.separate_axis = int(num(argv[11]));
      write_raw(argv[3],
                uv::resample_segmentation(in, {num(argv[7]), num(argv[8]), num(argv[9])}, o));
      return 0;
    }
    if (mode == "shape" && argc == 11) {
      const uv::Shape3 s{num(argv[2]), num(argv[3]), num(argv[4])};
      const uv::Spacing3 a{std::atof(argv[5]), std::atof(argv[6]), std::atof(argv[7])};
      const uv::Spacing3 b{std::atof(argv[8]), std::atof(argv[9]), std::atof(argv[10])};
      const uv::Shape3 t = uv::target_shape(s, a, b);
      std::printf("%lld %lld %lld %d\n", static_cast<long long>(t[0]), static_cast<long long>(t[1]),
                  static_cast<long long>(t[2]), uv::separate_z_axis(a, b));
      return 0;
    }
    std::fprintf(stderr, "usage: see the header of resample_tool.cpp\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "resample_tool: %s\n", e.what());
    return 1;
  }
}
