// libFuzzer target: the TIFF reader (src/io/tiff_reader.cpp) on arbitrary bytes.
#include "fuzz_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return umamba::fuzz::read_one(data, size, ".tif");
}
