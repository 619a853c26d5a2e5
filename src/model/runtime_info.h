// What LibTorch sees on this machine: versions, CUDA devices, cuDNN. Used by `umamba info` and
// recorded in every output folder's manifest.
#pragma once

#include <nlohmann/json.hpp>

namespace umamba::model {

// {"libtorch": "2.11.0", "cuda_compiled": true, "cuda_runtime": "13.0", "cudnn": 91900,
//  "devices": [{"index": 0, "name": "...", "memory_gib": 79.1, "capability": "9.0"}], ...}
nlohmann::json torch_runtime_info();

}  // namespace umamba::model
