// Test helper: imports an nnU-Net results folder into a model folder (what `umamba import` does,
// without the CLI), so the Python cross-check can read the result with torch.load.
//   model_import_tool RESULTS_DIR OUT_DIR
#include <cstdio>
#include <exception>

#include "model/model_folder.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s RESULTS_DIR OUT_DIR\n", argv[0]);
    return 2;
  }
  try {
    const auto meta = umamba::model::import_nnunet_results(argv[1], argv[2]);
    std::printf("%s\n", meta.dump(2).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
