// libFuzzer target: the NIfTI reader (src/io/nifti_io.cpp) on arbitrary bytes, plain or gzip (the
// reader goes by content).
#include "fuzz_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return umamba::fuzz::read_one(data, size, ".nii");
}
