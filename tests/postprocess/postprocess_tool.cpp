// Test helper: runs post-processing steps on raw arrays so that tests/python/postprocess_*.py can
// compare them with SciPy and scikit-image. Raw files hold C-order native-endian arrays.
//
//   postprocess_tool ccl IN OUT Z Y X DTYPE CONNECTIVITY MULTI THREADS     -> OUT u32, prints N
//   postprocess_tool classes IN OUT Z Y X DTYPE WIDTH SPILL MIN_INTERIOR   -> OUT u8
//   postprocess_tool measure LABELS Z Y X DTYPE SZ SY SX OUT_CSV [INTENSITY C IDTYPE]
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "core/error.h"
#include "postprocess/ccl.h"
#include "postprocess/measure.h"
#include "postprocess/targets.h"

namespace {

using namespace umamba;

Image read_raw(const std::string& path, DType dtype, const Shape& shape) {
  Image img = Image::zeros(dtype, shape);
  std::ifstream f(path, std::ios::binary);
  if (!f) fail_file(path, "cannot open");
  f.read(static_cast<char*>(img.data()), static_cast<std::streamsize>(img.byte_size()));
  if (f.gcount() != static_cast<std::streamsize>(img.byte_size()))
    fail_file(path, "holds {} bytes, expected {}", f.gcount(), img.byte_size());
  return img;
}

void write_raw(const std::string& path, const void* data, size_t bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  if (!f) fail_file(path, "cannot write");
}

int run(const std::vector<std::string>& a) {
  if (a.size() < 7) fail("usage: see the header of tests/postprocess/postprocess_tool.cpp");
  const std::string& cmd = a[0];
  auto num = [&](size_t i) { return std::stoll(a.at(i)); };
  if (cmd == "ccl") {
    const Shape s{1, num(3), num(4), num(5)};
    const Image in = read_raw(a[1], dtype_from_name(a[6]), s);
    postprocess::CclOptions o;
    o.connectivity = postprocess::connectivity_from_int(static_cast<int>(num(7)), s.z > 1);
    o.multi_label = num(8) != 0;
    o.threads = static_cast<int>(num(9));
    uint32_t n = 0;
    const Image out = postprocess::label_components(in, o, &n);
    write_raw(a[2], out.data(), out.byte_size());
    std::printf("%u\n", n);
    return 0;
  }
  if (cmd == "classes") {
    const Shape s{1, num(3), num(4), num(5)};
    const Image in = read_raw(a[1], dtype_from_name(a[6]), s);
    postprocess::ClassTargetOptions o;
    o.boundary_width = static_cast<int>(num(7));
    o.spill = num(8) != 0;
    o.min_interior_size = num(9);
    const Image out = postprocess::instances_to_classes(in, o);
    write_raw(a[2], out.data(), out.byte_size());
    return 0;
  }
  if (cmd == "measure") {
    const Shape s{1, num(2), num(3), num(4)};
    Image labels = read_raw(a[1], dtype_from_name(a[5]), s);
    labels.geometry().spacing = {std::stod(a[6]), std::stod(a[7]), std::stod(a[8])};
    Image intensity;
    if (a.size() >= 13)
      intensity = read_raw(a[10], dtype_from_name(a[12]), Shape{num(11), s.z, s.y, s.x});
    const std::string csv = postprocess::to_csv(postprocess::region_properties(labels, intensity));
    write_raw(a[9], csv.data(), csv.size());
    return 0;
  }
  fail("unknown command '{}'", cmd);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const std::exception& e) {
    std::cerr << "postprocess_tool: " << e.what() << "\n";
    return 1;
  }
}
