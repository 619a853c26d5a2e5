// Helpers of the I/O tests: a temporary folder per test, random images of any dtype, data paths.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/image.h"

namespace umamba::io::test {

namespace fs = std::filesystem;

// A fresh folder under the system's temporary directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "io";
    for (char& c : name) {
      if (c == '/') c = '_';
    }
    path_ = fs::temp_directory_path() /
            ("umamba-test-" + name + "-" + std::to_string(std::random_device{}()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }
  // Names in the folder (temporaries included), sorted.
  std::vector<std::string> files() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(path_)) names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  fs::path path_;
};

// Random values over the dtype's range (integers) or a spread of magnitudes and signs (floats).
inline Image random_image(DType dtype, const Shape& shape, uint32_t seed) {
  Image img = Image::zeros(dtype, shape);
  std::mt19937_64 rng(seed);
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* p = img.data_as<T>();
    for (int64_t i = 0; i < img.element_count(); ++i) {
      if constexpr (std::is_floating_point_v<T>) {
        std::normal_distribution<double> d(0.0, 1000.0);
        p[i] = static_cast<T>(d(rng));
      } else {
        const uint64_t bits = rng();
        std::memcpy(&p[i], &bits, sizeof(T));
      }
    }
  });
  return img;
}

inline fs::path source_path(const std::string& relative) {
  return fs::path(UMAMBA_SOURCE_DIR) / relative;
}

inline fs::path shared_path(const std::string& relative) {
  return fs::path(UMAMBA_SHARED_DATA) / relative;
}

inline std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

inline void write_bytes(const fs::path& p, const std::vector<uint8_t>& bytes, size_t n) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(n));
}

constexpr DType kAllDTypes[] = {DType::U8,  DType::I8,  DType::U16, DType::I16, DType::U32,
                                DType::I32, DType::U64, DType::I64, DType::F32, DType::F64};

}  // namespace umamba::io::test
